"""`make bench`: every benchmark, on SQLite and on PostgreSQL (when it answers), one after another.

Figures are printed and also written to bench/results/<timestamp>.txt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")


def postgres_answers() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode == 0


def redis_answers() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], check=False,
                          capture_output=True).returncode == 0


def main() -> None:
    databases = ["sqlite"] + (["postgres"] if postgres_answers() else [])
    redis = ["--redis-url", REDIS_URL] if redis_answers() else ["--redis-url", ""]
    runs = []
    for database in databases:
        runs += [
            ["resync_throughput.py", "--database", database, "--members", "30000", "--fair-members", "3000",
             "--rounds", "2", "--workers", "0", "2"],
            ["resync_throughput.py", "--database", database, "--members", "100000", "--fair-members", "3000",
             "--rounds", "1", "--workers", "0", "2"],
            # Braze far away: its round trip, not the CPU, bounds the engine (and the fair loop far more).
            ["resync_throughput.py", "--database", database, "--members", "30000", "--fair-members", "300",
             "--rounds", "1", "--workers", "2", "--latency-ms", "30"],
            ["save_path.py", "--database", database, "--saves", "4000"],
            ["latency.py", "--database", database, "--samples", "200", *redis],
        ]
    if "postgres" in databases and redis_answers():
        runs.append(["scale_out.py", "--members", "20000", "--workers", "1", "2", "4", "--redis-url", REDIS_URL])
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out_path = results / f"{dt.datetime.now():%Y%m%d-%H%M%S}.txt"
    summaries = []
    with out_path.open("w") as out:
        for run in runs:
            print(f"\n$ python bench/{' '.join(run)}", flush=True)
            completed = subprocess.run([sys.executable, str(HERE / run[0]), *run[1:]], cwd=HERE, capture_output=True,
                                       text=True, check=False)
            text = completed.stdout.split("\n\n", 1)[-1] if completed.returncode == 0 else completed.stderr[-3000:]
            summaries += [json.loads(line[8:]) for line in text.splitlines() if line.startswith("SUMMARY ")]
            text = "\n".join(line for line in text.splitlines() if not line.startswith("SUMMARY "))
            print(text, flush=True)
            out.write(f"$ python bench/{' '.join(run)}\n{text}\n")
        overview = summary_table(summaries)
        print(overview)
        out.write(overview)
    print(f"\nWritten to {out_path}")


def summary_table(summaries: list[dict]) -> str:
    """The figures the aims are about, one line each."""
    sys.path.insert(0, str(HERE))
    from common import table

    rows = []
    for s in summaries:
        where = s["database"]
        if s["bench"] == "resync":
            how = f"{s['workers']} workers" if s.get("workers") else "in-process"
            if s.get("latency_ms"):
                how += f", Braze {s['latency_ms']:g} ms away"
            rows.append([where, f"full resync of {s['members']:,} ({how})", f"fair loop {s['fair']:,.0f}/s",
                         f"braze_resync --all {s['resync']:,.0f}/s", f"{s['ratio']:.1f}x"])
            rows.append([where, "  the same / the loop over urllib3", f"loop over urllib3 {s['fair_urllib3']:,.0f}/s", "",
                         f"{s['ratio_urllib3']:.1f}x"])
        elif s["bench"] == "save":
            for kind in ("save()", "API PATCH"):
                rows.append([where, f"{kind} sync on / off ({s['broker']} broker)", "", "",
                             f"{s[kind]['mean']:.2f}x mean, {s[kind]['p50']:.2f}x p50"])
        elif s["bench"] == "latency":
            for broker in ("ORM", "Redis"):
                if broker in s:
                    rows.append([where, f"save -> sandbox p50 ({broker} broker)", "", "", f"{s[broker]:.0f} ms"])
    return "\n\nSummary\n\n" + table(rows, ["database", "what", "baseline", "engine", "figure"]) + "\n"


if __name__ == "__main__":
    main()
