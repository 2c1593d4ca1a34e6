"""Benchmarks of the market: the vectorized step against customers stepped one at a time as Mesa agents.

Runs the full model (experiments/scenarios/baseline.toml: 3 firms, word of mouth on a small-world network, with the
focal firm's default points programme) at several population sizes, each size in a fresh process, and prints a table
and writes JSON:

* customer-steps per second, vectorized and one at a time (same rules, same numbers), and their ratio;
* model build time (drawing the population, the network, creating the Mesa agents) and its share spent creating
  the customer agents;
* peak memory per customer (the process's peak resident set size above what it used before building the model);
* sweep throughput (runs per second, start-up included) with 1 and 2 worker processes, on 24 runs of about a
  second each;
* how long ``loyaltysim --help`` takes to answer.

Both baselines run the second behaviour pass's mechanisms as shipped. ``--market repertoire`` times the repertoire
baseline (experiments/scenarios/baseline_repertoire.toml, no programme; with its personal store tastes and
consideration sets) instead; ``--market baseline-first-pass`` and ``--market repertoire-first-pass`` time the same
markets with every mechanism of the second pass switched off (``loyaltysim.scenario.SECOND_PASS_SWITCHES``), which gives
their cost.

Usage (from the repository's top folder)::

    python benchmarks/bench.py --quick          # under a minute: 1,000 and 10,000 customers
    python benchmarks/bench.py                  # 1,000 to 1,000,000 customers (several minutes)
    python benchmarks/bench.py --sizes 100000 --steps 52 --json bench.json
    python benchmarks/bench.py --sizes 100000 --no-sweep --market baseline-first-pass   # the second pass's cost

Timings are wall-clock on the machine at hand: compare ratios, and record the machine with the numbers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"
REPERTOIRE = ROOT / "experiments" / "scenarios" / "baseline_repertoire.toml"
MARKETS = ("baseline", "repertoire", "baseline-first-pass", "repertoire-first-pass")
PROGRAMME = {"kind": "points", "name": "Points"}  # the default points programme
ONE_AT_A_TIME_MAX = 100_000  # one step of 100,000 customers one at a time takes about half a minute


def scenario_data(population: int, steps: int, programme: bool = True, market: str = "baseline") -> dict:
    data = tomllib.loads((BASELINE if market.startswith("baseline") else REPERTOIRE).read_text())
    if market.endswith("first-pass"):
        from loyaltysim.scenario import SECOND_PASS_SWITCHES, scenario_from_dict

        data = scenario_from_dict(data).with_changes({path: False for path in SECOND_PASS_SWITCHES}).to_dict()
    data["market"]["customers"]["population"] = population
    data["time"]["horizon"] = f"{steps + 1} weeks"
    data["time"]["warmup"] = "1 week"
    data["policy"]["programmes"] = [PROGRAMME] if programme and market.startswith("baseline") else []
    return data


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _measure(population: int, steps: int, one_at_a_time_steps: int, queue, market: str = "baseline") -> None:
    """In a fresh process: build the model, time vectorized steps (and one-at-a-time steps on a second model)."""
    from loyaltysim.model.agents import Customer
    from loyaltysim.model.market import LoyaltyMarket
    from loyaltysim.scenario import scenario_from_dict

    sc = scenario_from_dict(scenario_data(population, steps, market=market))
    before = _peak_rss_bytes()
    t0 = time.perf_counter()
    model = LoyaltyMarket(sc, seed=1)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    agents = [Customer(model, i) for i in range(min(population, 10_000))]  # agent creation alone, on a sample
    per_agent = (time.perf_counter() - t0) / len(agents)
    for a in agents:
        a.remove()
    model.step()  # the first step allocates what later steps reuse
    t0 = time.perf_counter()
    for _ in range(steps):
        model.step()
    vectorized = population * steps / (time.perf_counter() - t0)
    peak = _peak_rss_bytes()
    out = {"population": population, "steps": steps, "build_s": build, "agent_creation_s": per_agent * population,
           "vectorized_customer_steps_per_s": vectorized, "peak_bytes_per_customer": (peak - before) / population}
    if one_at_a_time_steps:
        slow = LoyaltyMarket(sc, seed=1, one_at_a_time=True)
        slow.step()
        t0 = time.perf_counter()
        for _ in range(one_at_a_time_steps):
            slow.step()
        out["one_at_a_time_customer_steps_per_s"] = population * one_at_a_time_steps / (time.perf_counter() - t0)
        out["ratio"] = vectorized / out["one_at_a_time_customer_steps_per_s"]
    queue.put(out)


def measure(population: int, steps: int, one_at_a_time_steps: int, market: str = "baseline") -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(population, steps, one_at_a_time_steps, queue, market))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def sweep_throughput(runs: int, population: int, steps: int) -> dict:
    """Runs per second of ``loyaltysim.experiments.sweep.run_sweep`` with 1 and 2 workers, on fresh output folders."""
    from loyaltysim.experiments.design import load_experiment
    from loyaltysim.experiments.sweep import run_sweep

    out = {"runs": runs, "population": population, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        experiment = tmp / "bench.toml"
        experiment.write_text(
            f'schema_version = 1\nname = "bench"\nscenario = "{BASELINE.as_posix()}"\nreplications = {runs}\n'
            f'root_seed = 1\npopulation = {population}\nhorizon = "{steps + 1} weeks"\nwarmup = "1 week"\n'
            'outcomes = ["focal.share_end"]\n[[factors]]\nname = "programme"\n'
            'levels = [{ label = "points", set = { "policy.programmes" = [{ kind = "points", name = "Points" }] } }]\n')
        exp = load_experiment(experiment)
        for workers in (1, 2):
            root = tmp / f"out{workers}"
            t0 = time.perf_counter()
            run_sweep(exp, root, f"sqlite:///{root}/registry.sqlite", workers=workers, progress=False)
            out[f"runs_per_s_{workers}_workers"] = runs / (time.perf_counter() - t0)
    out["ratio_2_to_1"] = out["runs_per_s_2_workers"] / out["runs_per_s_1_workers"]
    out["seconds_per_run_1_worker"] = 1.0 / out["runs_per_s_1_workers"]
    return out


def help_latency(repeats: int = 5) -> float:
    """Best of ``repeats`` wall-clock times of ``loyaltysim --help`` in a fresh interpreter."""
    exe = Path(sys.executable).with_name("loyaltysim")
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "loyaltysim.cli", "--help"]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 customers, short runs (< 1 minute)")
    parser.add_argument("--sizes", type=int, nargs="+", help="population sizes (default 1e3 .. 1e6)")
    parser.add_argument("--steps", type=int, help="timed vectorized steps per size (default 52; quick 10)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep-throughput measurement")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default results/benchmarks/...)")
    parser.add_argument("--market", choices=MARKETS, default="baseline",
                        help="the contractual baseline with a points programme (default) or the repertoire baseline, "
                             "as shipped or with every second-pass mechanism off (-first-pass)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000])
    steps = args.steps or (10 if args.quick else 52)
    rows = []
    for n in sizes:
        slow_steps = 0 if n > ONE_AT_A_TIME_MAX else (5 if n <= 1_000 and not args.quick else 2 if n <= 10_000 else 1)
        rows.append(measure(n, steps, slow_steps, args.market))
        r = rows[-1]
        print(f"{n:>9,} customers: vectorized {r['vectorized_customer_steps_per_s'] / 1e6:6.3f}M customer-steps/s"
              + (f", one at a time {r['one_at_a_time_customer_steps_per_s'] / 1e3:7.1f}k, ratio {r['ratio']:6.1f}x"
                 if "ratio" in r else "")
              + f"; build {r['build_s']:.2f} s (customer agents {r['agent_creation_s']:.2f} s); "
                f"peak {r['peak_bytes_per_customer']:,.0f} bytes/customer; "
                f"{n} x {steps} steps in {n * steps / r['vectorized_customer_steps_per_s']:.1f} s", flush=True)
    # 24 runs of about a second each (a year of 12,000 customers, with its tables and registry rows; both pools pay
    # the same start-up of a second or two, spawning workers that import the package); quick: fewer, shorter runs
    sweep = None if args.no_sweep else sweep_throughput(*((4, 2000, 26) if args.quick else (24, 12_000, 52)))
    if sweep:
        print(f"sweep of {sweep['runs']} runs ({sweep['population']} customers x {sweep['steps']} steps, "
              f"{sweep['seconds_per_run_1_worker']:.2f} s a run): {sweep['runs_per_s_1_workers']:.2f} runs/s with 1 "
              f"worker, {sweep['runs_per_s_2_workers']:.2f} with 2 (ratio {sweep['ratio_2_to_1']:.2f})", flush=True)
    latency = help_latency()
    print(f"loyaltysim --help: {latency:.3f} s (best of 5)")
    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "market": args.market, "sizes": rows,
              "sweep": sweep,
              "help_s": latency}
    path = args.json or ROOT / "results" / "benchmarks" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
