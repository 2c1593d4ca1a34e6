"""One simulation run: simulate, tabulate, summarise, and store with its identity.

:func:`simulate` is pure (a scenario and a seed in, tables and a summary out). :func:`execute_run` adds the
run's identity (a key hashing the effective scenario, the seed and the code version), writes the run
directory and records the run in the registry. The registry and the output directory are checked before
simulating, so a bad database URL or an unwritable directory costs nothing and leaves nothing behind.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loyaltysim.experiments.identity import CodeIdentity, code_identity, run_key
from loyaltysim.experiments.rundirs import (
    StorageError,
    labelled,
    read_run_dir,
    run_dir_for,
    run_dir_problem,
    write_run_dir,
)
from loyaltysim.measures.outcomes import compute as compute_outcomes
from loyaltysim.measures.summary import nan_to_none, summarize
from loyaltysim.measures.tables import tabulate
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import LoyaltyScenario
from loyaltysim.version import __version__


@dataclass
class RunResult:
    """A run's scenario, seed, tables and summary (and, on request, the model at the end of the run)."""

    scenario: LoyaltyScenario
    seed_entropy: int
    spawn_key: tuple[int, ...]
    tables: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    model: LoyaltyMarket | None = None


def simulate(scenario: LoyaltyScenario, *, seed: int = 0, spawn_key: tuple[int, ...] = (),
             keep_model: bool = False, on_step: Callable[[], None] | None = None) -> RunResult:
    """Run a scenario from a root seed (and the spawn key of a sweep's child seed).

    With ``keep_model`` the result also holds the :class:`LoyaltyMarket` at the end of the run, to inspect its
    customers' arrays and firms (or to run it on: ``result.model.run(10)``). ``on_step`` is called after every
    step (a progress display); it changes nothing in the run.
    """
    t0 = time.perf_counter()
    model = LoyaltyMarket(scenario, seed=np.random.SeedSequence(seed, spawn_key=spawn_key))
    t1 = time.perf_counter()
    if on_step is None:
        model.run()
    else:
        for _ in range(scenario.steps()):
            model.step()
            on_step()
    t2 = time.perf_counter()
    tables = tabulate(model)
    summary = summarize(scenario, tables)
    t3 = time.perf_counter()
    timings = {"build_s": t1 - t0, "simulate_s": t2 - t1, "tabulate_s": t3 - t2}
    return RunResult(scenario, seed, tuple(spawn_key), tables, summary, timings, model if keep_model else None)


@dataclass
class StoredRun:
    key: str
    run_dir: Path
    summary: dict[str, Any]
    reused: bool
    damaged: str | None = None  # why the stored copy of this run was not reused (it was run again)


def with_outcomes(result: RunResult, names: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> dict:
    """The run's summary plus ``extra`` fields (e.g. an experiment's name, design labels and replication) and,
    when ``names`` are given, the named outcomes (:func:`loyaltysim.measures.outcomes.compute`; NaN stored as None)."""
    summary = {**result.summary, **(extra or {})}
    if names:
        values = compute_outcomes(list(names), result.scenario, result.tables, result.summary)
        summary["outcomes"] = {k: nan_to_none(v) for k, v in values.items()}
    return summary


DESIGN_COLUMN_PREFIX = "design_"  # a factor's column in the stored tables: design_<factor>, beside the model's own


def run_labels(key: str, extra: Mapping[str, Any] | None = None) -> dict[str, str | int]:
    """The columns that label a stored run's tables, with their values: the run's key (``run_key``) and, for a run
    of an experiment, its replication and its design point's label of each factor (``design_<factor>``, text; the
    values of a sampled design, as text)."""
    labels: dict[str, Any] = {"run_key": key}
    if extra and isinstance(extra.get("design"), Mapping):
        if extra.get("replication") is not None:
            labels["replication"] = int(extra["replication"])
        labels.update({f"{DESIGN_COLUMN_PREFIX}{factor}": str(label) for factor, label in extra["design"].items()})
    return labels


def label_tables(tables: Mapping[str, pd.DataFrame], key: str,
                 extra: Mapping[str, Any] | None = None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The run's tables as stored, and the names of the columns added to them: each table starts with the run's
    labels (:func:`run_labels`), so that the tables of a whole sweep read in one line (DuckDB:
    ``SELECT * FROM 'results/runs/*/firms.parquet'``) carry what tells their runs apart. The text columns are
    categorical (one dictionary entry per file). :func:`read_run_dir` drops them again. (A run is written with
    ``write_run_dir(..., labels=run_labels(key, extra))``, which writes these tables without making them.)"""
    labels = run_labels(key, extra)
    for name, frame in tables.items():
        clash = [c for c in labels if c in frame.columns]
        if clash:
            raise ValueError(f"table {name} already has the column(s) {clash} that label a stored run")
    return {name: labelled(frame, labels) for name, frame in tables.items()}, list(labels)


def build_manifest(key: str, effective: dict, result: RunResult, code: CodeIdentity, started: datetime,
                   summary: dict, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run directory's ``manifest.json``: the effective scenario, the seed, the code, timings and summary.

    ``extra`` fields (an experiment run's name, design labels, replication, outcomes) go in at the top level.
    """
    return {
        "run_key": key,
        "scenario": effective,
        "seed": {"entropy": result.seed_entropy, "spawn_key": list(result.spawn_key)},
        "package": {"name": "loyaltysim", "version": __version__},
        "code": {"commit": code.commit, "dirty": code.dirty, "source_digest": code.source_digest,
                 "dependencies": dict(code.dependencies)},
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "mesa": _mesa_version(), "pandas": pd.__version__},
        "tables": list(result.tables),
        "timings": result.timings,
        "created_at": started.isoformat(),
        "summary": summary,
        **(extra or {}),
    }


def execute_run(scenario: LoyaltyScenario, *, seed: int, out_root: Path, db_url: str,
                spawn_key: tuple[int, ...] = (), experiment: str | None = None, force: bool = False,
                outcomes: Sequence[str] = (), extra: Mapping[str, Any] | None = None,
                on_step: Callable[[], None] | None = None) -> StoredRun:
    """Simulate and store one run, unless the same run (same key) is already stored and complete.

    ``outcomes`` (names from :mod:`loyaltysim.measures.outcomes`) and ``extra`` fields are added to the summary and the
    manifest, as a sweep stores its runs, so that a run of an experiment replayed from its manifest is stored
    the same way. ``on_step`` is called after every simulated step (a progress display).

    The registry row is ``running`` while the run computes, naming this process as its owner (and renewing its
    lease), so that a later open marks it failed if this process dies first. A run whose folder was written but
    never recorded done (its process died, or lost its database, at the end) is recorded from its folder, not run
    again.
    """
    # the registry's module (SQLAlchemy, SQLModel) only here: a sweep's worker imports this module but no registry
    from loyaltysim.experiments.storage import LeaseKeeper, Owner, RunRecord, open_results, record_run_dir

    out_root, registry = open_results(out_root, db_url)
    try:
        code = code_identity()
        effective = scenario.to_dict()
        key = run_key(effective, seed, spawn_key, code)
        run_dir = run_dir_for(out_root, key)
        existing = registry.get_run(key)
        damaged = None
        if not force and run_dir.exists():
            damaged = run_dir_problem(run_dir)
            done = existing is not None and existing.status == "done"
            if damaged is None and (done or record_run_dir(registry, run_dir, key) is not None):
                manifest, _ = read_run_dir(run_dir)
                return StoredRun(key, run_dir, manifest["summary"], reused=True)
            if not done:
                damaged = None  # an incomplete folder of a run never stored: not a damaged stored run
        owner = Owner.this_process()
        started = datetime.now(UTC)
        record = RunRecord(key=key, experiment_name=experiment, scenario_name=scenario.name, seed_entropy=str(seed),
                           spawn_key=json.dumps(list(spawn_key)), version=code.version, commit=code.commit,
                           dirty=code.dirty, status="running", started_at=started, run_dir=str(run_dir),
                           **owner.stamp())
        registry.upsert_run(record)
        try:
            with LeaseKeeper(registry, owner):
                result = simulate(scenario, seed=seed, spawn_key=spawn_key, on_step=on_step)
                summary = with_outcomes(result, outcomes, extra)
                fields = {**(extra or {}), **({"outcomes": summary["outcomes"]} if outcomes else {})}
                labels = run_labels(key, extra)
                manifest = build_manifest(key, effective, result, code, started, summary,
                                          {**fields, "label_columns": list(labels)})
                write_run_dir(out_root, key, manifest, result.tables, labels)
        except BaseException as err:
            record.status = "failed"
            record.error = f"{type(err).__name__}: {err}"
            record.finished_at = datetime.now(UTC)
            record.lease_until = None
            registry.upsert_run(record)
            raise
        record.status = "done"
        record.finished_at = datetime.now(UTC)
        record.duration_s = sum(result.timings.values())
        record.summary_json = json.dumps(summary, sort_keys=True)
        record.lease_until = None
        try:
            registry.upsert_run(record)
        except StorageError as err:
            raise StorageError(f"{err}; the run is written to '{run_dir}' and the same command records it "
                               "without running it again") from err
        return StoredRun(key, run_dir, summary, reused=False, damaged=damaged)
    finally:
        registry.close()


def _mesa_version() -> str:
    import mesa

    return mesa.__version__
