"""Cost on the save path: a member save with the Braze sync on versus off, in one run.

"Off" is no active connection (what a program without Braze pays); "on" is an active connection
with ten mappings, a worker draining the queue, so each save marks the member pending and, when a
flush slot is free, queues a flush task.

    python bench/save_path.py --database sqlite --saves 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import create_connection, percentile, sandbox_process, setup_django, table, worker_process

_next = 0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--saves", type=int, default=2000)
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
    Member.objects.bulk_create(Member(member_id=f"s-{i}", first_name="x") for i in range(pool))
    members = list(Member.objects.order_by("pk"))
    results = {}
    with sandbox_process() as url, worker_process(redis_url=args.redis_url):
        create_connection(url)
        for label in ("off", "on", "off ", "on "):  # interleaved twice, to even out drift
            Connection.objects.update(active=label.strip() == "on")
            services.sync_config_invalidate()
            timed_saves(members, 100)  # warm up
            results.setdefault(label.strip(), []).extend(timed_saves(members, args.saves // 2))
    rows = []
    for label in ("off", "on"):
        values = results[label]
        rows.append([f"sync {label}", f"{len(values):,}", f"{statistics.mean(values) * 1e6:,.0f}",
                     f"{percentile(values, 0.5) * 1e6:,.0f}", f"{percentile(values, 0.99) * 1e6:,.0f}"])
    overhead = statistics.mean(results["on"]) / statistics.mean(results["off"]) - 1
    broker = "Redis" if args.redis_url else "ORM"
    print(f"\nSave path on {args.database} ({broker} broker, a worker draining the queue, saves cycling through "
          f"{pool:,} members)\n")
    print(table(rows, ["", "saves", "mean µs", "p50 µs", "p99 µs"]))
    print(f"\nthe sync adds {overhead:+.0%} to a member save (mean)")


if __name__ == "__main__":
    main()
