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

    from loyaltysim.scenario import SECOND_PASS_SWITCHES, scenario_from_dict

    spec = importlib.util.spec_from_file_location("bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    def switches(data: dict) -> list[bool]:
        scenario = scenario_from_dict(data)
        values = []
        for path in SECOND_PASS_SWITCHES:  # dotted paths into the scenario, e.g. market.customers.attention.enabled
            node = scenario
            for part in path.split("."):
                node = getattr(node, part)
            values.append(node)
        return values

    assert all(switches(bench.scenario_data(300, 2, market="repertoire")))  # every mechanism on, as shipped
    customers = [p.startswith("market.customers.") for p in SECOND_PASS_SWITCHES]
    shipped = switches(bench.scenario_data(300, 2, market="baseline"))  # a contractual market: no repertoire ones
    assert [on for on, c in zip(shipped, customers, strict=True) if c] == [True] * sum(customers)
    for market in ("baseline", "repertoire"):
        assert not any(switches(bench.scenario_data(300, 2, market=f"{market}-first-pass"))), market


def test_the_recovery_benchmark_runs_and_writes_its_json(tmp_path):
    """A smoke test at a tiny size (the fit itself is checked in tests/experiments/test_fitting.py)."""
    out = tmp_path / "recovery.json"
    script = BENCH.parent / "recovery.py"
    proc = subprocess.run([sys.executable, str(script), "--population", "300", "--horizon", "20 weeks", "--warmup",
                           "4 weeks", "--replications", "2", "--target-seeds", "2", "--initial", "2", "--local", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report["parameters"]) == {"switching_cost", "purchase_rate", "price_sensitivity"}
    assert report["runs"] > 0 and report["points"] >= 2 + 6
    assert "covered" in proc.stdout and str(out) in proc.stdout
