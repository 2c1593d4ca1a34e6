"""Sweeps at scale: runs per second, the coordinator's memory, resuming and reading the results of N short runs.

A Latin hypercube design (``[design] kind = "lhs"``) of N points over two of the baseline's parameters, one
replication each: N runs of a tiny market (``--population`` customers, ``--weeks`` weeks with one of warm-up), so
that what is measured is the sweep's own cost per run (planning, claiming, submitting, recording; the workers'
start-up, writing and hashing of the run folders), not the model's. Each measurement runs in a fresh process (the
coordinator), which reports:

* runs per second of the sweep (executor start-up included), with the local process pool of 1 and 2 workers and with
  a local Dask cluster;
* the coordinator's peak resident memory (``VmHWM``), its resident memory before the sweep started (imports and the
  loaded design) and samples of it every quarter second during the sweep (to show it flat as runs finish);
* the same sweep again, resumed with every run stored (what a restart costs: each stored run's folder is checked);
* with ``--interrupt-after S``: the sweep stopped by SIGTERM after S seconds, then run again to completion (runs
  stored before and after, and whether every run was stored exactly once);
* the report's read of the results (``loyaltysim.reporting.report.collect_results``: the registry rows of all runs
  in a few queries, and every run folder checked against its SHA-256s).

Usage (from the repository's top folder)::

    python benchmarks/sweep_scale.py --quick                     # 200 runs, 1 and 2 workers: about a minute
    python benchmarks/sweep_scale.py                             # 1,000 runs: 1 and 2 workers, Dask (2 workers)
    python benchmarks/sweep_scale.py --runs 1000 --configs local:2 --scale-runs 10000 --interrupt-after 300

``--scale-runs N`` adds one sweep of N runs with ``--scale-config`` (default local:2), to compare the coordinator's
memory at the two sizes. Prints a table and writes JSON (``--json PATH``, default
``docs/benchmarks/sweep_scale-<date>.json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"


def experiment_text(runs: int, population: int, weeks: int, seed: int = 11) -> str:
    """An experiment file of ``runs`` short runs: a Latin hypercube of ``runs`` points, one replication."""
    return f"""schema_version = 1
name = "sweep_scale"
description = "{runs} short runs for benchmarks/sweep_scale.py"
scenario = "{BASELINE.as_posix()}"
replications = 1
root_seed = 7
population = {population}
horizon = "{weeks} weeks"
warmup = "1 week"
outcomes = ["market.annual_churn", "focal.share_end"]

[design]
kind = "lhs"
seed = {seed}
samples = {runs}

[[factors]]
name = "switching_cost"
path = "market.customers.switching_cost"
bounds = [0.25, 0.75]

[[factors]]
name = "choice_noise"
path = "market.customers.choice_noise"
bounds = [0.15, 0.45]
"""


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _Sampler:
    """This process's resident memory every ``every_s`` seconds, in a thread."""

    def __init__(self, every_s: float = 0.25):
        self.every_s, self.samples = every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic() - self.t0, _status_kb("VmRSS")))

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _factory(kind: str, workers: int):
    if kind == "dask":
        from loyaltysim.experiments import cluster

        return lambda: cluster.local_cluster(workers)
    return None


def _coordinator(runs: int, population: int, weeks: int, kind: str, workers: int, folder: str,
                 interrupt_after: float | None, queue) -> None:
    """One measurement, in a fresh process: sweep, resume, read."""
    from loyaltysim.experiments.design import load_experiment
    from loyaltysim.experiments.storage import Registry
    from loyaltysim.experiments.sweep import SweepInterrupted, run_sweep
    from loyaltysim.reporting.report import collect_results

    out: dict = {"runs": runs, "executor": kind, "workers": workers, "population": population, "weeks": weeks}
    folder = Path(folder)
    exp_file = folder / "sweep_scale.toml"
    exp_file.write_text(experiment_text(runs, population, weeks))
    root = folder / "results"
    db = f"sqlite:///{root / 'registry.sqlite'}"
    t0 = time.perf_counter()
    exp = load_experiment(exp_file)
    out["load_s"] = time.perf_counter() - t0
    out["rss_before_sweep_mb"] = _status_kb("VmRSS") / 1024
    legs = []
    with _Sampler() as sampler:
        while True:
            timer = None
            if interrupt_after is not None and not legs:
                timer = threading.Timer(interrupt_after, os.kill, (os.getpid(), signal.SIGTERM))
                timer.start()
            t0 = time.perf_counter()
            try:
                result = run_sweep(exp, root, db, workers=workers, executor_factory=_factory(kind, workers),
                                   progress=False)
            except SweepInterrupted as err:
                legs.append({"seconds": time.perf_counter() - t0, "interrupted": True, "stored_so_far": err.stored})
                continue
            finally:
                if timer is not None:
                    timer.cancel()
            legs.append({"seconds": time.perf_counter() - t0, "interrupted": False, "stored": result.stored,
                         "reused": result.reused, "failed": len(result.failed)})
            break
    out["legs"] = legs
    out["complete"] = result.complete and not result.failed
    seconds = sum(leg["seconds"] for leg in legs)
    out["sweep_s"] = seconds
    out["runs_per_s"] = runs / seconds
    out["peak_rss_mb"] = _status_kb("VmHWM") / 1024  # before the resume and the read below
    rss = [kb / 1024 for _, kb in sampler.samples]
    if rss:
        tenth = max(1, len(rss) // 10)
        out["rss_first_tenth_mb"] = max(rss[:tenth])
        out["rss_last_tenth_mb"] = max(rss[-tenth:])
        out["rss_samples_mb"] = [round(v, 1) for v in rss[:: max(1, len(rss) // 40)]]
    t0 = time.perf_counter()
    again = run_sweep(exp, root, db, workers=workers, progress=False)
    out["resume_all_stored_s"] = time.perf_counter() - t0
    out["resume_all_stored_ok"] = again.stored == 0 and again.reused == runs
    t0 = time.perf_counter()
    with Registry(db) as registry:
        tidy, missing = collect_results(exp, registry, root)
    out["report_read_s"] = time.perf_counter() - t0
    out["report_read_ok"] = missing == 0 and len(tidy) == 2 * runs
    out["run_folders"] = sum(1 for p in (root / "runs").iterdir() if not p.name.startswith("."))
    queue.put(out)


def measure(runs: int, population: int, weeks: int, kind: str, workers: int,
            interrupt_after: float | None = None, keep: Path | None = None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="sweep_scale-", dir=keep))
    try:
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_coordinator, args=(runs, population, weeks, kind, workers, str(folder),
                                                      interrupt_after, queue))
        proc.start()
        result = queue.get()
        proc.join()
        return result
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _config(text: str) -> tuple[str, int]:
    kind, _, workers = text.partition(":")
    if kind not in ("local", "dask") or not workers.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}': give EXECUTOR:WORKERS, e.g. local:2 or dask:2")
    return kind, int(workers)


def table(rows: list[dict]) -> str:
    lines = ["| runs | executor | workers | runs/s | peak RSS (coordinator) | RSS before sweep | RSS first/last 10% "
             "of sweep | resume, all stored | report read |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['runs']:,} | {r['executor']} | {r['workers']} | {r['runs_per_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} MB | {r['rss_before_sweep_mb']:.0f} MB | "
                     f"{r.get('rss_first_tenth_mb', float('nan')):.0f} / {r.get('rss_last_tenth_mb', float('nan')):.0f}"
                     f" MB | {r['resume_all_stored_s']:.1f} s | {r['report_read_s']:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of the throughput sweeps (default 1000)")
    parser.add_argument("--configs", type=lambda s: [_config(c) for c in s.split(",")],
                        default=[("local", 1), ("local", 2), ("dask", 2)],
                        help="EXECUTOR:WORKERS,... measured at --runs (default local:1,local:2,dask:2)")
    parser.add_argument("--scale-runs", type=int, help="also one sweep of this many runs (memory at scale)")
    parser.add_argument("--scale-config", type=_config, default=("local", 2))
    parser.add_argument("--interrupt-after", type=float, help="stop the scale sweep (or the last) after this many "
                                                                  "seconds with SIGTERM, then resume it")
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--weeks", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 runs, local:1 and local:2")
    parser.add_argument("--keep", type=Path, help="keep the output folders under this folder")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: docs/benchmarks/sweep_scale-"
                                                  "<date>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.configs = 200, [("local", 1), ("local", 2)]
    plans = [(args.runs, kind, workers) for kind, workers in args.configs]
    if args.scale_runs:
        plans.append((args.scale_runs, *args.scale_config))
    rows = []
    for i, (runs, kind, workers) in enumerate(plans):
        interrupt = args.interrupt_after if i == len(plans) - 1 else None
        print(f"{runs:,} runs, {kind} executor, {workers} worker(s)"
              + (f", interrupted after {interrupt:g} s and resumed" if interrupt else "") + " ...", flush=True)
        row = measure(runs, args.population, args.weeks, kind, workers, interrupt, args.keep)
        rows.append(row)
        print(f"  {row['runs_per_s']:.2f} runs/s, peak RSS {row['peak_rss_mb']:.0f} MB (before the sweep "
              f"{row['rss_before_sweep_mb']:.0f} MB), resume {row['resume_all_stored_s']:.1f} s, report read "
              f"{row['report_read_s']:.1f} s; complete: {row['complete']}", flush=True)
    print()
    print(table(rows))
    report = {"date": date.today().isoformat(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                           "platform": platform.platform()},
              "load_average_at_end": os.getloadavg(), "rows": rows}
    path = args.json or ROOT / "docs" / "benchmarks" / f"sweep_scale-{report['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {path}")
    return 0 if all(r["complete"] and r["resume_all_stored_ok"] and r["report_read_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
