"""Full resync throughput: `braze_resync --all` over N members with ten mapped fields of mixed types,
side by side in one run with the fair loop (the loop a Django developer writes in an afternoon:
read the members, build each one's attributes, POST one member per request over a kept-alive
`requests.Session`), both against the sandbox. Rounds alternate (fair loop, resync, fair loop,
resync, ...) so a busy machine slows both alike; the ratio is what to read.

    python bench/resync_throughput.py --database sqlite --members 30000 --fair-members 3000 --rounds 2

``--latency-ms 30`` has the sandbox answer 30 ms late, as a Braze on the internet would.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time

from common import (
    SANDBOX_KEY,
    create_connection,
    create_custom_fields,
    peak_rss_mb,
    sandbox_process,
    setup_django,
    table,
    worker_process,
)


def fair_loop(url: str, count: int, *, client: str = "requests") -> float:
    """The afternoon loop over the first ``count`` members; returns its seconds. Nothing is recorded.

    ``client``: ``requests`` (a kept-alive ``requests.Session``, the loop the aims are measured
    against) or ``urllib3`` (the same loop over urllib3's pool, the transport the engine uses)."""
    import json

    import requests
    import urllib3

    from loyaltysync.models import Member, MemberStatus

    headers = {"Authorization": f"Bearer {SANDBOX_KEY}", "Content-Type": "application/json"}
    if client == "requests":
        session = requests.Session()
        session.headers.update(headers)

        def post(body: dict) -> None:
            session.post(f"{url}/users/track", json=body, timeout=10).raise_for_status()
    else:
        pool = urllib3.PoolManager(retries=False)

        def post(body: dict) -> None:
            response = pool.request("POST", f"{url}/users/track", body=json.dumps(body).encode(), headers=headers,
                                    timeout=10)
            if response.status >= 400:
                raise RuntimeError(f"the sandbox answered {response.status}")

    started = time.monotonic()
    members = Member.objects.select_related("tier").order_by("pk")[:count]
    for member in members.iterator(chunk_size=2000):
        custom = member.custom_fields or {}
        attributes = {
            "external_id": member.member_id,
            "first_name": member.first_name,
            "email": member.email,
            "dob": member.birth_date.isoformat() if member.birth_date else None,
            "loyalty_points": member.points_spendable,
            "loyalty_purchase_total": float(member.purchase_total),
            "loyalty_opted_in": member.status == MemberStatus.ACTIVE,
            "loyalty_tier": member.tier.name if member.tier else None,
            "loyalty_interests": custom.get("interests"),
            "loyalty_preferences": custom.get("preferences"),
            "loyalty_children": custom.get("children"),
        }
        post({"attributes": [attributes]})
    return time.monotonic() - started


def workers_idle(timeout: float = 30.0) -> None:
    """Until no flush task holds a slot: each timed run starts from idle workers, as an operator's
    resync usually does (not beside a flush still lingering after the last changes)."""
    from django.utils import timezone

    from braze_integration.models import FlushSlot

    deadline = time.monotonic() + timeout
    while FlushSlot.objects.filter(busy_until__gte=timezone.now()).exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def full_resync(expected: int, workers: int) -> tuple[float, int, float]:
    """`manage.py braze_resync --all` as a user runs it, from no sync state (a first sync: every member
    is sent): its parts taken by the running qcluster's workers, or in the command's process (0).
    Returns (seconds, requests, peak RSS growth of the command's process in MB)."""
    from django.core.management import call_command

    from braze_integration.models import MemberSyncState, ResyncRun, SyncRequest

    MemberSyncState.objects.all().delete()
    SyncRequest.objects.all().delete()
    workers_idle()
    rss_before = peak_rss_mb()
    started = time.monotonic()
    call_command("braze_resync", "--all", *([] if workers else ["--in-process"]), stdout=io.StringIO(),
                 stderr=io.StringIO())
    seconds = time.monotonic() - started
    run = ResyncRun.objects.order_by("-pk").first()
    assert run.members_sent == expected, (run.members_sent, expected, run.message)
    assert workers == 0 or run.parts.exclude(done_by__contains=f":{os.getpid()}").exists(), "no worker took a part"
    return seconds, run.requests, peak_rss_mb() - rss_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--fair-members", type=int, default=3_000,
                        help="members the fair loop sends per round (its rate does not depend on the total)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay the sandbox adds to every answer: Braze's round trip from where you run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="0: the resync in the command's own process; N: its parts on the N workers of a "
                             "qcluster that runs for the whole benchmark, as in production")
    args = parser.parse_args()

    setup_django(args.database)
    from django.core.management import call_command

    from loyaltysync.models import Tier

    for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
        Tier.objects.create(name=name, points_threshold=threshold)
    t = time.monotonic()
    create_custom_fields()
    call_command("seed_members", count=args.members, batch=5000, prefix="b-", seed=1, verbosity=0)
    seed_seconds = time.monotonic() - t

    fair_rates: list[float] = []
    fair_urllib3_rates: list[float] = []
    resync_rates: dict[int, list[float]] = {w: [] for w in args.workers}
    rows = []
    cluster = max(args.workers)
    if len([w for w in args.workers if w]) > 1:
        parser.error("--workers: give 0 and at most one number of workers (one qcluster runs the whole benchmark)")
    sandbox_args = ["--latency-ms", str(args.latency_ms)] if args.latency_ms else []
    with sandbox_process(*sandbox_args) as url, (worker_process(workers=cluster) if cluster else contextlib.nullcontext()):
        create_connection(url, rate_limit=(3000, 3))
        for round_ in range(1, args.rounds + 1):
            fair_seconds = fair_loop(url, args.fair_members)
            fair_rates.append(args.fair_members / fair_seconds)
            rows.append([str(round_), "fair loop (1 member a request)", f"{args.fair_members:,}",
                         f"{args.fair_members:,}", f"{fair_seconds:.1f}", f"{fair_rates[-1]:,.0f}", ""])
            fair_seconds = fair_loop(url, args.fair_members, client="urllib3")
            fair_urllib3_rates.append(args.fair_members / fair_seconds)
            rows.append([str(round_), "fair loop over urllib3", f"{args.fair_members:,}",
                         f"{args.fair_members:,}", f"{fair_seconds:.1f}", f"{fair_urllib3_rates[-1]:,.0f}", ""])
            for workers in args.workers:
                seconds, requests, rss_growth = full_resync(args.members, workers)
                resync_rates[workers].append(args.members / seconds)
                label = f"braze_resync --all, {workers} workers" if workers else "braze_resync --all --in-process"
                rows.append([str(round_), label, f"{args.members:,}", f"{requests:,}", f"{seconds:.1f}",
                             f"{resync_rates[workers][-1]:,.0f}", f"{rss_growth:+.0f}"])
    away = f"; the sandbox answers {args.latency_ms:g} ms late, as a Braze that far away" if args.latency_ms else ""
    print(f"\nResync throughput on {args.database} ({args.members:,} members seeded in {seed_seconds:.1f}s; "
          f"rounds alternate{away})\n")
    print(table(rows, ["round", "run", "members", "requests", "seconds", "members/s", "peak RSS +MB"]))
    for workers, rates in resync_rates.items():
        ratios = [r / f for r, f in zip(rates, fair_rates, strict=True)]
        ratios_urllib3 = [r / f for r, f in zip(rates, fair_urllib3_rates, strict=True)]
        label = f"{workers} workers" if workers else "in-process"
        print(f"braze_resync --all ({label}) / fair loop: {', '.join(f'{r:.1f}x' for r in ratios)} "
              f"(median {statistics.median(ratios):.1f}x); / the loop over urllib3: "
              f"{', '.join(f'{r:.1f}x' for r in ratios_urllib3)} (median {statistics.median(ratios_urllib3):.1f}x)")
        print("SUMMARY " + json.dumps({
            "bench": "resync", "database": args.database, "members": args.members, "workers": workers,
            "latency_ms": args.latency_ms,
            "fair": statistics.median(fair_rates), "resync": statistics.median(rates),
            "ratio": statistics.median(ratios), "fair_urllib3": statistics.median(fair_urllib3_rates),
            "ratio_urllib3": statistics.median(ratios_urllib3)}))


if __name__ == "__main__":
    main()
