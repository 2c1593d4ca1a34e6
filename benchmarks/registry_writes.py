"""What recording one run costs the registry: the two writes a sweep makes per run (its claim, then its outcome).

Usage (from the repository's top folder)::

    python benchmarks/registry_writes.py                 # 200 runs into a SQLite registry in a temporary folder
    python benchmarks/registry_writes.py --runs 1000 --db postgresql+psycopg://USER@HOST:PORT/DB

Prints milliseconds per run for the claim (``Registry.claim_run``) and for the recorded outcome
(``Registry.upsert_run``, as a sweep records a finished run), and their sum, with the CPU time this
process spent (the rest is waiting: for the disk, or on a busy machine for a processor).
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from loyaltysim.experiments.storage import Owner, Registry, RunRecord


def row(key: str, status: str) -> RunRecord:
    return RunRecord(key=key, experiment_name="bench", scenario_name="bench", seed_entropy="1", spawn_key="[0]",
                     version="0", status=status, run_dir=f"/tmp/runs/{key[:16]}",
                     summary_json=json.dumps({"outcomes": {"x": 1.0}}), finished_at=datetime.now(UTC))


def measure(url: str, runs: int) -> dict[str, float]:
    owner = Owner.this_process()
    keys = [secrets.token_hex(32) for _ in range(runs)]
    with Registry(url) as registry:
        registry.check()
        registry.ensure_experiment("bench")
        claims = [row(key, "running") for key in keys]
        records = [row(key, "done") for key in keys]
        t0, c0 = time.perf_counter(), time.process_time()
        for claim in claims:
            registry.claim_run(claim, owner, lambda r: False)
        t1 = time.perf_counter()
        for record in records:
            registry.upsert_run(record)
        t2, c2 = time.perf_counter(), time.process_time()
    return {"claim_ms": 1e3 * (t1 - t0) / runs, "record_ms": 1e3 * (t2 - t1) / runs,
            "per_run_ms": 1e3 * (t2 - t0) / runs, "cpu_per_run_ms": 1e3 * (c2 - c0) / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'registry.sqlite'}"
        figures = measure(url, args.runs)
    print(f"{args.runs} runs: claim {figures['claim_ms']:.3f} ms, record {figures['record_ms']:.3f} ms, "
          f"{figures['per_run_ms']:.3f} ms per run (CPU time {figures['cpu_per_run_ms']:.3f} ms)")


if __name__ == "__main__":
    main()
