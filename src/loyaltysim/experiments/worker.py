"""A sweep's worker: one run of a sweep (:class:`Task`) in, its run directory written and a small dict out.

:func:`run_task` runs in a worker process (of the local process pool, or of a Dask cluster), which imports this
module and what it needs: the model, :mod:`loyaltysim.experiments.run`, and the code identity and run directories
(:mod:`loyaltysim.experiments.identity`, :mod:`loyaltysim.experiments.rundirs`), but not the registry's module
(:mod:`loyaltysim.experiments.storage`: SQLAlchemy, SQLModel), which only the coordinator
(:mod:`loyaltysim.experiments.sweep`) writes. :mod:`loyaltysim.experiments.sweep` re-exports these names.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyaltysim.experiments.identity import CodeIdentity, code_mismatch

__all__ = ["Task", "run_task"]


@dataclass(frozen=True)
class Task:
    """One run of a sweep: all a worker needs, small and picklable."""

    key: str
    packed_scenario: bytes  # the effective scenario as canonical JSON, compressed (DesignPoint.packed)
    seed: int
    spawn_key: tuple[int, ...]
    code: CodeIdentity
    out_root: str
    outcomes: tuple[str, ...]
    experiment: str
    design: dict[str, str]
    design_index: int
    replication: int
    scenario_name: str | None = None  # the effective scenario's name, as the registry records it (planned once)

    @property
    def scenario(self) -> dict[str, Any]:
        """The effective scenario (canonical form; a new dict at each call)."""
        return json.loads(zlib.decompress(self.packed_scenario))

    def name(self) -> str:
        """The scenario's name, as the registry records it."""
        return self.scenario_name if self.scenario_name is not None else str(self.scenario.get("name"))

    def extra(self) -> dict[str, Any]:
        """Fields added to the run's summary and manifest."""
        return {"experiment": self.experiment, "design": dict(self.design), "replication": self.replication}

    def describe(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in self.design.items())
        return f"run {self.key[:16]} ({labels + ', ' if labels else ''}replication {self.replication})"


def _init_worker(coordinator: int | None = None) -> None:
    """Pool workers ignore Ctrl-C (the coordinator decides what happens to them) and die with the coordinator
    however it dies: on Linux the kernel kills a worker whose parent is gone (a worker that finds its coordinator
    already gone exits at once), so a killed sweep leaves no process writing run folders nobody records."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if coordinator is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != coordinator:  # the coordinator died before the request took effect
        os._exit(1)


def run_task(task: Task) -> dict[str, Any]:
    """Simulate one run, compute its outcomes and write its run directory; return a small result dict.

    A failure is returned, not raised, so that the coordinator records it and the sweep goes on. A worker that runs
    other code than the coordinator that planned the task (another source, package or numeric library version: the
    run key would not name what it computes), or that does not see the output root, refuses the run.
    """
    from loyaltysim.experiments.run import build_manifest, run_labels, simulate, with_outcomes
    from loyaltysim.experiments.rundirs import write_run_dir
    from loyaltysim.scenario import scenario_from_dict

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    base = {"key": task.key, "started_at": started.isoformat()}
    refusal = code_mismatch(task.code) or _missing_output_root(task)
    if refusal is not None:
        return {**base, "status": "failed", "error": refusal, "finished_at": datetime.now(UTC).isoformat(),
                "duration_s": time.perf_counter() - t0}
    try:
        effective = task.scenario
        scenario = scenario_from_dict(effective, source=f"run {task.key[:16]}")
        result = simulate(scenario, seed=task.seed, spawn_key=task.spawn_key)
        summary = with_outcomes(result, task.outcomes, task.extra())
        fields = {**task.extra(), "outcomes": summary.get("outcomes", {})}
        labels = run_labels(task.key, task.extra())
        manifest = build_manifest(task.key, effective, result, task.code, started, summary,
                                  {**fields, "label_columns": list(labels)})
        write_run_dir(Path(task.out_root), task.key, manifest, result.tables, labels)
    except Exception as err:
        text = f"{type(err).__name__}: {err}".strip()
        return {**base, "status": "failed", "error": f"{text}\n\n{traceback.format_exc()}",
                "finished_at": datetime.now(UTC).isoformat(), "duration_s": time.perf_counter() - t0}
    return {**base, "status": "done", "summary": summary, "finished_at": datetime.now(UTC).isoformat(),
            "duration_s": sum(result.timings.values())}


def _missing_output_root(task: Task) -> str | None:
    """Why this worker cannot write under the task's output root, or None. The coordinator creates ``runs/`` under
    it before any run starts, so a worker that does not find it runs on a machine that does not share it."""
    if (Path(task.out_root) / "runs").is_dir():
        return None
    return (f"the output root '{task.out_root}' does not exist on this worker ({socket.gethostname()}): on a "
            "cluster of several machines the output root must be shared storage, mounted at the same path on "
            "every machine")
