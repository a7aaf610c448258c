"""Full resync throughput: N members with ten mapped fields of mixed types, batched (75 objects a
request) side by side with a naive baseline (one member per request), against the sandbox.

    python bench/resync_throughput.py --database sqlite --members 100000 --naive-members 3000
"""

from __future__ import annotations

import argparse
import time

from common import create_connection, create_custom_fields, peak_rss_mb, sandbox_process, setup_django, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--naive-members", type=int, default=3_000)
    args = parser.parse_args()

    setup_django(args.database)
    from django.core.management import call_command

    from braze_integration import resync
    from braze_integration.models import MemberSyncState
    from loyaltysync.models import Member, Tier

    for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
        Tier.objects.create(name=name, points_threshold=threshold)
    t = time.monotonic()
    create_custom_fields()
    call_command("seed_members", count=args.members, batch=5000, prefix="b-", seed=1, verbosity=0)
    seed_seconds = time.monotonic() - t

    rows = []
    with sandbox_process() as url:
        create_connection(url, rate_limit=(3000, 3))
        rss_before = peak_rss_mb()
        for label, count, batch in (("batched (75 a request)", args.members, 75),
                                    ("naive (1 a request)", args.naive_members, 1)):
            MemberSyncState.objects.all().delete()
            ids = list(Member.objects.order_by("pk").values_list("member_id", flat=True)[:count])
            selection = resync.Selection(all=True) if count >= args.members else resync.Selection(member_ids=ids)
            run = resync.resync_start(selection=selection, batch_size=batch)
            started = time.monotonic()
            run = resync.resync_execute(run=run)
            seconds = time.monotonic() - started
            assert run.members_sent == count, (run.members_sent, count)
            rows.append([label, f"{count:,}", f"{run.requests:,}", f"{seconds:.1f}", f"{count / seconds:,.0f}",
                         f"{peak_rss_mb():.0f}"])
    batched, naive = (float(r[4].replace(",", "")) for r in rows)
    print(f"\nResync throughput on {args.database} ({args.members:,} members seeded in {seed_seconds:.1f}s; "
          f"peak RSS before the runs {rss_before:.0f} MB)\n")
    print(table(rows, ["run", "members", "requests", "seconds", "members/s", "peak RSS MB"]))
    print(f"\nbatched / naive: {batched / naive:.1f}x")


if __name__ == "__main__":
    main()
