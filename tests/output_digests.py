"""Digests of every output the shipped scenarios and experiments produce, for changes meant to change nothing.

Run it before and after a refactoring and compare the two files::

    .venv/bin/python tests/output_digests.py /tmp/before.json
    .venv/bin/python tests/output_digests.py /tmp/after.json --compare /tmp/before.json

What is hashed (at small populations, full horizons):
- every scenario file under experiments/scenarios: every table and the summary of one run (seed 1), once as written
  and once with a per-customer panel;
- every shipped experiment and tests/data/tiny_experiment.toml: every design point's tables and its summary with
  the experiment's outcomes (replication 0 of the sweep's seeds);
- every experiment's report (summary.md, differences.md, findings.md) from a two-replication sweep.

Not a test (it takes minutes): a tool, kept beside the tests that pin single numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from loyaltysim import load_experiment, load_scenario, run_sweep, simulate
from loyaltysim.experiments.run import with_outcomes

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_POPULATION = 300
EXPERIMENT_POPULATION = 150


def table_digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()[:20]


def json_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _result_digests(result, outcomes=(), extra=None) -> dict[str, str]:
    out = {name: table_digest(t) for name, t in sorted(result.tables.items())}
    out["summary"] = json_digest(with_outcomes(result, list(outcomes), extra))
    return out


def scenario_job(path: str) -> tuple[str, dict]:
    from loyaltysim.scenario import scenario_from_dict

    base = load_scenario(path).to_dict()
    base["market"]["customers"]["population"] = SCENARIO_POPULATION
    out = {}
    for label, panel in (("plain", None), ("panel", "4 weeks")):
        data = json.loads(json.dumps(base))
        if panel:
            data.setdefault("outputs", {})["panel_every"] = panel
        scenario = scenario_from_dict(data, source=path)
        out[label] = _result_digests(simulate(scenario, seed=1))
    return Path(path).name, out


def experiment_job(path: str) -> tuple[str, dict]:
    exp = load_experiment(path, {"population": EXPERIMENT_POPULATION, "replications": 1})
    out = {}
    for point in exp.design:
        result = simulate(point.scenario, seed=exp.root_seed, spawn_key=(0,))
        extra = {"experiment": exp.name, "design": dict(point.labels), "replication": 0}
        out[point.describe()] = _result_digests(result, exp.outcomes, extra)
    return Path(path).name, out


def report_job(path: str) -> tuple[str, dict]:
    from concurrent.futures import ThreadPoolExecutor

    from loyaltysim.reporting.report import write_report

    exp = load_experiment(path, {"population": EXPERIMENT_POPULATION, "replications": 2})
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/registry.sqlite"
        run_sweep(exp, tmp, db, workers=1, executor_factory=lambda: ThreadPoolExecutor(1), progress=False)
        report = write_report(exp, tmp, db)
        out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:20] for p in sorted(report.paths)
               if p.suffix == ".md"}
    return Path(path).name, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="an earlier digest file: list every difference")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scenarios = sorted(str(p) for p in (ROOT / "experiments" / "scenarios").glob("*.toml"))
    experiments = sorted(str(p) for p in (ROOT / "experiments").glob("*.toml"))
    experiments.append(str(ROOT / "tests" / "data" / "tiny_experiment.toml"))
    jobs = ([(scenario_job, p) for p in scenarios] + [(experiment_job, p) for p in experiments]
            + [(report_job, p) for p in experiments])
    digests: dict[str, dict] = {"scenarios": {}, "experiments": {}, "reports": {}}
    section = {scenario_job: "scenarios", experiment_job: "experiments", report_job: "reports"}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [(section[f], pool.submit(f, p)) for f, p in jobs]
        for where, fut in futures:
            name, value = fut.result()
            digests[where][name] = value
            print(f"{where}/{name}: {json_digest(value)}", flush=True)
    args.out.write_text(json.dumps(digests, indent=1, sort_keys=True))
    print(f"all: {json_digest(digests)}")
    if args.compare:
        before = json.loads(args.compare.read_text())
        differences = list(_differences(before, digests))
        for d in differences:
            print("DIFFERS:", d)
        print(f"{len(differences)} difference(s) against {args.compare}")
        return 1 if differences else 0
    return 0


def _differences(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                yield f"{where}/{k}: only {'after' if k in b else 'before'}"
            else:
                yield from _differences(a[k], b[k], f"{where}/{k}")
    elif a != b:
        yield f"{where}: {a} != {b}"


if __name__ == "__main__":
    sys.exit(main())
