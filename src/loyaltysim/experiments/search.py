"""Searching a box of parameters with the simulator: each evaluated point a stored sweep of its replications.

What calibration (:mod:`loyaltysim.experiments.fitting`: parameters fitted to targets) and policy optimisation
(:mod:`loyaltysim.experiments.optimise`: a firm's levers for the best expected profit) share:

* :class:`Evaluator`: evaluates points of the unit cube (one coordinate per factor, scaled to its bounds) as sweeps
  of an experiment whose design points are those points; every point runs the same replications' seeds (common
  random numbers), so that two points differ by their parameters, not their luck. Every run is stored in the
  registry like any sweep's, so a search stopped part-way replays from the stored runs when run again. A point
  evaluated before is not run again. Subclasses say what a run yields (:meth:`Evaluator.read`) and how the
  replications' outputs score (:meth:`Evaluator.score`, minimised);
* :func:`search`: a scrambled Sobol' design of ``initial`` points (:mod:`scipy.stats.qmc`), run as one sweep, then a
  bounded Nelder-Mead search (:func:`scipy.optimize.minimize`) from each of the ``starts`` best of them. Nothing
  guarantees the global minimum: more initial points and starts make missing it less likely;
* :class:`Kept`: one executor (a process pool, a Dask cluster) kept for every evaluation of a search.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict

from loyaltysim.experiments import design as designs
from loyaltysim.experiments import sweep as sweeps
from loyaltysim.experiments.rundirs import run_dir_for


class FileSpec(BaseModel):
    """A search file's table: unknown keys, NaN and infinity are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Bounded(FileSpec):
    """A searched quantity: a scenario path and the bounds it is searched within (a calibration's parameter, a
    policy's lever), as a sampled design's factor."""

    name: str
    path: str
    bounds: Annotated[list[Annotated[float, Strict()]], Field(min_length=2, max_length=2)]
    type: Literal["float", "integer"] = "float"
    unit: Annotated[str, Field(min_length=1)] | None = None

    def factor(self) -> designs.Factor:
        return designs.Factor(name=self.name, path=self.path, bounds=self.bounds, type=self.type, unit=self.unit)


class SearchFailed(Exception):
    """A run of an evaluation failed, or runs are being computed by another sweep; the message says which."""


@dataclass
class Evaluation:
    """One evaluated point: its place in the search, its values, the replications' outputs and its score."""

    index: int
    stage: str  # e.g. "given", "initial", "local", "jacobian"
    unit: np.ndarray
    values: dict[str, float | int]
    outputs: pd.DataFrame  # one row per replication, one column per output
    score: float  # what the search minimises
    reused: bool
    run_dirs: list[Path] = field(default_factory=list)  # the replications' run folders
    start: int = 0  # which local search (from the best, second best, ... initial point) evaluated it

    @property
    def mean(self) -> pd.Series:
        return self.outputs.mean(axis=0)


class Kept(Executor):
    """One executor for every evaluation of a search (a process pool, a Dask cluster): a sweep's end does not end
    it (starting one costs seconds); a stop (Ctrl-C) does, and :meth:`close` at the end."""

    def __init__(self, inner: Executor):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # what the sweep asks an executor (e.g. a cluster's worker slots)
        return getattr(self.inner, name)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            sweeps._stop_executor(self.inner)

    def close(self) -> None:
        self.inner.shutdown(wait=True)


Build = Callable[[np.ndarray], designs.Experiment]
"""``build(unit)``: the experiment whose design points are the rows of ``unit`` (in order); raises its own error
when a point makes an invalid scenario."""


class Evaluator:
    """Runs points as sweeps (each point's replications on the same seeds), reads each run's outputs and scores
    the point; a point evaluated before is not run again. Subclasses define :meth:`read` and :meth:`score`."""

    score_name = "score"

    def __init__(self, build: Build, out_root: Path, db_url: str, workers: int,
                 executor_factory: Callable[[], Executor] | None, stream: TextIO | None):
        self.build = build
        self.out_root = Path(out_root)
        self.db_url = db_url
        self.workers = workers
        self.factory = executor_factory
        self.stream = stream
        self.evaluations: list[Evaluation] = []
        self._seen: dict[tuple, Evaluation] = {}
        self.new_runs = 0
        self.reused_runs = 0
        self.start = 0

    def read(self, run_dir: Path, point: designs.DesignPoint) -> pd.Series:
        """One run's outputs, from its folder."""
        raise NotImplementedError

    def score(self, outputs: pd.DataFrame) -> float:
        """A point's score (lower is better) from its replications' outputs (one row each)."""
        raise NotImplementedError

    def run(self, unit: np.ndarray, stage: str) -> list[Evaluation]:
        """Evaluate the points (rows of ``unit``, in [0, 1]) in one sweep."""
        unit = np.clip(np.atleast_2d(np.asarray(unit, dtype=np.float64)), 0.0, 1.0)
        todo = [u for u in unit if self._key(u) not in self._seen]
        todo = list({self._key(u): u for u in todo}.values())
        if todo:
            experiment = self.build(np.array(todo))
            result = sweeps.run_sweep(experiment, self.out_root, self.db_url, workers=self.workers,
                                      executor_factory=self.factory, progress=False)
            if result.failed:
                first = result.failed[0].error.splitlines()[0] if result.failed[0].error else "?"
                raise SearchFailed(f"{len(result.failed)} run(s) of the evaluation failed (recorded in the "
                                   f"registry); first error: {first}")
            if result.elsewhere:
                raise SearchFailed(f"{result.elsewhere_runs} run(s) are being computed by another sweep on the "
                                   "same registry; run the same command when it has finished")
            self.new_runs += result.stored
            self.reused_runs += result.reused
            tasks = sweeps.plan(experiment, self.out_root)
            for point, u in zip(experiment.design, todo, strict=True):
                dirs = [run_dir_for(self.out_root, t.key) for t in tasks if t.design_index == point.index]
                frame = pd.DataFrame([self.read(d, point) for d in dirs]).reset_index(drop=True)
                ev = Evaluation(len(self.evaluations), stage, u, dict(point.values), frame, self.score(frame),
                                result.stored == 0, dirs, self.start)
                self.evaluations.append(ev)
                self._seen[self._key(u)] = ev
                self._say(ev)
        return [self._seen[self._key(u)] for u in unit]

    def __call__(self, u: np.ndarray) -> float:
        """The score at one point (Nelder-Mead's objective)."""
        return self.run(np.asarray(u)[None, :], "local")[0].score

    def best(self, stages: tuple[str, ...] = ("given", "initial", "local")) -> Evaluation:
        """The best point evaluated in those stages."""
        return min((e for e in self.evaluations if e.stage in stages), key=lambda e: e.score)

    @staticmethod
    def _key(u: np.ndarray) -> tuple:
        return tuple(np.round(u, 12))

    def describe(self, ev: Evaluation) -> str:
        """What a progress line says of a point after its values."""
        return f"{self.score_name} {ev.score:.4g}"

    def _say(self, ev: Evaluation) -> None:
        if self.stream is None:
            return
        values = ", ".join(f"{k}={v:.4g}" for k, v in ev.values.items())
        best = min(e.score for e in self.evaluations)
        self.stream.write(f"  {ev.index + 1:>3} {ev.stage:<8} {values}: {self.describe(ev)}"
                          f"{' (best so far)' if ev.score == best and ev.stage != 'jacobian' else ''}"
                          f"{' (stored before)' if ev.reused else ''}\n")
        self.stream.flush()


def derived_seed(*entropy: int) -> int:
    """A root seed for runs of their own (a bootstrap replicate's, a confirmation's), drawn from ``entropy`` (e.g.
    the search's root seed and a tag): a non-negative 63-bit integer, as experiment files take."""
    state = np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def local_search(ev: Evaluator, unit: np.ndarray, budget: int, step: np.ndarray | None = None) -> None:
    """A bounded Nelder-Mead search of at most ``budget`` evaluations from ``unit`` (a point of the unit cube); the
    first simplex spans ``step`` of each range (default a tenth), toward the inside of the box."""
    from scipy import optimize

    k = unit.size
    steps = np.full(k, 0.1) if step is None else step
    simplex = [unit]
    for j in range(k):
        v = unit.copy()
        v[j] = v[j] + steps[j] if v[j] + steps[j] <= 1.0 else v[j] - steps[j]
        simplex.append(v)
    optimize.minimize(ev, unit, method="Nelder-Mead", bounds=[(0.0, 1.0)] * k,
                      options={"maxfev": budget, "initial_simplex": np.array(simplex), "xatol": 1e-3, "fatol": 1e-3})


def search(ev: Evaluator, dimensions: int, seed: int, initial: int, local: int, starts: int = 1,
           given: np.ndarray | None = None) -> Evaluation:
    """The Sobol' design, then a local search of at most ``local`` evaluations from each of its ``starts`` best
    points; returns the best point evaluated. ``given`` (a point of the unit cube, e.g. a published estimate) is
    evaluated first (stage "given") and competes with the design's points as a start."""
    from scipy.stats import qmc

    engine = qmc.Sobol(d=dimensions, scramble=True, rng=np.random.default_rng(seed))
    first = ev.run(np.atleast_2d(given), "given") if given is not None else []
    first = first + ev.run(engine.random(initial), "initial")
    for n, start in enumerate(sorted(first, key=lambda e: e.score)[:starts]):
        ev.start = n
        if local > 0:
            local_search(ev, start.unit, local)
    return ev.best()
