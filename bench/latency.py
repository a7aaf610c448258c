"""Latency from a member save to the profile in the sandbox, p50 and p99, with the ORM broker and
with Redis, each with a real `qcluster` worker.

    python bench/latency.py --database sqlite --samples 100 [--redis-url redis://127.0.0.1:6379/5]
"""

from __future__ import annotations

import argparse
import json
import time

import requests
from common import create_connection, percentile, sandbox_process, setup_django, table, worker_process


def measure(url: str, samples: int) -> list[float]:
    from loyaltysync.models import Member

    member = Member.objects.create(member_id=f"lat-{time.time_ns()}", first_name="start", email="lat@example.com")
    session = requests.Session()
    profile_url = f"{url}/sandbox/users/{member.member_id}"
    latencies = []
    for index in range(samples):
        value = f"v{index}-{time.time_ns()}"
        member.first_name = value
        started = time.perf_counter()
        member.save()
        while True:
            response = session.get(profile_url, timeout=5)
            if response.status_code == 200 and response.json()["attributes"].get("first_name") == value:
                break
            if time.perf_counter() - started > 30:
                from braze_integration.models import MemberSyncState

                state = MemberSyncState.objects.filter(member=member).values().first()
                raise RuntimeError(f"the change did not reach the sandbox within 30 s: {state} {response.text[:300]}")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()

    rows, summary = [], {"bench": "latency", "database": args.database}
    for broker, redis_url in (("ORM", ""), ("Redis", args.redis_url)):
        if broker == "Redis" and not redis_url:
            continue
        import os

        os.environ["REDIS_URL"] = redis_url
        if broker == "ORM":
            setup_django(args.database)
        else:
            from django.conf import settings
            from django_q.conf import Conf

            # Same process, other broker: point django-q2 (and the limiter) at Redis.
            settings.REDIS_URL = redis_url
            Conf.ORM, Conf.REDIS = None, redis_url
        with sandbox_process() as url, worker_process(redis_url=redis_url):
            create_connection(url)
            measure(url, 5)  # warm up
            latencies = measure(url, args.samples)
        rows.append([broker, str(len(latencies)), f"{percentile(latencies, 0.5) * 1000:.0f}",
                     f"{percentile(latencies, 0.99) * 1000:.0f}", f"{max(latencies) * 1000:.0f}"])
        summary[broker] = percentile(latencies, 0.5) * 1000
    print(f"\nSave-to-sandbox latency on {args.database}\n")
    print(table(rows, ["broker", "samples", "p50 ms", "p99 ms", "max ms"]))
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
