"""`make bench`: every benchmark, on SQLite and on PostgreSQL (when it answers), one after another.

Figures are printed and also written to bench/results/<timestamp>.txt.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def postgres_answers() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode == 0


def redis_answers() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], check=False,
                          capture_output=True).returncode == 0


def main() -> None:
    databases = ["sqlite"] + (["postgres"] if postgres_answers() else [])
    redis = ["--redis-url", "redis://127.0.0.1:6379/5"] if redis_answers() else ["--redis-url", ""]
    runs = []
    for database in databases:
        runs += [
            ["resync_throughput.py", "--database", database, "--members", "100000", "--naive-members", "3000"],
            ["save_path.py", "--database", database, "--saves", "4000"],
            ["latency.py", "--database", database, "--samples", "200", *redis],
        ]
    if "postgres" in databases and redis_answers():
        runs.append(["scale_out.py", "--members", "20000", "--workers", "1", "2", "4"])
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out_path = results / f"{dt.datetime.now():%Y%m%d-%H%M%S}.txt"
    with out_path.open("w") as out:
        for run in runs:
            print(f"\n$ python bench/{' '.join(run)}", flush=True)
            completed = subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], cwd=HERE, capture_output=True,
                                       text=True, check=False)
            text = completed.stdout.split("\n\n", 1)[-1] if completed.returncode == 0 else completed.stderr[-3000:]
            print(text, flush=True)
            out.write(f"$ python bench/{' '.join(run)}\n{text}\n")
    print(f"\nWritten to {out_path}")


if __name__ == "__main__":
    main()
