"""Calibration to a firm's targets: the simulated method of moments, each evaluation a stored sweep.

``loyaltysim calibrate SCENARIO.toml --targets TARGETS.toml`` fits the uncertain parameters the targets file names,
within their bounds, so that the scenario's simulated moments come as close as they can to the targets. A targets
file (TOML, unknown keys are errors)::

    schema_version = 1
    name = "my_firm"                   # the output folder: OUT/<name>/
    replications = 4                   # runs per evaluated point, on the same seeds at every point
    root_seed = 7                      # replication r runs on child r of SeedSequence(root_seed)
    # population = 5000 ; horizon = "104 weeks" ; warmup = "26 weeks"    (optional overrides, as in experiments)

    [search]
    seed = 11                          # the initial design's seed
    initial = 16                       # a scrambled Sobol' design of this many points over the bounds
    local = 40                         # then at most this many evaluations of a Nelder-Mead search from the best
    starts = 1                         # local searches, from the best, second best, ... initial points
    # start = { rate = 0.05, ... }     # optional: a point to evaluate first (every parameter, within its bounds),
                                       # e.g. a published estimate; it competes with the design's points as a start
    step = 0.05                        # finite-difference step for the derivatives (share of each range)

    [uncertainty]                      # optional: how the parameters' intervals are computed
    method = "sandwich"                # or "bootstrap": refit on redrawn targets and fresh seeds
    replicates = 50                    # bootstrap replicates
    # local = 40 ; seed = 0            (each replicate's search budget, default the search's; the draws' seed)

    [[parameters]]                     # the uncertain parameters, each uniform between its bounds
    name = "switching_cost"
    path = "market.customers.switching_cost"
    bounds = [0.2, 1.2]
    # type = "integer" ; unit = "% per month"    (as a sampled design's factor)

    [[moments]]                        # summary moments the firm has
    name = "churn"
    outcome = "focal.annual_churn"     # any outcome of loyaltysim.measures.outcomes
    value = 0.18
    sd = 0.01                          # the target's standard error: weights the distance, enters the intervals

    [transactions]                     # and/or moments computed from the firm's transaction log
    file = "transactions.csv"          # customer, date, amount (loyaltysim.measures.transactions); or
                                       # dataset = "cdnow-master" (or "cdnow-sample"), fetched into its cache
    weeks = 39                         # the calibration window: weeks 1..39 of the log are fitted
    moments = ["repeat_histogram", "cumulative_repeats"]   # loyaltysim.measures.moments.KINDS
    # start = "1997-01-01" ; firm = "Focal" ; cohort_weeks = 12 ; tracking = [13, 26, 39] ; holdout_weeks = 39
    # decay_block = 13 ; bootstrap = 200 ; seed = 0
    # benchmark = "bgnbd"              # the BG/NBD fitted on the same weeks, reported beside the calibrated model

**The distance** of a point θ is J(θ) = Σ_k ((m̄_k(θ) − m_k) / s_k)², m̄_k the mean over the replications of
simulated moment k, m_k its target and s_k the target's standard error: given for a summary moment, from a
bootstrap of the log's customers for a transaction moment (:func:`loyaltysim.measures.moments.bootstrap`). Every
point runs the same replications' seeds (common random numbers), so that two points differ by their parameters,
not their luck.

**The search**: a scrambled Sobol' design of ``initial`` points (:mod:`scipy.stats.qmc`), its points run together as
one sweep, then a bounded Nelder-Mead search (:func:`scipy.optimize.minimize`) from the best of them, each of its
points a sweep of the replications; with ``starts`` > 1, one such search from each of the ``starts`` best initial
points, so that a search stuck in a poorer local minimum (or on a ridge) is not the last word. A ``start`` (a value
of every parameter: a prior guess, a published estimate) is evaluated before the design and competes with its points
for the local searches, so a good guess is searched from whatever the design finds. The estimate is the
best point evaluated. Nothing guarantees the global minimum: more initial points and starts make missing it less
likely, and ``evaluations.csv`` shows where each search went.

**The uncertainty**: the simulated method of moments' sandwich (McFadden 1989; Gourieroux & Monfort 1996) with the
diagonal weights W = diag(1 / s²): V = (GᵀWG)⁻¹ GᵀW (Ω + Σ/R) WG (GᵀWG)⁻¹, G the moments' derivatives at the estimate
(central differences of ``step`` of each range, on the same seeds), Ω the targets' covariance (the bootstrap's for a
transaction log, diag(s²) for summary moments) and Σ the replications' covariance of the simulated moments. A
parameter the moments barely move gets a wide interval, one they do not move at all none ("not identified"). These
intervals are asymptotic: they assume the moments are close to linear in the parameters over the interval.

With ``[uncertainty] method = "bootstrap"``, the intervals come from a bootstrap of the estimate instead: each of
``replicates`` replicates redraws the targets (a transaction log's moments from a resample of its customers, as for
Ω; a summary moment from a normal with its standard error) and runs its replications on seeds of its own (an
experiment named ``<name>.bootstrap`` in the registry), then refits by a local Nelder-Mead search from the estimate;
the standard error is the replicates' standard deviation and the interval their 2.5th-97.5th percentiles, so both
the targets' sampling error and the simulation's noise enter, without linearising. It costs ``replicates`` x
(``local`` + 1) x ``replications`` runs, and as the refits start at the estimate it does not see another minimum
far from it. The sandwich is still computed and kept beside it (``se_sandwich``).

**Every evaluation is a stored run.** Each point's runs are a sweep of an experiment named after the targets file
(run keys hash the effective scenario and the seed, as for any sweep), so the registry holds every evaluation, and
a calibration stopped part-way resumes when the same command runs again: the search replays, finding the runs
already stored, and goes on from where it stopped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from loyaltysim.experiments import design as designs
from loyaltysim.experiments import search as points
from loyaltysim.experiments import sweep as sweeps
from loyaltysim.experiments.search import Evaluation
from loyaltysim.measures import moments as mom
from loyaltysim.measures import transactions as tr
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
PENALTY = 1e12  # the distance of a point whose moments cannot be computed (e.g. no customer in the cohort)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PERIOD_WEEKS = {"week": 1.0, "day": tr.DAY}


class CalibrationError(ScenarioError):
    """A targets file (or the scenario with it) that cannot be used; the message lists every problem."""


# --------------------------------------------------------------------------------------------------
# The targets file
# --------------------------------------------------------------------------------------------------


class _FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Parameter(points.Bounded):
    """An uncertain parameter: a scenario path and the bounds it is searched within."""


class Moment(_FileSpec):
    """A summary moment: an outcome of the runs, its target value and the target's standard error."""

    name: str
    outcome: str
    value: float
    sd: Annotated[float, Field(gt=0.0)]


class Transactions(_FileSpec):
    """Moments computed from a transaction log and, the same way, from each run's purchase log."""

    file: Annotated[str, Field(min_length=1)] | None = None  # a CSV log, relative to the targets file
    dataset: Literal["cdnow-master", "cdnow-sample"] | None = None  # or a public log (loyaltysim.datasets)
    weeks: Annotated[int, Strict(), Field(ge=1)]
    moments: Annotated[list[Literal[mom.KINDS]], Field(min_length=1)]  # type: ignore[valid-type]
    start: str | None = None  # the first day of week 1 (YYYY-MM-DD); default: the log's first date
    firm: str | None = None  # the scenario's firm whose purchases the log stands for; default: the focal firm
    cohort_weeks: Annotated[float, Field(gt=0.0)] | None = None  # default: the whole window
    tracking: list[Annotated[int, Strict(), Field(ge=1)]] | None = None  # default: every 13 weeks and the last
    decay_block: Annotated[int, Strict(), Field(ge=1)] = 13
    holdout_weeks: Annotated[int, Strict(), Field(ge=1)] | None = None  # tracked after the window, not fitted
    benchmark: Literal["bgnbd"] | None = None  # also fit the BG/NBD on the window and report it beside the fit
    bootstrap: Annotated[int, Strict(), Field(ge=20, le=10_000)] = 200
    seed: Annotated[int, Strict(), Field(ge=0)] = 0


class Search(_FileSpec):
    method: Literal["smm"] = "smm"
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    initial: Annotated[int, Strict(), Field(ge=2, le=4096)] = 16
    local: Annotated[int, Strict(), Field(ge=0, le=10_000)] = 40
    step: Annotated[float, Field(gt=0.0, le=0.25)] = 0.05
    starts: Annotated[int, Strict(), Field(ge=1, le=64)] = 1
    start: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None


class Uncertainty(_FileSpec):
    method: Literal["sandwich", "bootstrap"] = "sandwich"
    replicates: Annotated[int, Strict(), Field(ge=2, le=1000)] = 50
    local: Annotated[int, Strict(), Field(ge=1, le=10_000)] | None = None  # default: the search's
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)] = 0


class TargetsSpec(_FileSpec):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    replications: Annotated[int, Strict(), Field(ge=1, le=1000)]
    root_seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    horizon: DurationField | None = None
    warmup: DurationField | None = None
    population: Annotated[int, Strict(), Field(ge=1)] | None = None
    search: Search
    parameters: Annotated[list[Parameter], Field(min_length=1)]
    moments: list[Moment] = []
    transactions: Transactions | None = None
    uncertainty: Uncertainty = Uncertainty()


@dataclass
class Calibration:
    """A validated targets file with its scenario: what to fit, to what, and how."""

    spec: TargetsSpec
    path: Path  # the targets file
    scenario_path: Path
    base: LoyaltyScenario  # the scenario as the runs start from it (the purchase log switched on if needed)
    target: pd.Series  # every moment's target value, by name
    sd: pd.Series  # every target's standard error
    omega: pd.DataFrame  # the targets' covariance
    observed: pd.DataFrame | None = None  # the log's tidy frame (transaction targets)
    window: mom.Window | None = None
    firm: str = ""  # the scenario's firm whose purchases a transaction log stands for

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def factors(self) -> list[designs.Factor]:
        return [p.factor() for p in self.spec.parameters]

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.spec.parameters]

    def values(self, unit: np.ndarray) -> dict[str, float | int]:
        """A point of the unit cube as the parameters' values."""
        return {f.name: designs.scale(f, float(u)) for f, u in zip(self.factors, unit, strict=True)}

    def period(self) -> float:
        """The scenario's step, in weeks."""
        return PERIOD_WEEKS[self.base.time.step]


def _problems(data: dict, scenario: LoyaltyScenario | None) -> list[str]:
    """What the pydantic schema cannot say: names, paths, bounds, counts and outcome names."""
    problems: list[str] = []
    name = data.get("name")
    if isinstance(name, str) and not _NAME.fullmatch(name):
        problems.append(f"name: '{name}' is not a folder name: letters, digits, '_', '.', '-' (at most 100)")
    params = [p for p in data.get("parameters", []) if isinstance(p, dict)]
    seen: set[str] = set()
    for i, p in enumerate(params):
        where = f"parameters[{i}]"
        pname, path, bounds = p.get("name"), p.get("path"), p.get("bounds")
        if isinstance(pname, str):
            if not _IDENTIFIER.fullmatch(pname):
                problems.append(f"{where}.name: '{pname}' must be an identifier (letters, digits, '_')")
            if pname in seen:
                problems.append(f"{where}.name: '{pname}' is used twice; give each parameter its own name")
            seen.add(pname)
        if isinstance(path, str) and not PATH.fullmatch(path):
            problems.append(f"{where}.path: invalid path '{path}'; {PATH_HINT}")
        if isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds):
            if not bounds[0] < bounds[1]:
                problems.append(f"{where}.bounds: the lower bound must be below the upper one, got {bounds}")
            if p.get("type") == "integer" and not all(float(b).is_integer() for b in bounds):
                problems.append(f"{where}.bounds: an integer parameter takes whole-number bounds, got {bounds}")
    moments = [m for m in data.get("moments", []) if isinstance(m, dict)]
    names = [m.get("name") for m in moments]
    for i, m in enumerate(moments):
        if isinstance(m.get("name"), str) and names.count(m["name"]) > 1:
            problems.append(f"moments[{i}].name: '{m['name']}' is used twice")
        if scenario is not None and isinstance(m.get("outcome"), str):
            firms = [f.name for f in scenario.market.firms] + [o.name for c in scenario.market.categories
                                                              for o in c.outlets]
            try:
                check_name(m["outcome"], firms, [s.name for s in scenario.market.customers.segments])
            except OutcomeError as err:
                problems.append(f"moments[{i}].outcome: {err}")
    search = data.get("search")
    counts = [search.get(k, d) for k, d in (("starts", 1), ("initial", 16))] if isinstance(search, dict) else []
    if counts and all(isinstance(c, int) for c in counts) and counts[0] > counts[1]:
        problems.append(f"search.starts: {counts[0]} local searches need as many initial points; initial is "
                        f"{counts[1]}")
    start = search.get("start") if isinstance(search, dict) else None
    if isinstance(start, dict):
        bounded = {p.get("name"): p.get("bounds") for p in params}
        missing = [n for n in bounded if isinstance(n, str) and n not in start]
        if missing:
            problems.append(f"search.start: give a value of every parameter; missing {', '.join(missing)}")
        for key, value in start.items():
            bounds = bounded.get(key)
            if key not in bounded:
                problems.append(f"search.start.{key}: not a parameter; the parameters are "
                                f"{', '.join(str(n) for n in bounded)}")
            elif (isinstance(value, int | float) and isinstance(bounds, list) and len(bounds) == 2
                  and not bounds[0] <= value <= bounds[1]):
                problems.append(f"search.start.{key}: {value} lies outside its bounds {bounds}")
    if not moments and not isinstance(data.get("transactions"), dict):
        problems.append("targets: give [[moments]] or [transactions] (or both): there is nothing to fit to")
    t = data.get("transactions")
    if isinstance(t, dict) and ("file" in t) == ("dataset" in t):
        problems.append("transactions: give either file (a CSV log: customer, date, amount) or dataset (\"cdnow-master"
                        "\" or \"cdnow-sample\"), not " + ("both" if "file" in t else "neither"))
    return problems


def load_targets(path: str | Path, scenario_path: str | Path,
                 overrides: Mapping[str, Any] | None = None) -> Calibration:
    """Read and check a targets file and the scenario it calibrates; raise :class:`CalibrationError` listing every
    problem (a transaction log's own problems are raised as its :class:`~loyaltysim.measures.transactions.
    TransactionLogError`).

    ``overrides`` replace top-level fields of the file before it is checked, e.g. ``{"population": 500,
    "replications": 1, "search": {"seed": 1, "initial": 2, "local": 0}}`` to try a calibration at a tiny size.
    """
    path, scenario_path = Path(path), Path(scenario_path)
    try:
        data = read_toml(path, "a targets file (.toml)")
    except ValueError as err:
        raise CalibrationError(str(path), [str(err)]) from None
    if overrides:
        data = {**data, **overrides}
    scenario = load_scenario(scenario_path)  # raises ScenarioError naming the scenario file
    problems = _problems(data, scenario)
    try:
        spec = TargetsSpec.model_validate(data)
    except ValidationError as err:
        found = format_validation_error(err)
        raise CalibrationError(str(path), found + [p for p in problems if p not in found]) from None
    if problems:
        raise CalibrationError(str(path), problems)

    names = [m.name for m in spec.moments]
    target = pd.Series([m.value for m in spec.moments], index=names, dtype=np.float64)
    sd = pd.Series([m.sd for m in spec.moments], index=names, dtype=np.float64)
    omega = pd.DataFrame(np.diag(sd.to_numpy() ** 2), index=names, columns=names)
    observed = window = None
    firm = scenario.policy.firm
    base = scenario
    t = spec.transactions
    if t is not None:
        problems += _transaction_problems(t, spec, scenario)
        if problems:
            raise CalibrationError(str(path), problems)
        if t.firm is not None:
            firm = t.firm
        log, start = _read_transactions(t, path)
        try:
            observed = tr.from_dates(log, start)
        except ValueError as err:
            raise CalibrationError(str(path), [f"transactions.start: {err}"]) from None
        tracking = tuple(t.tracking) if t.tracking else tuple(sorted({*range(13, t.weeks, 13), t.weeks}))
        window = mom.Window(t.weeks, t.cohort_weeks or float(t.weeks), tracking, t.decay_block)
        data_moments = mom.compute(observed, t.moments, window)
        if data_moments.isna().any():
            raise CalibrationError(str(path), [f"transactions: the log has no customer whose first transaction is "
                                               f"in weeks 1-{window.cohort_weeks:g}; check start and cohort_weeks"])
        cov = mom.bootstrap(observed, t.moments, window, t.bootstrap, np.random.default_rng(t.seed))
        clash = sorted(set(names) & set(data_moments.index))
        if clash:
            raise CalibrationError(str(path), [f"moments: the names {clash} are the transaction moments' own; "
                                               "rename the summary moments"])
        target = pd.concat([target, data_moments])
        # a moment the bootstrap cannot move (a share of 0 in every resample) still needs a scale: a tenth of the
        # smallest positive standard error among the log's moments
        own_sd = np.sqrt(np.diag(cov.to_numpy()))
        floor = 0.1 * own_sd[own_sd > 0].min() if (own_sd > 0).any() else 1e-6
        sd = pd.concat([sd, pd.Series(np.maximum(own_sd, floor), index=data_moments.index)])
        all_names = list(target.index)
        full = np.zeros((len(all_names), len(all_names)))
        full[:len(names), :len(names)] = omega.to_numpy()
        full[len(names):, len(names):] = cov.to_numpy()
        omega = pd.DataFrame(full, index=all_names, columns=all_names)
        logs = list(scenario.outputs.event_logs)
        if "purchases" not in logs:
            base = scenario.with_changes({"outputs.event_logs": [*logs, "purchases"]}, source=str(scenario_path))
    if len(target) < len(spec.parameters):
        raise CalibrationError(str(path), [f"targets: {len(target)} moment(s) cannot pin down "
                                           f"{len(spec.parameters)} parameters; give at least as many moments"])
    cal = Calibration(spec, path.resolve(), scenario_path.resolve(), base, target, sd, omega, observed, window,
                      firm)
    _check_bounds(cal)
    return cal


def _read_transactions(t: Transactions, path: Path) -> tuple[pd.DataFrame, str | pd.Timestamp | None]:
    """The log the targets name (a file, or a public data set fetched into its cache) and the first day of its week
    1 (the targets' ``start``; a data set's own start)."""
    if t.dataset is not None:
        from loyaltysim.datasets import cdnow

        which = t.dataset.removeprefix("cdnow-")
        try:
            log = cdnow.load(which)
        except (cdnow.CDNOWUnavailable, ValueError, OSError) as err:
            raise CalibrationError(str(path), [f"transactions.dataset: {err}"]) from None
        return log[["customer", "date", "amount"]], t.start or cdnow.START
    log_path = (path.parent / str(t.file)).resolve()
    try:
        return tr.read_log(log_path), t.start
    except tr.TransactionLogError as err:
        raise tr.TransactionLogError(f"{log_path} (transactions.file of {path})", err.problems) from None


def _transaction_problems(t: Transactions, spec: TargetsSpec, scenario: LoyaltyScenario) -> list[str]:
    problems = []
    firms = [f.name for f in scenario.market.firms]
    if t.firm is not None and t.firm not in firms:
        problems.append(f"transactions.firm: '{t.firm}' is not a firm of the scenario; its firms: {firms}")
    if t.tracking and max(t.tracking) > t.weeks:
        problems.append(f"transactions.tracking: weeks {[w for w in t.tracking if w > t.weeks]} are after the "
                        f"calibration window (weeks 1-{t.weeks})")
    step = scenario.time.step
    horizon = (spec.horizon or scenario.time.horizon).steps(step)
    warmup = (spec.warmup or scenario.time.warmup).steps(step)
    needed = math.ceil((t.weeks + (t.holdout_weeks or 0)) / PERIOD_WEEKS[step])
    if horizon - warmup < needed:
        problems.append(f"transactions: the runs report {horizon - warmup} {step}(s) after the warm-up, fewer than "
                        f"the {t.weeks} weeks of the window" + (f" and the {t.holdout_weeks} held out"
                                                                if t.holdout_weeks else "")
                        + "; lengthen the scenario's (or the targets file's) horizon")
    return problems


def _experiment_spec(cal: Calibration, points: int, root_seed: int | None = None,
                     name: str | None = None) -> designs.ExperimentSpec:
    s = cal.spec
    outcomes = [m.outcome for m in s.moments] or ["market.annual_churn"]
    return designs.ExperimentSpec(
        name=name or s.name, description=s.description or f"calibration of {cal.scenario_path.name}",
        scenario=str(cal.scenario_path), replications=s.replications,
        root_seed=s.root_seed if root_seed is None else root_seed, horizon=s.horizon,
        warmup=s.warmup, population=s.population, outcomes=list(dict.fromkeys(outcomes)), factors=cal.factors,
        design=designs.DesignSpec(kind="sobol", seed=s.search.seed, samples=max(points, 2)))


def _build(cal: Calibration, unit: np.ndarray, root_seed: int | None = None,
           name: str | None = None) -> tuple[designs.ExperimentSpec, list[designs.DesignPoint], list[str]]:
    spec = _experiment_spec(cal, len(unit), root_seed, name)
    sampling = designs.Sampling("sobol", cal.spec.search.seed, tuple(cal.factors), np.atleast_2d(unit))
    points, problems = designs.build_design(spec, cal.base, sampling)
    return spec, points, problems


def _check_bounds(cal: Calibration) -> None:
    """Every parameter alone at each bound (and all at their middles) makes a valid scenario."""
    _, _, problems = _build(cal, np.full((1, len(cal.factors)), 0.5))
    problems = [p.replace("factors[", "parameters[").replace("(factor ", "(parameter ") for p in problems]
    if problems:
        raise CalibrationError(str(cal.path), problems)


# --------------------------------------------------------------------------------------------------
# Evaluations
# --------------------------------------------------------------------------------------------------


class Evaluator(points.Evaluator):
    """Evaluates points of a calibration: each run's simulated moments, each point's distance to the targets."""

    score_name = "distance"

    def __init__(self, cal: Calibration, out_root: Path, db_url: str, workers: int,
                 executor_factory: Callable[[], Executor] | None, stream: TextIO | None, *,
                 target: pd.Series | None = None, root_seed: int | None = None, name: str | None = None):
        super().__init__(self._experiment, out_root, db_url, workers, executor_factory, stream)
        self.cal = cal
        self.target = cal.target if target is None else target  # a bootstrap replicate's own targets
        self.root_seed = root_seed  # and its own replications' seeds, as an experiment of its own name
        self.name = name

    def _experiment(self, unit: np.ndarray) -> designs.Experiment:
        spec, design, problems = _build(self.cal, unit, self.root_seed, self.name)
        if problems:
            raise CalibrationError(str(self.cal.path), problems)
        return designs.Experiment(spec, self.cal.path, self.cal.base, design)

    def read(self, run_dir: Path, point: designs.DesignPoint) -> pd.Series:
        return self.moments(run_dir, point.scenario.warmup_steps())

    def score(self, outputs: pd.DataFrame) -> float:
        return self.distance(outputs.mean(axis=0))

    def moments(self, run_dir: Path, warmup: int) -> pd.Series:
        """One run's simulated moments, read from its folder (``warmup``: the run's warm-up steps)."""
        cal = self.cal
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        outcomes = manifest.get("summary", {}).get("outcomes", {})
        values = pd.Series({m.name: np.nan if outcomes.get(m.outcome) is None else float(outcomes[m.outcome])
                            for m in cal.spec.moments}, dtype=np.float64)
        t = cal.spec.transactions
        if t is not None:
            assert cal.window is not None
            frame = simulated_log(run_dir, cal.firm, warmup, cal.period())
            values = pd.concat([values, mom.compute(frame, t.moments, cal.window)])
        return values.reindex(cal.target.index)

    def distance(self, mean: pd.Series) -> float:
        z = (mean - self.target) / self.cal.sd
        return PENALTY if z.isna().any() else float((z ** 2).sum())


def simulated_log(run_dir: Path, firm: str, warmup: int, period: float) -> pd.DataFrame:
    """A run's purchase log at ``firm`` as a tidy frame: time 0 is the start of the first step after the ``warmup``
    steps, purchases during the warm-up are left out (``period``: a step, in weeks)."""
    log = pd.read_parquet(run_dir / "purchases.parquet", columns=["step", "customer", "firm", "revenue"])
    log = log[(log["firm"] == firm) & (log["step"] > warmup)]
    return tr.tidy(log["customer"].to_numpy(), (log["step"].to_numpy() - warmup - 1) * period,
                   log["revenue"].to_numpy(), period)


# --------------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------------


@dataclass
class Fit:
    """A calibration's result: the estimate, its uncertainty, the fit against every target, every evaluation."""

    calibration: Calibration
    best: Evaluation
    evaluations: list[Evaluation]
    jacobian: pd.DataFrame  # d moment / d parameter, in the parameters' units
    covariance: pd.DataFrame  # of the parameters, in their units
    new_runs: int
    reused_runs: int
    identified: dict[str, bool] = field(default_factory=dict)
    bootstrap: pd.DataFrame | None = None  # one row per bootstrap replicate: its estimate and distance

    @property
    def estimate(self) -> dict[str, float | int]:
        return dict(self.best.values)

    def parameters(self) -> pd.DataFrame:
        """Each parameter's estimate, standard error and 95% interval: the sandwich's (clipped to the bounds), or
        with a bootstrap the replicates' standard deviation and 2.5th-97.5th percentiles (``se_sandwich`` keeps
        the sandwich's standard error beside them)."""
        rows = []
        boot = self.bootstrap
        for p in self.calibration.spec.parameters:
            se = math.sqrt(self.covariance.loc[p.name, p.name]) if self.identified.get(p.name) else math.nan
            value = float(self.best.values[p.name])
            low, high = p.bounds
            interval = ((max(low, value - 1.96 * se), min(high, value + 1.96 * se)) if se == se
                        else (math.nan, math.nan))
            row = {"parameter": p.name, "path": p.path, "estimate": value, "se": se, "se_sandwich": se}
            if boot is not None:
                draws = boot[p.name].to_numpy(dtype=np.float64)
                row["se"] = float(draws.std(ddof=1))
                interval = (float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975)))
            rows.append({**row, "low": interval[0], "high": interval[1],
                         "method": "sandwich" if boot is None else f"bootstrap ({len(boot)} replicates)",
                         "lower_bound": low, "upper_bound": high,
                         "at_bound": bool(np.isclose(value, low) or np.isclose(value, high)),
                         "identified": bool(self.identified.get(p.name)), "unit": p.unit or ""})
        return pd.DataFrame(rows).set_index("parameter")

    def targets(self) -> pd.DataFrame:
        """Each moment: target and its 95% interval, the simulated mean at the estimate and its 95% interval over
        the replications, and the gap in the target's standard errors."""
        cal = self.calibration
        sims = self.best.outputs
        r = len(sims)
        mean = sims.mean(axis=0)
        half = (1.96 * sims.std(axis=0, ddof=1) / math.sqrt(r)) if r > 1 else pd.Series(np.nan, index=mean.index)
        return pd.DataFrame({"target": cal.target, "target_low": cal.target - 1.96 * cal.sd,
                             "target_high": cal.target + 1.96 * cal.sd, "simulated": mean,
                             "simulated_low": mean - half, "simulated_high": mean + half,
                             "z": (mean - cal.target) / cal.sd}).rename_axis("moment")

    def evaluation_table(self) -> pd.DataFrame:
        rows = []
        for ev in self.evaluations:
            rows.append({"evaluation": ev.index + 1, "stage": ev.stage, "start": ev.start + 1, **ev.values,
                         "distance": ev.score,
                         **{f"moment.{k}": v for k, v in ev.mean.items()}})
        return pd.DataFrame(rows)


def calibrate(cal: Calibration, out_root: Path | str, db_url: str, *, workers: int | None = None,
              executor_factory: Callable[[], Executor] | None = None, executor: Executor | None = None,
              stream: TextIO | None = None) -> Fit:
    """Fit the parameters (see the module's docstring): the initial design, the local search, the standard errors.

    The runs go to ``executor`` (e.g. a Dask cluster's, :mod:`loyaltysim.experiments.cluster`), kept for every
    evaluation and closed at the end, or to a new executor from ``executor_factory`` for each evaluation, or by
    default to one process pool of ``workers`` processes. Raises what :func:`~loyaltysim.experiments.sweep.run_sweep`
    raises (a stop, a lost database, a broken worker; every evaluation stored until then is kept, and the same call
    resumes) and :class:`~loyaltysim.experiments.search.SearchFailed` when a run fails.
    """
    import os

    workers = workers or os.cpu_count() or 1
    pool = None
    if executor_factory is None:
        pool = points.Kept(executor if executor is not None else sweeps.default_executor_factory(workers)())
        executor_factory = lambda: pool  # noqa: E731
    ev = Evaluator(cal, Path(out_root), db_url, workers, executor_factory, stream)
    search = cal.spec.search
    boot = None
    try:
        given = None
        if search.start is not None:
            given = np.array([(search.start[f.name] - f.bounds[0]) / (f.bounds[1] - f.bounds[0])
                              for f in cal.factors])
        best = points.search(ev, len(cal.factors), search.seed, search.initial, search.local, search.starts, given)
        jacobian, covariance, identified = _uncertainty(cal, ev, best)
        new, reused = ev.new_runs, ev.reused_runs
        if cal.spec.uncertainty.method == "bootstrap":
            boot, boot_new, boot_reused = _bootstrap(cal, best, covariance, Path(out_root), db_url, workers,
                                                     executor_factory, stream)
            new, reused = new + boot_new, reused + boot_reused
    finally:
        if pool is not None:
            pool.close()
    return Fit(cal, best, list(ev.evaluations), jacobian, covariance, new, reused, identified, boot)


def replicate_seed(root_seed: int, seed: int, replicate: int) -> int:
    """The root seed of bootstrap replicate ``replicate``'s runs: drawn from (root seed, bootstrap seed, replicate),
    so that no replicate shares the fit's seeds or another replicate's."""
    return points.derived_seed(root_seed, seed, replicate + 1)


def _bootstrap(cal: Calibration, best: Evaluation, covariance: pd.DataFrame, out_root: Path, db_url: str,
               workers: int, executor_factory: Callable[[], Executor],
               stream: TextIO | None) -> tuple[pd.DataFrame, int, int]:
    """The bootstrap of the estimate (see the module's docstring): each replicate's targets redrawn and its runs on
    seeds of its own, refitted by a local search from the estimate whose first simplex spans two of the sandwich's
    standard errors (between 0.5% and 10% of each range; 10% where there is none). Returns the replicates'
    estimates and the runs made and found stored."""
    u = cal.spec.uncertainty
    span = np.array([f.bounds[1] - f.bounds[0] for f in cal.factors], dtype=np.float64)
    se = np.sqrt(np.diag(covariance.to_numpy())) / span
    step = np.where(np.isfinite(se), np.clip(2.0 * se, 0.005, 0.1), 0.1)
    rng = np.random.default_rng(u.seed)
    summary = [m.name for m in cal.spec.moments]
    shocks = rng.standard_normal((u.replicates, len(summary)))
    t = cal.spec.transactions
    data = None
    if t is not None:
        assert cal.observed is not None and cal.window is not None
        data = mom.resampled(cal.observed, t.moments, cal.window, u.replicates, rng)
    rows, new, reused = [], 0, 0
    for b in range(u.replicates):
        target = cal.target.copy()
        target[summary] = cal.target[summary].to_numpy() + cal.sd[summary].to_numpy() * shocks[b]
        if data is not None:
            target[data.columns] = data.iloc[b].to_numpy()
        ev = Evaluator(cal, out_root, db_url, workers, executor_factory, None, target=target,
                       root_seed=replicate_seed(cal.spec.root_seed, u.seed, b), name=f"{cal.name}.bootstrap")
        ev.run(best.unit[None, :], "local")
        points.local_search(ev, best.unit, u.local or max(cal.spec.search.local, 1), step)
        found = min(ev.evaluations, key=lambda e: e.score)
        rows.append({"replicate": b + 1, **found.values, "distance": found.score,
                     "evaluations": len(ev.evaluations)})
        new, reused = new + ev.new_runs, reused + ev.reused_runs
        if stream is not None:
            values = ", ".join(f"{k}={v:.4g}" for k, v in found.values.items())
            stream.write(f"  bootstrap {b + 1}/{u.replicates}: {values} (distance {found.score:.4g}, "
                         f"{len(ev.evaluations)} points)\n")
            stream.flush()
    return pd.DataFrame(rows), new, reused


def _uncertainty(cal: Calibration, ev: Evaluator, best: Evaluation) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                               dict[str, bool]]:
    """The moments' derivatives at the estimate (central differences on the same seeds) and the parameters'
    sandwich covariance (see the module's docstring), in the parameters' units."""
    h = cal.spec.search.step
    k = len(cal.factors)
    ups, downs = [], []
    for j in range(k):
        up, down = best.unit.copy(), best.unit.copy()
        up[j], down[j] = min(1.0, best.unit[j] + h), max(0.0, best.unit[j] - h)
        ups.append(up)
        downs.append(down)
    done = ev.run(np.array(ups + downs), "jacobian")
    names = cal.parameter_names
    span = np.array([f.bounds[1] - f.bounds[0] for f in cal.factors])
    g = np.zeros((len(cal.target), k))
    for j in range(k):
        hi, lo = done[j], done[k + j]
        # the values actually run (an integer parameter's step may round to the same value: no derivative)
        dv = float(hi.values[names[j]]) - float(lo.values[names[j]])
        g[:, j] = (hi.mean - lo.mean).to_numpy() / dv if dv != 0 else 0.0
    w = np.diag(1.0 / cal.sd.to_numpy() ** 2)
    sims = best.outputs.to_numpy()
    sigma = np.cov(sims, rowvar=False) / len(sims) if len(sims) > 1 else np.zeros((len(cal.target),) * 2)
    sigma = np.atleast_2d(sigma)
    omega = cal.omega.to_numpy() + sigma
    bread = g.T @ w @ g
    scale = np.where(span > 0, span, 1.0)
    identified = {n: bool(np.linalg.norm(g[:, j] * scale[j] / cal.sd.to_numpy()) > 1e-9)
                  for j, n in enumerate(names)}
    cov = np.full((k, k), np.nan)
    ok = [j for j, n in enumerate(names) if identified[n]]
    if ok:
        b = bread[np.ix_(ok, ok)]
        if np.linalg.matrix_rank(b) == len(ok):
            inv = np.linalg.inv(b)
            meat = g[:, ok].T @ w @ omega @ w @ g[:, ok]
            cov[np.ix_(ok, ok)] = inv @ meat @ inv
        else:
            identified = dict.fromkeys(names, False)
    return (pd.DataFrame(g, index=cal.target.index, columns=names),
            pd.DataFrame(cov, index=names, columns=names), identified)
