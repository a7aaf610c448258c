"""Scale-out: time to drain N pending members with 1, 2 and 4 worker processes (PostgreSQL + Redis),
without a rate limit and under one, side by side.

    python bench/scale_out.py --members 20000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import contextlib
import time

from common import create_connection, sandbox_process, setup_django, table, worker_process


def drain(member_ids: list[int], workers: int, redis_url: str) -> tuple[float, int]:
    from django.db import connection, transaction

    from braze_integration import services
    from braze_integration.models import MemberSyncState, SyncStatus

    MemberSyncState.objects.all().delete()
    with contextlib.ExitStack() as stack:
        for _ in range(workers):
            stack.enter_context(worker_process(redis_url=redis_url, workers=1))
        started = time.monotonic()
        with transaction.atomic():
            services.member_sync_enqueue(member_ids=member_ids)
        while True:
            connection.close()
            if not MemberSyncState.objects.exclude(status=SyncStatus.SYNCED).exists():
                break
            if time.monotonic() - started > 600:
                raise RuntimeError("not drained within 10 minutes")
            time.sleep(0.05)
        seconds = time.monotonic() - started
    from braze_integration.models import SyncRequest

    return seconds, SyncRequest.objects.count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--limited", default="20/1", help="rate limit of the second series, requests/seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay the sandbox adds to every answer: Braze's round trip from where you run")
    args = parser.parse_args()

    setup_django("postgres", redis_url=args.redis_url)
    import os

    from django.core.management import call_command

    from braze_integration.models import Connection, SyncRequest
    from loyaltysync.models import Member

    call_command("seed_members", count=args.members, batch=5000, prefix="so-", seed=3, verbosity=0)
    ids = list(Member.objects.values_list("pk", flat=True))
    rows = []
    requests_limit, seconds_limit = (int(x) for x in args.limited.split("/"))
    with sandbox_process(*(["--latency-ms", str(args.latency_ms)] if args.latency_ms else [])) as url:
        create_connection(url)
        for label, limit in (("3000 requests / 3 s", (3000, 3)), (f"{args.limited.replace('/', ' requests / ')} s",
                                                                   (requests_limit, seconds_limit))):
            Connection.objects.update(rate_limit_requests=limit[0], rate_limit_seconds=limit[1])
            for workers in args.workers:
                os.environ["BRAZE_SYNC_CONCURRENCY"] = str(workers)
                SyncRequest.objects.all().delete()
                count = args.members if limit[0] >= 1000 else min(args.members, 3000)
                seconds, requests = drain(ids[:count], workers, args.redis_url)
                rows.append([label, str(workers), f"{count:,}", f"{seconds:.1f}", f"{count / seconds:,.0f}",
                             f"{requests / seconds:,.1f}"])
    away = f"; the sandbox answers {args.latency_ms:g} ms late" if args.latency_ms else ""
    print(f"\nScale-out on PostgreSQL + Redis ({args.members:,} members, one qcluster process of one worker "
          f"each{away})\n")
    print(table(rows, ["rate limit", "workers", "members", "seconds", "members/s", "requests/s"]))


if __name__ == "__main__":
    main()
