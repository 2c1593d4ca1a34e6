"""Parameter recovery at full size: does ``loyaltysim calibrate`` find the parameters that made its targets?

Targets are made by the model itself: the baseline market (experiments/scenarios/baseline.toml) is run at known
values of three parameters (the procedural switching cost, the mean purchase rate and the mean price sensitivity)
over ``--target-seeds`` seeds that the calibration never uses; each target is the mean of six outcomes a firm
would know (market and focal churn, the focal firm's revenue, share and mean satisfaction, a rival's share), and
its standard error one run's spread (what a firm of that size measures once). The calibration then fits the three
parameters within wide bounds, and the script prints, per parameter, the truth, the estimate, its 95% interval and
whether the interval covers the truth, with the distance, the number of runs and the time taken; ``--json`` writes
the same.

Usage (from the repository's top folder)::

    python benchmarks/recovery.py                       # 10,000 customers, two years: about 10-20 minutes
    python benchmarks/recovery.py --population 2000 --json recovery.json

A single recovery says whether the fit lands near the truth at this size; it is not a coverage study (that takes
many recoveries on fresh target seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"
TRUTH = {"switching_cost": 0.8, "purchase_rate": 1.5, "price_sensitivity": 1.3}
PARAMETERS = [
    {"name": "switching_cost", "path": "market.customers.switching_cost", "bounds": [0.2, 2.0]},
    {"name": "purchase_rate", "path": "market.customers.purchase_rate.mean", "bounds": [0.5, 3.0],
     "unit": "per week"},
    {"name": "price_sensitivity", "path": "market.customers.price_sensitivity.mean", "bounds": [0.3, 3.0]},
]
OUTCOMES = {"churn": "market.annual_churn", "focal_churn": "focal.annual_churn", "revenue": "focal.revenue",
            "share": "focal.share_mean", "rival_share": "firm[Rival A].share_mean",
            "satisfaction": "focal.satisfaction_mean"}


def _value(v) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def targets_file(path: Path, targets: dict, args: argparse.Namespace) -> Path:
    lines = ["schema_version = 1", 'name = "recovery"', f"replications = {args.replications}", "root_seed = 5",
             f"population = {args.population}", f'horizon = "{args.horizon}"', f'warmup = "{args.warmup}"', "",
             "[search]", "seed = 3", f"initial = {args.initial}", f"local = {args.local}"]
    for p in PARAMETERS:
        lines += ["", "[[parameters]]", *(f"{k} = {_value(v)}" for k, v in p.items())]
    for name, (outcome, value, sd) in targets.items():
        lines += ["", "[[moments]]", f'name = "{name}"', f'outcome = "{outcome}"', f"value = {value!r}",
                  f"sd = {sd!r}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=10_000)
    parser.add_argument("--horizon", default="104 weeks")
    parser.add_argument("--warmup", default="26 weeks")
    parser.add_argument("--replications", type=int, default=4)
    parser.add_argument("--target-seeds", type=int, default=8)
    parser.add_argument("--initial", type=int, default=16)
    parser.add_argument("--local", type=int, default=40)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from loyaltysim import load_scenario, simulate
    from loyaltysim.experiments.fitting import calibrate, load_targets
    from loyaltysim.experiments.run import with_outcomes

    t0 = time.perf_counter()
    truth = load_scenario(BASELINE).with_changes({
        "market.customers.population": args.population, "time.horizon": args.horizon, "time.warmup": args.warmup,
        **{p["path"]: (f"{TRUTH[p['name']]} {p['unit']}" if "unit" in p else TRUTH[p["name"]])
           for p in PARAMETERS}})
    rows = [with_outcomes(simulate(truth, seed=9000 + i), list(OUTCOMES.values()))["outcomes"]
            for i in range(args.target_seeds)]
    frame = pd.DataFrame(rows)
    targets = {name: (outcome, float(frame[outcome].mean()), float(frame[outcome].std(ddof=1)))
               for name, outcome in OUTCOMES.items()}
    made = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cal = load_targets(targets_file(tmp / "targets.toml", targets, args), BASELINE)
        t1 = time.perf_counter()
        fit = calibrate(cal, tmp / "out", f"sqlite:///{tmp / 'out' / 'registry.sqlite'}", workers=args.workers,
                        stream=sys.stderr)
        took = time.perf_counter() - t1
    params = fit.parameters()
    print(f"\nParameter recovery: baseline market, {args.population:,} customers, {args.horizon} ({args.warmup} "
          f"warm-up); targets from {args.target_seeds} runs at the truth, {len(OUTCOMES)} moments; "
          f"{args.replications} replications per point")
    print(f"{'parameter':<18} {'truth':>7} {'estimate':>9} {'95% interval':>20} covered")
    result = {"population": args.population, "horizon": args.horizon, "warmup": args.warmup,
              "replications": args.replications, "target_seeds": args.target_seeds, "parameters": {}}
    for name, row in params.iterrows():
        covered = bool(row["low"] <= TRUTH[name] <= row["high"])
        print(f"{name:<18} {TRUTH[name]:>7.3f} {row['estimate']:>9.3f} [{row['low']:>8.3f}, {row['high']:>8.3f}] "
              f"{'yes' if covered else 'NO'}")
        result["parameters"][name] = {"truth": TRUTH[name], "estimate": float(row["estimate"]),
                                      "se": float(row["se"]), "low": float(row["low"]), "high": float(row["high"]),
                                      "covered": covered}
    z = fit.targets()["z"]
    print(f"distance {fit.best.score:.3g}; {int((z.abs() <= 1.96).sum())} of {len(z)} moments within 1.96 "
          f"standard errors; {len(fit.evaluations)} points, {fit.new_runs} runs in {took / 60:.1f} min (targets: "
          f"{made / 60:.1f} min)")
    result.update({"distance": fit.best.score, "points": len(fit.evaluations), "runs": fit.new_runs,
                   "calibration_s": took, "targets_s": made})
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
