"""Where the CPU of a resync goes: `braze_resync --all` on two `qcluster` workers, and the CPU time
each process on the machine spent during it, per member sent (the workers, the sandbox, PostgreSQL's
backends, the command). On PostgreSQL with `pg_stat_statements` loaded (`shared_preload_libraries`),
also the statements that cost the server most, per member.

The throughput benchmark says how fast; this one says who spends the two cores, which is what
decides what to make cheaper next.

    python bench/cpu_split.py --database postgres --members 30000 --runs 2
"""

from __future__ import annotations

import argparse
import io
import os
import time

from common import create_connection, create_custom_fields, sandbox_process, setup_django, worker_process

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (command line, CPU seconds so far) of every process on the machine (Linux /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline") as cmdline:
                command = cmdline.read().replace("\0", " ").strip()
        except OSError:
            continue
        out[int(entry)] = (command, (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def statements_reset() -> bool:
    """Whether pg_stat_statements is there (and was reset)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        if cursor.fetchone() is None:
            try:
                cursor.execute("CREATE EXTENSION pg_stat_statements")
            except Exception:
                return False
        try:
            cursor.execute("SELECT pg_stat_statements_reset()")
        except Exception:  # the extension exists but is not loaded (shared_preload_libraries)
            return False
    return True


def statements_top(members: int, limit: int = 8) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT calls, rows, total_exec_time, query FROM pg_stat_statements "
                       "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                       "ORDER BY total_exec_time DESC LIMIT %s", [limit])
        return [f"  {ms * 1e3 / members:6.1f} µs  {calls:6,} calls {rows:7,} rows  {' '.join(query.split())[:110]}"
                for calls, rows, ms, query in cursor.fetchall()]


def label(command: str) -> str:
    if "qcluster" in command:
        return "qcluster process (worker, or the cluster's own)"
    if "braze_integration.sandbox" in command:
        return "sandbox"
    if command.startswith("postgres:"):
        return "PostgreSQL " + ("backend" if "127.0.0.1" in command or "[local]" in command else "server process")
    if "cpu_split.py" in command:
        return "this command (braze_resync --all, its progress)"
    return command[:60] or "(kernel thread)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--members", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    setup_django(args.database)
    from django.core.management import call_command

    from braze_integration.models import MemberSyncState, SyncRequest
    from loyaltysync.models import Tier

    for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
        Tier.objects.create(name=name, points_threshold=threshold)
    create_custom_fields()
    call_command("seed_members", count=args.members, batch=5000, prefix="b-", seed=1, verbosity=0)
    with sandbox_process() as url, worker_process(workers=2):
        create_connection(url, rate_limit=(3000, 3))
        for run in range(1, args.runs + 1):
            MemberSyncState.objects.all().delete()  # a first sync, as in resync_throughput.py
            SyncRequest.objects.all().delete()
            time.sleep(1)  # the workers' flush after the deletes has ended
            statements = statements_reset()
            before, started = cpu_by_process(), time.monotonic()
            call_command("braze_resync", "--all", stdout=io.StringIO(), stderr=io.StringIO())
            seconds, after = time.monotonic() - started, cpu_by_process()
            spent = sorted(((cpu - before[pid][1], pid, command) for pid, (command, cpu) in after.items()
                            if pid in before and cpu - before[pid][1] >= 0.02), reverse=True)
            total = sum(cpu for cpu, _, _ in spent)
            print(f"\nRun {run} on {args.database}: {args.members / seconds:,.0f} members/s; "
                  f"{seconds * 1e6 / args.members:.0f} µs of wall time and {total * 1e6 / args.members:.0f} µs of "
                  f"CPU per member ({total / seconds / os.cpu_count():.0%} of {os.cpu_count()} cores)")
            for cpu, pid, command in spent:
                print(f"  {cpu * 1e6 / args.members:6.1f} µs  {label(command)} (pid {pid})")
            if statements:
                print("  PostgreSQL's costliest statements (execution time per member):")
                print("\n".join(statements_top(args.members)))


if __name__ == "__main__":
    main()
