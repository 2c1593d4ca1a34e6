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


def test_the_first_pass_markets_switch_every_second_pass_mechanism_off():
    import importlib.util

    from loyaltysim.scenario import scenario_from_dict

    spec = importlib.util.spec_from_file_location("bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    names = ("attention", "reference_price", "market_expectations", "reliability_choice", "attainable_rewards")
    for market in ("baseline", "repertoire"):
        shipped = scenario_from_dict(bench.scenario_data(300, 2, market=market))
        first = scenario_from_dict(bench.scenario_data(300, 2, market=f"{market}-first-pass"))
        assert all(getattr(shipped.market.customers, n).enabled for n in names)
        assert not any(getattr(first.market.customers, n).enabled for n in names)
    repertoire = scenario_from_dict(bench.scenario_data(300, 2, market="repertoire-first-pass"))
    assert not repertoire.market.tastes.enabled and not repertoire.market.consideration.enabled
