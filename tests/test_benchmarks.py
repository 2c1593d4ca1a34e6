"""The benchmark script runs and writes what it prints (a smoke test: no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_the_benchmark_script_runs_and_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--sizes", "300", "--steps", "2", "--no-sweep", "--json",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    (row,) = report["sizes"]
    assert row["population"] == 300 and row["steps"] == 2
    for key in ("vectorized_customer_steps_per_s", "one_at_a_time_customer_steps_per_s", "ratio", "build_s",
                "agent_creation_s", "peak_bytes_per_customer"):
        assert row[key] > 0, key
    assert report["sweep"] is None and report["help_s"] > 0
    assert "300 customers" in proc.stdout and str(out) in proc.stdout
