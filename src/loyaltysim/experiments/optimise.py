"""Optimising a policy: search a firm's levers for the best expected profit (or any outcome) within a risk limit.

``loyaltysim optimise POLICY.toml`` reads a policy file (TOML, unknown keys are errors)::

    schema_version = 1
    name = "best_price"                 # the output folder: OUT/<name>/
    description = "..."
    scenario = "../scenarios/baseline.toml"   # the market, relative to this file
    replications = 8                    # runs per evaluated policy, on the same seeds for every policy
    root_seed = 11
    # population = 2000 ; horizon = "156 weeks" ; warmup = "26 weeks"   (optional overrides, as in experiments)
    objective = "focal.npv"             # any outcome (loyaltysim.measures.outcomes); maximised
    # minimise = false                  # true: the lower the better (e.g. a cost)
    risk_limit = 0.2                    # optional: P(objective worse than the reference's) at most 0.2
    confirm = 16                        # the best policy re-run on this many fresh seeds for its interval (0: none)

    [reference]                         # optional: the policy to beat, as paths set on the scenario (e.g. today's
    "market.firms[0].price" = 30.0      # price, or no programme); default: the scenario as written

    [search]
    seed = 3                            # the initial design's seed
    initial = 8                         # a scrambled Sobol' design over the levers' bounds
    local = 30                          # then at most this many points of a Nelder-Mead search from the best
    starts = 1                          # local searches, from the best, second best, ... initial points

    [[levers]]                          # what the firm decides, each searched between its bounds
    name = "price"
    path = "market.firms[0].price"
    bounds = [20.0, 45.0]
    # type = "integer" ; unit = "per unit"

**Evaluating a policy.** Each candidate runs ``replications`` runs on the same seeds as every other candidate and
as the reference (common random numbers), so the paired difference objective - reference's objective, replication
by replication, measures the policy, not the luck of the draws. A candidate's risk is the share of replications in
which it does worse than the reference. The search (:mod:`loyaltysim.experiments.search`: a Sobol' start, then
Nelder-Mead) minimises the score -mean objective (or +mean when minimising); a candidate over the risk limit scores
worse than every candidate within it (:func:`score`), so the best point evaluated is the best admissible one when
any is admissible.

**The answer, re-checked.** Picking the best of many noisy candidates on the same seeds flatters it (the winner's
curse): its mean on those seeds is biased upward. So the best policy and the reference run again on ``confirm``
fresh seeds, and the reported interval, percentiles and probability of a loss are those of the confirmation runs.

Every run is stored in the registry (the candidates as the experiment ``<name>``, the reference as
``<name>.reference``, the confirmation as ``<name>.confirm`` and ``<name>.confirm-reference``), so a stopped search
resumes when the same command runs again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from loyaltysim.experiments import design as designs
from loyaltysim.experiments import search as points
from loyaltysim.experiments import sweep as sweeps
from loyaltysim.experiments.search import Evaluation
from loyaltysim.measures.intervals import interval
from loyaltysim.measures.outcomes import OutcomeError, check_name
from loyaltysim.scenario import (
    PATH,
    PATH_HINT,
    LoyaltyScenario,
    ScenarioError,
    format_validation_error,
    load_scenario,
    read_toml,
)
from loyaltysim.units import DurationField

SCHEMA_VERSION = 1
RISK_PENALTY = 1e15  # per unit of risk over the limit: larger than any objective's spread (see score)


class PolicyError(ScenarioError):
    """A policy file (or its scenario) that cannot be used; the message lists every problem."""


class _FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Lever(points.Bounded):
    """A decision the firm makes: a scenario path and the bounds it is searched within."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class PolicySearch(_FileSpec):
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    initial: Annotated[int, Strict(), Field(ge=2, le=4096)] = 8
    local: Annotated[int, Strict(), Field(ge=0, le=10_000)] = 30
    starts: Annotated[int, Strict(), Field(ge=1, le=64)] = 1


class PolicySpec(_FileSpec):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    description: str = ""
    scenario: Annotated[str, Field(min_length=1)]
    replications: Annotated[int, Strict(), Field(ge=2, le=1000)]
    root_seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    horizon: DurationField | None = None
    warmup: DurationField | None = None
    population: Annotated[int, Strict(), Field(ge=1)] | None = None
    objective: str
    minimise: Annotated[bool, Strict()] = False
    risk_limit: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    confirm: Annotated[int, Strict(), Field(ge=0, le=10_000)] = 16
    reference: dict[str, Any] = {}
    search: PolicySearch
    levers: Annotated[list[Lever], Field(min_length=1)]


@dataclass
class Policy:
    """A validated policy file with its scenario."""

    spec: PolicySpec
    path: Path
    base: LoyaltyScenario  # the scenario as written (the candidates' levers are set on it)
    reference: LoyaltyScenario  # the policy to beat

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def factors(self) -> list[designs.Factor]:
        return [lever.factor() for lever in self.spec.levers]

    def experiment_spec(self, suffix: str = "", points: int = 2, root_seed: int | None = None,
                        replications: int | None = None, factors: bool = True) -> designs.ExperimentSpec:
        s = self.spec
        return designs.ExperimentSpec(
            name=s.name + suffix, description=s.description or f"policy search on {Path(s.scenario).name}",
            scenario=s.scenario, replications=replications or s.replications,
            root_seed=s.root_seed if root_seed is None else root_seed, horizon=s.horizon, warmup=s.warmup,
            population=s.population, outcomes=[s.objective], factors=self.factors if factors else [],
            design=(designs.DesignSpec(kind="sobol", seed=s.search.seed, samples=max(points, 2)) if factors
                    else designs.DesignSpec()))


def load_policy(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Policy:
    """Read and check a policy file and its scenario; raise :class:`PolicyError` listing every problem.
    ``overrides`` replace top-level fields first (e.g. a tiny ``population`` in tests)."""
    path = Path(path)
    try:
        data = read_toml(path, "a policy file (.toml)")
    except ValueError as err:
        raise PolicyError(str(path), [str(err)]) from None
    if overrides:
        data = {**data, **overrides}
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as err:
        raise PolicyError(str(path), format_validation_error(err)) from None
    problems = []
    for i, lever in enumerate(spec.levers):
        if not PATH.fullmatch(lever.path):
            problems.append(f"levers[{i}].path: invalid path '{lever.path}'; {PATH_HINT}")
        if not lever.bounds[0] < lever.bounds[1]:
            problems.append(f"levers[{i}].bounds: the lower bound must be below the upper one, got {lever.bounds}")
        if lever.type == "integer" and not all(float(b).is_integer() for b in lever.bounds):
            problems.append(f"levers[{i}].bounds: an integer lever takes whole-number bounds, got {lever.bounds}")
    names = [lever.name for lever in spec.levers]
    problems += [f"levers: the name '{n}' is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if spec.search.starts > spec.search.initial:
        problems.append(f"search.starts: {spec.search.starts} local searches need as many initial points; initial "
                        f"is {spec.search.initial}")
    if problems:
        raise PolicyError(str(path), problems)
    scenario_path = (path.parent / spec.scenario).resolve()
    base = load_scenario(scenario_path)  # raises ScenarioError naming the scenario file
    firms = [f.name for f in base.market.firms] + [o.name for c in base.market.categories for o in c.outlets]
    try:
        check_name(spec.objective, firms, [s.name for s in base.market.customers.segments])
    except OutcomeError as err:
        raise PolicyError(str(path), [f"objective: {err}"]) from None
    try:
        reference = base.with_changes(spec.reference, source=f"{path} [reference]") if spec.reference else base
    except ScenarioError as err:
        raise PolicyError(str(path), [f"reference: {err}"]) from None
    policy = Policy(spec, path.resolve(), base, reference)
    # every lever alone at each bound (and all at their middles) makes a valid scenario
    _, problems = designs.build_design(policy.experiment_spec(points=1), base, _sampling(policy,
                                                                                      np.full((1, len(names)), 0.5)))
    if problems:
        raise PolicyError(str(path), [p.replace("factors[", "levers[").replace("(factor ", "(lever ")
                                      for p in problems])
    return policy


def _sampling(policy: Policy, unit: np.ndarray) -> designs.Sampling:
    return designs.Sampling("sobol", policy.spec.search.seed, tuple(policy.factors), np.atleast_2d(unit))


def score(objective: np.ndarray, reference: np.ndarray, minimise: bool, risk_limit: float | None) -> float:
    """A candidate's score (lower is better) from its replications' objective and the reference's on the same
    seeds: -mean objective (+mean when minimising), plus, over the risk limit, ``RISK_PENALTY`` times the excess
    risk, so that every candidate within the limit beats every candidate over it, and among those over it the less
    risky wins. A candidate whose objective is undefined (NaN) in a run scores worse than any other."""
    if np.isnan(objective).any():  # an outcome undefined in some run (e.g. a rate without cases): never chosen
        return 2.0 * RISK_PENALTY
    sign = 1.0 if minimise else -1.0
    value = sign * float(np.mean(objective))
    if risk_limit is None:
        return value
    excess = loss_probability(objective, reference, minimise) - risk_limit
    return value + RISK_PENALTY * excess if excess > 1e-12 else value


def loss_probability(objective: np.ndarray, reference: np.ndarray, minimise: bool) -> float:
    """The share of replications in which the policy does worse than the reference on the same seed."""
    d = np.asarray(objective, float) - np.asarray(reference, float)
    return float(np.mean(d > 0 if minimise else d < 0))


def _objective(run_dir: Path, outcome: str) -> float:
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    value = manifest.get("summary", {}).get("outcomes", {}).get(outcome)
    return math.nan if value is None else float(value)


class Evaluator(points.Evaluator):
    """Evaluates candidate policies: each run's objective, each candidate's score against the reference's runs."""

    def __init__(self, policy: Policy, reference: np.ndarray, out_root: Path, db_url: str, workers: int,
                 executor_factory: Callable[[], Executor] | None, stream: TextIO | None):
        super().__init__(self._experiment, out_root, db_url, workers, executor_factory, stream)
        self.policy = policy
        self.reference = reference  # the reference's objective, replication by replication

    def _experiment(self, unit: np.ndarray) -> designs.Experiment:
        spec = self.policy.experiment_spec(points=len(unit))
        design, problems = designs.build_design(spec, self.policy.base, _sampling(self.policy, unit))
        if problems:
            raise PolicyError(str(self.policy.path), problems)
        return designs.Experiment(spec, self.policy.path, self.policy.base, design)

    def read(self, run_dir: Path, point: designs.DesignPoint) -> pd.Series:
        return pd.Series({"objective": _objective(run_dir, self.policy.spec.objective)})

    def score(self, outputs: pd.DataFrame) -> float:
        s = self.policy.spec
        return score(outputs["objective"].to_numpy(), self.reference, s.minimise, s.risk_limit)

    def describe(self, ev: Evaluation) -> str:
        s = self.policy.spec
        risk = loss_probability(ev.outputs["objective"].to_numpy(), self.reference, s.minimise)
        return f"mean {s.objective} {ev.mean['objective']:.6g}, P(worse than the reference) {risk:.2f}"


@dataclass
class Optimum:
    """A policy search's result: the best policy, the evidence for it, every evaluation."""

    policy: Policy
    best: Evaluation
    evaluations: list[Evaluation]
    reference: np.ndarray  # the reference's objective on the search's seeds
    confirmed: np.ndarray | None  # the best policy's objective on the confirmation seeds
    confirmed_reference: np.ndarray | None  # and the reference's on the same seeds
    new_runs: int
    reused_runs: int

    @property
    def levers(self) -> dict[str, float | int]:
        return dict(self.best.values)

    def admissible(self, ev: Evaluation) -> bool:
        s = self.policy.spec
        return s.risk_limit is None or (
            loss_probability(ev.outputs["objective"].to_numpy(), self.reference, s.minimise) <= s.risk_limit + 1e-12)

    def summary(self) -> pd.DataFrame:
        """The best policy against the reference: on the search's seeds and, when run, on the confirmation's; the
        objective's mean and 95% interval, the paired difference's mean, interval, 5th and 95th percentiles, and
        the probability of doing worse than the reference."""
        s = self.policy.spec
        rows = []
        sets = [("search", self.best.outputs["objective"].to_numpy(), self.reference)]
        if self.confirmed is not None and self.confirmed_reference is not None:
            sets.append(("confirmation", self.confirmed, self.confirmed_reference))
        for label, mine, ref in sets:
            d = mine - ref
            stats, diff = interval(mine), interval(d)
            rows.append({"seeds": label, "replications": len(mine), "objective": stats["mean"],
                         "objective_low": stats["ci_low"], "objective_high": stats["ci_high"],
                         "reference": float(np.mean(ref)), "difference": diff["mean"],
                         "difference_low": diff["ci_low"], "difference_high": diff["ci_high"],
                         "p05": float(np.percentile(d, 5)), "p95": float(np.percentile(d, 95)),
                         "p_worse": loss_probability(mine, ref, s.minimise)})
        return pd.DataFrame(rows).set_index("seeds")

    def evaluation_table(self) -> pd.DataFrame:
        rows = []
        s = self.policy.spec
        for ev in self.evaluations:
            objective = ev.outputs["objective"].to_numpy()
            rows.append({"evaluation": ev.index + 1, "stage": ev.stage, "start": ev.start + 1, **ev.values,
                         "objective": float(np.mean(objective)), "objective_sd": float(np.std(objective, ddof=1)),
                         "p_worse": loss_probability(objective, self.reference, s.minimise),
                         "admissible": self.admissible(ev), "score": ev.score})
        return pd.DataFrame(rows)


def confirmation_seed(root_seed: int) -> int:
    """The confirmation runs' root seed: drawn from the search's, so that none of its seeds is the search's."""
    return points.derived_seed(root_seed, 0xC0F1)


def _run_fixed(policy: Policy, scenario: LoyaltyScenario, suffix: str, root_seed: int, replications: int,
               out_root: Path, db_url: str, workers: int,
               executor_factory: Callable[[], Executor]) -> tuple[np.ndarray, int, int]:
    """One scenario's objective, replication by replication, run as its own stored sweep."""
    spec = policy.experiment_spec(suffix, root_seed=root_seed, replications=replications, factors=False)
    design, problems = designs.build_design(spec, scenario)
    if problems:
        raise PolicyError(str(policy.path), problems)
    experiment = designs.Experiment(spec, policy.path, scenario, design)
    result = sweeps.run_sweep(experiment, out_root, db_url, workers=workers, executor_factory=executor_factory,
                              progress=False)
    if result.failed:
        first = result.failed[0].error.splitlines()[0] if result.failed[0].error else "?"
        raise points.SearchFailed(f"{len(result.failed)} run(s) failed (recorded in the registry); first error: "
                                  f"{first}")
    from loyaltysim.experiments.rundirs import run_dir_for

    tasks = sweeps.plan(experiment, out_root)
    values = np.array([_objective(run_dir_for(out_root, t.key), policy.spec.objective) for t in tasks])
    return values, result.stored, result.reused


def optimise(policy: Policy, out_root: Path | str, db_url: str, *, workers: int | None = None,
             executor: Executor | None = None, stream: TextIO | None = None) -> Optimum:
    """Search the levers (see the module's docstring): the reference's runs, the search, the confirmation.

    The runs go to ``executor`` (e.g. a Dask cluster's), kept for every evaluation and closed at the end, or to one
    process pool of ``workers`` processes. Raises what :func:`~loyaltysim.experiments.sweep.run_sweep` raises (every
    evaluation stored until then is kept, and the same call resumes) and
    :class:`~loyaltysim.experiments.search.SearchFailed` when a run fails.
    """
    out_root = Path(out_root)
    workers = workers or os.cpu_count() or 1
    pool = points.Kept(executor if executor is not None else sweeps.default_executor_factory(workers)())
    factory = lambda: pool  # noqa: E731
    s = policy.spec
    try:
        reference, new, reused = _run_fixed(policy, policy.reference, ".reference", s.root_seed, s.replications,
                                            out_root, db_url, workers, factory)
        if stream is not None:
            stream.write(f"  reference: mean {s.objective} {np.mean(reference):.6g} over {len(reference)} runs\n")
        ev = Evaluator(policy, reference, out_root, db_url, workers, factory, stream)
        best = points.search(ev, len(policy.factors), s.search.seed, s.search.initial, s.search.local,
                             s.search.starts)
        new, reused = new + ev.new_runs, reused + ev.reused_runs
        confirmed = confirmed_reference = None
        if s.confirm > 0:
            seed = confirmation_seed(s.root_seed)
            chosen = ev._experiment(best.unit[None, :]).design[0].scenario
            confirmed, n1, r1 = _run_fixed(policy, chosen, ".confirm", seed, s.confirm, out_root, db_url, workers,
                                           factory)
            confirmed_reference, n2, r2 = _run_fixed(policy, policy.reference, ".confirm-reference", seed,
                                                     s.confirm, out_root, db_url, workers, factory)
            new, reused = new + n1 + n2, reused + r1 + r2
    finally:
        pool.close()
    return Optimum(policy, best, list(ev.evaluations), reference, confirmed, confirmed_reference, new, reused)
