"""Cost on the save path: a plain `member.save()` of a mapped field and an API `PATCH
/api/v1/members/<id>/` with the Braze sync on versus off, interleaved in one run.

"Off" is no active connection (what a program without Braze pays); "on" is an active connection
with ten mappings, a worker draining the queue, so each save marks the member pending and wakes
the worker when none is lingering. Blocks of each alternate (off, on, on, off, ...); the ratio of
each pair of blocks side by side is printed too.

    python bench/save_path.py --database sqlite --saves 4000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import (
    create_connection,
    descendants_cpu_seconds,
    percentile,
    sandbox_process,
    setup_django,
    table,
    worker_process,
)

_next = 0
BLOCK = 1000  # saves per block (about half a second); a tenth as many API PATCHes


def timed_saves(members, count: int) -> list[float]:
    global _next
    timings = []
    for _ in range(count):
        member = members[_next % len(members)]
        _next += 1
        member.first_name = f"Name {_next}"
        started = time.perf_counter()
        member.save()
        timings.append(time.perf_counter() - started)
    return timings


def timed_patches(client, members, count: int) -> list[float]:
    """The API as a shop calls it (through Django's handler, authentication and serializers)."""
    global _next
    timings = []
    for _ in range(count):
        member = members[_next % len(members)]
        _next += 1
        started = time.perf_counter()
        response = client.patch(f"/api/v1/members/{member.member_id}/", {"first_name": f"Name {_next}"},
                                format="json")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:300]
    return timings


def queue_drained_wait(timeout: float = 30.0) -> None:
    """Until the worker has sent every change saved so far."""
    from django.db.models import Q

    from braze_integration.models import MemberChange, MemberSyncState, SyncStatus

    deadline = time.monotonic() + timeout
    while MemberChange.objects.exists() or MemberSyncState.objects.filter(
            Q(status=SyncStatus.PENDING) | Q(claim_token__isnull=False)).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not send the saved changes within {timeout:.0f} s")
        time.sleep(0.02)


def api_client():
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from tests.api_scopes import grant_every_api_scope

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    user = grant_every_api_scope(get_user_model().objects.create_user(username="bench-shop"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--saves", type=int, default=4000, help="saves with the sync on, and as many with it off")
    parser.add_argument("--redis-url", default="", help="use Redis as the broker (e.g. redis://127.0.0.1:6379/5)")
    parser.add_argument("--members", type=int, default=0,
                        help="members the saves cycle through (default: one per save; a small pool measures a "
                             "hot member that the worker is sending while it is saved again)")
    args = parser.parse_args()

    setup_django(args.database, redis_url=args.redis_url)
    from braze_integration import services
    from braze_integration.models import Connection
    from loyaltysync.models import Member

    pool = args.members or args.saves + 400
    Member.objects.bulk_create(Member(member_id=f"s-{i}", first_name="x", email=f"s-{i}@example.com")
                               for i in range(pool))
    members = list(Member.objects.order_by("pk"))
    client = api_client()
    results: dict[tuple[str, str], list[float]] = {}
    # The CPU the other processes (worker, sandbox) spent while the calls ran: the sync's cost that the
    # callers' timings do not show, on a machine whose cores they share.
    others_cpu: dict[tuple[str, str], float] = {}

    def measure(key: tuple[str, str], calls) -> None:
        cpu = descendants_cpu_seconds()
        timings = calls()
        results.setdefault(key, []).extend(timings)
        blocks.setdefault(key, []).append(statistics.mean(timings))
        others_cpu[key] = others_cpu.get(key, 0.0) + descendants_cpu_seconds() - cpu

    blocks: dict[tuple[str, str], list[float]] = {}
    # Blocks of about a second, in the order off on on off off on on off ...: this machine's speed drifts
    # by a third within a minute, so each "on" block has an "off" one beside it, and a steady drift cancels
    # out. An "off" block starts once the worker has sent everything the "on" block before it saved, so it
    # does not pay for the sync's work (it would flatter the ratio).
    rounds = max(1, args.saves // BLOCK)
    order = [("off", "on")[(i + 1) // 2 % 2] for i in range(2 * rounds)]
    with sandbox_process() as url, worker_process(redis_url=args.redis_url):
        create_connection(url)
        for label in order:
            if label == "off":
                queue_drained_wait()
            Connection.objects.update(active=label == "on")
            services.sync_config_invalidate()
            timed_saves(members, 100)  # warm up
            measure(("save()", label), lambda: timed_saves(members, BLOCK))
            timed_patches(client, members, 25)
            measure(("API PATCH", label), lambda: timed_patches(client, members, BLOCK // 8))
    rows, summary = [], {"bench": "save", "database": args.database, "broker": "Redis" if args.redis_url else "ORM"}
    for kind in ("save()", "API PATCH"):
        for label in ("off", "on"):
            values = results[(kind, label)]
            rows.append([kind, f"sync {label}", f"{len(values):,}", f"{statistics.mean(values) * 1e6:,.0f}",
                         f"{percentile(values, 0.5) * 1e6:,.0f}", f"{percentile(values, 0.99) * 1e6:,.0f}",
                         f"{others_cpu[(kind, label)] / len(values) * 1e6:,.0f}"])
        on, off = results[(kind, "on")], results[(kind, "off")]
        summary[kind] = {"mean": statistics.mean(on) / statistics.mean(off),
                         "p50": percentile(on, 0.5) / percentile(off, 0.5)}
    print(f"\nSave path on {args.database} ({summary['broker']} broker, a worker draining the queue, saves cycling "
          f"through {pool:,} members)\n")
    print(table(rows, ["", "", "calls", "mean µs", "p50 µs", "p99 µs", "worker + sandbox CPU µs / call"]))
    for kind in ("save()", "API PATCH"):
        print(f"{kind}: sync on / off = {summary[kind]['mean']:.2f}x (mean), {summary[kind]['p50']:.2f}x (p50)")
        pairs = zip(blocks[(kind, "on")], blocks[(kind, "off")], strict=True)
        print(f"  on / off of each pair of blocks side by side (mean): {', '.join(f'{on / off:.2f}x' for on, off in pairs)}")
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
