"""Experiment files: a base scenario, factors varied over a full grid (or sampled from bounds), replications and the
outcomes to report.

An experiment is a TOML file validated by pydantic (unknown keys are errors)::

    schema_version = 1
    name = "satisfaction_trap"            # also the report folder name
    description = "..."
    scenario = "scenarios/trap.toml"      # base scenario, relative to the experiment file
    replications = 20                     # >= 1
    root_seed = 20261123                  # replication r runs on child r of SeedSequence(root_seed)
    horizon = "260 weeks"                 # optional: overrides the scenario's time.horizon
    warmup = "52 weeks"                   # optional: overrides time.warmup
    population = 5000                     # optional: overrides market.customers.population
    outcomes = ["focal.cohort_retention"] # names from loyaltysim.measures.outcomes
    reference = { strategy = "none" }     # optional: paired differences are taken against this design point
    risk = false                          # also report percentiles and P(difference < 0) of the differences
    figures = []                          # optional: extra figures, from loyaltysim.experiments.registry.FIGURES
    findings = []                         # optional: checks of published findings, from registry.FINDINGS

    [[factors]]                           # shorthand: one path and its values (labels default to str(value))
    name = "strategy"
    path = "policy.investments[0].attribute"
    values = ["coverage", "perks"]
    labels = ["basic", "latent"]

    [[factors]]                           # general form: each level sets several paths at once
    name = "market"
    levels = [
      { label = "competitive", set = { "market.customers.switching_cost" = 0.6 } },
      { label = "hostage", set = { "market.customers.switching_cost" = 3.0 } },
    ]

The design points are the cartesian product of the factors' levels, in factor order (no factors: one design
point, the base scenario). A design point's scenario is the base scenario's canonical form (defaults included)
with the horizon, warm-up and population overrides applied first and then each factor's paths; every design
point is validated when the experiment is loaded, so a bad path or value is reported before anything runs.

``reference`` names a label for some (or all) factors: each design point is compared with the design point that
has the reference labels for those factors and its own labels for the others.

**Sampled designs.** A ``[design]`` table (default ``kind = "grid"``: the full grid above) may instead sample the
factors from bounds, for a global sensitivity analysis of uncertain parameters::

    [design]
    kind = "morris"                       # "lhs", "sobol", "saltelli" or "morris"
    seed = 1543                           # required: the same seed gives the same points
    trajectories = 16                     # morris: trajectories x (k + 1) points; levels = 4 (even) by default
    # samples = 256                       # lhs, sobol: the points; saltelli: N, giving N x (k + 2) points
    # second_order = true                 # saltelli: also second-order indices, N x (2k + 2) points

    [[factors]]
    name = "switching_cost"
    path = "market.customers.switching_cost"
    bounds = [0.25, 0.75]                 # uniform between the bounds
    # type = "integer"                    # whole numbers, each equally likely (see :func:`scale`)
    # unit = "% per month"                # written after the value: "5.2 % per month", "13 weeks"
    # paths = ["a.b", "a.c"]              # instead of path: the same value written to each

A sampled factor may write its value to several paths at once (the same value to each: two rivals that must share
one parameter): ``paths = ["market.firms[1].price", "market.firms[2].price"]`` instead of ``path`` (one of the
two). ``lhs`` and ``sobol`` draw their points with :mod:`scipy.stats.qmc` (``sobol``: a scrambled Sobol' sequence,
``samples`` a power of 2), ``saltelli`` and ``morris`` with SALib (:func:`draw_sampling`). Each point's labels are
its values as text, and :attr:`DesignPoint.values` holds them as numbers (the report's tidy table has one numeric
column per factor). Every point is validated when the experiment is loaded, and so is each factor alone at each of
its bounds, so a bound the scenario does not accept is reported before anything runs. Replication r of every point
runs on the same child seed as in a grid, and run keys are computed as for grids (from the effective scenario).

**Arms.** A sampled design may also have factors written the grid way (``values`` and ``labels``, or ``levels``):
its *arms*, e.g. a firm investing in a basic attribute or a latent one, at the same sampled markets::

    [[factors]]
    name = "investment"
    path = "policy.investments"
    values = [[{ attribute = "coverage", budget = "40000 per year" }],
              [{ attribute = "perks", budget = "40000 per year" }]]
    labels = ["basic", "latent"]

Each sampled point (row i of :attr:`Sampling.unit`, in the sampling's order) is crossed with every combination j
of the arms' levels (their cartesian product in factor order, as in a grid): design point ``i * n + j``, n the
number of combinations (:meth:`Experiment.locate` maps a design point back to its row and arm labels,
:meth:`Experiment.arm_points` lists an arm's points). A point's labels hold every factor (the arms' labels, the
sampled factors' values as text), its values the sampled factors' numbers only; the factors' paths are written in
factor order, so a path set by two factors takes the later one's value. At least one factor must be sampled, and
the size limit counts sampled points x combinations x replications. The report analyses each combination of the
arms on its own (:mod:`loyaltysim.reporting.sensitivity`). ``figures`` and ``findings`` may be named as in a grid:
their functions get the tidy results and the experiment, and how they read a sampled design is theirs to say.
``reference`` is not taken (a sampled design's points differ in sampled values; a findings function compares arms),
nor is ``loyaltysim report --compare all``. Without arms, a sampled design's points are those of a design that
samples every factor.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from loyaltysim.experiments import registry
from loyaltysim.experiments.identity import canonical_json
from loyaltysim.measures.outcomes import OutcomeError, check_name
from loyaltysim.scenario import (
    PATH,
    PATH_HINT,
    LoyaltyScenario,
    ScenarioError,
    as_dict,
    as_list,
    format_path,
    format_validation_error,
    load_scenario,
    parse_path,
    read_toml,
    scenario_from_dict,
    set_path,
)
from loyaltysim.units import DurationField

SCHEMA_VERSION = 1
# columns of the report's tidy table that a factor name must not take
RESERVED_COLUMNS = ("design", "replication", "outcome", "value", "key", "run_dir", "reference")
# columns of a sampled design's sensitivity.csv, which has a column per arm too
_SENSITIVITY_COLUMNS = ("factor", "index", "estimate", "ci_low", "ci_high", "points", "replications", "noise_share")
# names that would collide with what the sweep writes into the output root
RESERVED_NAMES = ("runs", "registry.sqlite")
MAX_REPLICATIONS = 10_000
MAX_RUNS = 1_000_000  # design points x replications: planning a larger sweep would only exhaust memory
_EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a folder name, at most 100 characters
_FACTOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExperimentError(ScenarioError):
    """An experiment that cannot be used; the message lists every problem, one per line."""


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


class _FileSpec(BaseModel):
    """The strict base of an experiment file's parts: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Level(_FileSpec):
    """One level of a factor: a label and the scenario paths it sets."""

    label: Annotated[str, Field(min_length=1)]
    set: dict[str, Any]  # may be empty: the base scenario's values


class Factor(_FileSpec):
    """A factor: either ``path`` and ``values`` (with optional ``labels``), or ``levels`` (a labelled factor: a
    grid's, or an arm of a sampled design); or ``path`` (or ``paths``) and ``bounds`` with an optional ``type`` and
    ``unit`` (a sampled design's sampled factor)."""

    model_config = ConfigDict(allow_inf_nan=False)  # bounds: NaN and infinity are errors, as in scenarios

    name: str
    path: str | None = None
    paths: Annotated[list[str], Field(min_length=1)] | None = None  # a sampled factor: the value written to each
    values: list[Any] | None = None
    labels: list[str] | None = None
    levels: list[Level] | None = None
    bounds: Annotated[list[Annotated[float, Strict()]], Field(min_length=2, max_length=2)] | None = None
    type: Literal["float", "integer"] = "float"
    unit: Annotated[str, Field(min_length=1)] | None = None

    @property
    def sampled(self) -> bool:
        return self.bounds is not None

    @property
    def targets(self) -> list[str]:
        """The scenario paths a sampled factor's value is written to: ``paths``, or ``path`` alone."""
        if self.paths is not None:
            return list(self.paths)
        return [] if self.path is None else [self.path]

    def written(self, value: float | int) -> Any:
        """A sampled value as the scenario takes it: the number, or the number and the unit as text."""
        return value if self.unit is None else f"{value!r} {self.unit}"

    def resolved(self) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        """Each level as ``(label, {path: value}, {path: where it is set in the experiment file})``."""
        if self.levels is not None:
            return [(lv.label, dict(lv.set), {p: f'levels[{j}].set."{p}"' for p in lv.set})
                    for j, lv in enumerate(self.levels)]
        assert self.path is not None and self.values is not None
        labels = self.labels if self.labels is not None else [str(v) for v in self.values]
        return [(label, {self.path: value}, {self.path: f"values[{j}]"})
                for j, (label, value) in enumerate(zip(labels, self.values, strict=True))]

    @property
    def level_labels(self) -> list[str]:
        return [label for label, _, _ in self.resolved()]


DesignKind = Literal["grid", "lhs", "sobol", "saltelli", "morris"]
SAMPLED_KINDS = ("lhs", "sobol", "saltelli", "morris")
MORRIS_LEVELS = 4  # the default number of levels of a Morris design's grid
# the keys of [design] each kind takes, besides kind
_DESIGN_KEYS: dict[str, tuple[str, ...]] = {
    "grid": (),
    "lhs": ("seed", "samples"),
    "sobol": ("seed", "samples"),
    "saltelli": ("seed", "samples", "second_order"),
    "morris": ("seed", "trajectories", "levels"),
}
_DESIGN_REQUIRED: dict[str, tuple[str, ...]] = {"lhs": ("seed", "samples"), "sobol": ("seed", "samples"),
                                                "saltelli": ("seed", "samples"), "morris": ("seed", "trajectories")}


class DesignSpec(_FileSpec):
    """The ``[design]`` table: a full grid of labelled levels (the default), or points sampled from the factors'
    bounds from a seed of their own."""

    kind: DesignKind = "grid"
    seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)] | None = None
    samples: Annotated[int, Strict(), Field(ge=2)] | None = None
    second_order: Annotated[bool, Strict()] = False
    trajectories: Annotated[int, Strict(), Field(ge=2)] | None = None
    levels: Annotated[int, Strict(), Field(ge=2)] | None = None

    @property
    def sampled(self) -> bool:
        return self.kind != "grid"

    def size(self, factors: int) -> int:
        """The number of design points a sampled design of ``factors`` factors has."""
        if self.kind == "saltelli":
            return (self.samples or 0) * ((2 * factors + 2) if self.second_order else (factors + 2))
        if self.kind == "morris":
            return (self.trajectories or 0) * (factors + 1)
        return self.samples or 0


class ExperimentSpec(_FileSpec):
    """The contents of an experiment file, as written."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    scenario: Annotated[str, Field(min_length=1)]
    replications: Annotated[int, Strict(), Field(ge=1, le=MAX_REPLICATIONS)]
    root_seed: Annotated[int, Strict(), Field(ge=0, lt=2**63)]
    horizon: DurationField | None = None
    warmup: DurationField | None = None
    population: Annotated[int, Strict(), Field(ge=1)] | None = None
    outcomes: Annotated[list[str], Field(min_length=1)]
    reference: dict[str, str | int | float | bool] | None = None
    risk: bool = False
    figures: list[str] = []
    findings: list[str] = []
    factors: list[Factor] = []
    design: DesignSpec = DesignSpec()


def _label(value: Any) -> str:
    return str(value)


_SAMPLED_KEYS = ("bounds", "type", "unit", "paths")  # the keys only a sampled factor takes
_LABELLED_KEYS = ("values", "labels", "levels")  # the keys only a labelled factor (a grid's, or an arm) takes


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _sampled_factor_problems(where: str, f: dict) -> list[str]:
    """Problems of a sampled factor written in the raw data: a path (or paths) and bounds, an optional type and
    unit."""
    problems = []
    if "path" in f and "paths" in f:
        problems.append(f"{where}: give either path or paths (the same sampled value written to each), not both")
    elif "path" not in f and "paths" not in f:
        problems.append(f"{where}.path: required key is missing (or give paths, to write the value to several)")
    if "bounds" not in f:
        problems.append(f"{where}.bounds: required key is missing")
    path = f.get("path")
    if isinstance(path, str) and not PATH.fullmatch(path):
        problems.append(f"{where}.path: invalid path '{path}'; {PATH_HINT}")
    paths = f.get("paths")
    if isinstance(paths, list):
        for k, p in enumerate(paths):
            if isinstance(p, str) and not PATH.fullmatch(p):
                problems.append(f"{where}.paths[{k}]: invalid path '{p}'; {PATH_HINT}")
        repeated = sorted({p for p in paths if isinstance(p, str) and paths.count(p) > 1})
        if repeated:
            problems.append(f"{where}.paths: each path once; repeated: {repeated}")
    bounds = f.get("bounds")
    if isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) and math.isfinite(b) for b in bounds):
        low, high = bounds
        if not low < high:
            problems.append(f"{where}.bounds: the lower bound must be below the upper one, got {bounds}")
        if f.get("type") == "integer" and not all(float(b).is_integer() for b in bounds):
            problems.append(f"{where}.bounds: an integer factor takes whole-number bounds, got {bounds}")
    return problems


def _is_arm(f: dict) -> bool:
    """A factor of a sampled design written the grid way (values, labels or levels): an arm."""
    return any(k in f for k in _LABELLED_KEYS)


def _factor_problems(i: int, f: dict, kind: str = "grid") -> tuple[list[str], list[str] | None]:
    """Problems of one factor written in the raw data, and its labels when they can be told (a labelled
    factor's)."""
    where = f"factors[{i}]"
    problems: list[str] = []
    sampled_only = [k for k in _SAMPLED_KEYS if k in f]
    if kind in SAMPLED_KINDS:
        if not _is_arm(f):
            return _sampled_factor_problems(where, f), None
        if sampled_only:
            labelled = [k for k in _LABELLED_KEYS if k in f]
            return [f"{where}: a factor of a sampled design is either sampled (path or paths, and bounds) or an arm "
                    f"crossed with every sampled point (values or levels); give {', '.join(sampled_only)} or "
                    f"{', '.join(labelled)}, not both"], None
    elif sampled_only:
        problems += [f"{where}.{k}: only for the factors of a sampled design; set design.kind to one of "
                     f"{list(SAMPLED_KINDS)} (a grid design's factor takes values or levels)" for k in sampled_only]
        return problems, None
    has_levels = "levels" in f
    has_path = any(k in f for k in ("path", "values", "labels"))
    if has_levels and has_path:
        problems.append(f"{where}: give either path and values (with optional labels) or levels, not both")
        return problems, None
    if not has_levels:
        for key in ("path", "values"):
            if key not in f:
                problems.append(f"{where}.{key}: required key is missing (or give levels instead of path and values)")
        path = f.get("path")
        if isinstance(path, str) and not PATH.fullmatch(path):
            problems.append(f"{where}.path: invalid path '{path}'; {PATH_HINT}")
        values, labels = f.get("values"), f.get("labels")
        if isinstance(values, list) and not values:
            problems.append(f"{where}.values: give at least one value")
        if not isinstance(values, list):
            return problems, None
        if isinstance(labels, list):
            if len(labels) != len(values):
                problems.append(f"{where}.labels: {len(labels)} label(s) for {len(values)} value(s); give one each")
                return problems, None
            names = [str(x) for x in labels]
        else:
            names = [_label(v) for v in values]
    else:
        levels = f.get("levels")
        if isinstance(levels, list) and not levels:
            problems.append(f"{where}.levels: give at least one level")
        for j, lv in enumerate(as_list(levels)):
            for p in as_dict(as_dict(lv).get("set")):
                if not PATH.fullmatch(p):
                    problems.append(f'{where}.levels[{j}].set."{p}": invalid path; {PATH_HINT}')
        names = [str(as_dict(lv).get("label")) for lv in as_list(levels)]
    duplicates = sorted({x for x in names if names.count(x) > 1})
    if duplicates:
        problems.append(f"{where}: level labels must be unique, got {names}"
                        + ("" if has_levels or "labels" in f else "; give labels"))
    return problems, names


def _declared_problems(kind: registry.Kind, key: str, names: list, factors: list[str],
                       outcomes: list[str]) -> list[str]:
    """Figures or findings the file names that are not declared, or whose function reads factors the design
    lacks (it would fail at the report, after the whole sweep) or outcomes the file does not ask for (it would
    judge a missing number, after the whole sweep)."""
    declared = registry.declared(kind)
    problems = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name not in declared:
            problems.append(f"{key}[{i}]: unknown {kind} '{name}'; registered: {sorted(declared)}")
            continue
        missing = [f for f in declared[name].factors if f not in factors]
        if missing:
            problems.append(f"{key}[{i}]: the {kind} '{name}' reads the factor(s) {missing}, which the design "
                            f"lacks; factors: {factors}")
        unasked = [o for o in declared[name].outcomes if o not in outcomes]
        if unasked:
            problems.append(f"{key}[{i}]: the {kind} '{name}' reads the outcome(s) {unasked}; add them to "
                            "outcomes")
    return problems


def _design_problems(data: dict) -> tuple[list[str], str]:
    """Problems of the ``[design]`` table between its keys, and the design's kind ("grid" when it cannot be told:
    the field errors say why)."""
    design = data.get("design", {})
    kind = as_dict(design).get("kind", "grid")
    if not isinstance(design, dict) or kind not in _DESIGN_KEYS:
        return [], "grid"
    problems = []
    known = {k for keys in _DESIGN_KEYS.values() for k in keys}
    for key in design:
        if key in known and key not in _DESIGN_KEYS[kind]:
            problems.append(f"design.{key}: only for sampled designs (kind {list(SAMPLED_KINDS)}); a grid design runs "
                            "every combination of the factors' levels" if kind == "grid" else
                            f"design.{key}: not used by kind = '{kind}', which takes {list(_DESIGN_KEYS[kind])}")
    for key in _DESIGN_REQUIRED.get(kind, ()):
        if key not in design:
            why = " (the points are drawn from it: the same seed gives the same points)" if key == "seed" else ""
            problems.append(f"design.{key}: required for kind = '{kind}'{why}")
    samples = design.get("samples")
    if kind in ("sobol", "saltelli") and _is_number(samples) and samples >= 2 and samples & (samples - 1):
        below = 1 << (int(samples).bit_length() - 1)
        problems.append(f"design.samples: {samples} is not a power of 2; a Sobol' sequence is balanced only at "
                        f"powers of 2 (e.g. {below} or {2 * below})")
    levels = design.get("levels")
    if kind == "morris" and _is_number(levels) and levels >= 2 and levels % 2:
        problems.append(f"design.levels: give an even number of levels (a Morris step is then half the range "
                        f"over levels - 1 intervals, and every level is visited equally often), got {levels}")
    if kind in SAMPLED_KINDS:
        factors = as_list(data.get("factors"))
        if all(_is_arm(as_dict(f)) for f in factors):
            problems.append(f"factors: a sampled design (design.kind = '{kind}') needs at least one factor with "
                            "path and bounds" + (" (factors with values or levels are arms, crossed with the sampled "
                                                 "points)" if factors else ""))
        if "reference" in data:
            problems.append(f"reference: a sampled design (design.kind = '{kind}') has no labelled design points to "
                            "compare with; leave reference out (the report analyses the sensitivity instead)")
    return problems, kind


def cross_problems(data: Any) -> list[str]:
    """Problems between fields (names, labels, the design, reference, figures and findings), one ``path: message``
    each.

    Written over the raw data, so they are listed together with the field errors elsewhere in the file.
    """
    data = as_dict(data)
    problems, kind = _design_problems(data)
    name = data.get("name")
    if isinstance(name, str) and (not _EXPERIMENT_NAME.fullmatch(name) or name in RESERVED_NAMES):
        problems.append(f"name: '{name}' cannot name the report folder; use at most 100 letters, digits, '_', '.', "
                        f"'-' (starting with a letter or digit), and not {list(RESERVED_NAMES)}")
    labels: dict[str, list[str] | None] = {}
    for i, f in enumerate(as_list(data.get("factors"))):
        f = as_dict(f)
        fname = f.get("name")
        if isinstance(fname, str):
            if not _FACTOR_NAME.fullmatch(fname):
                problems.append(f"factors[{i}].name: '{fname}' is not a valid factor name; use letters, digits "
                                "and '_' (not starting with a digit)")
            elif fname in RESERVED_COLUMNS:
                problems.append(f"factors[{i}].name: '{fname}' is reserved (a column of the results); "
                                f"avoid {list(RESERVED_COLUMNS)}")
            elif fname in labels:
                problems.append(f"factors[{i}].name: factor names must be unique; '{fname}' is used twice")
            elif kind in SAMPLED_KINDS and _is_arm(f) and fname in _SENSITIVITY_COLUMNS:
                problems.append(f"factors[{i}].name: '{fname}' is reserved for an arm of a sampled design (a column "
                                f"of sensitivity.csv); avoid {list(_SENSITIVITY_COLUMNS)}")
        found, names = _factor_problems(i, f, kind)
        problems += found
        if isinstance(fname, str):
            labels.setdefault(fname, names)
    reference = data.get("reference")
    if isinstance(reference, dict) and kind == "grid":
        if not reference:
            problems.append("reference: name at least one factor and its reference label, or leave it out")
        for key, value in reference.items():
            if key not in labels:
                problems.append(f"reference.{key}: unknown factor '{key}'; factors: {list(labels)}")
            elif labels[key] is not None and _label(value) not in labels[key]:
                problems.append(f"reference.{key}: '{_label(value)}' is not a label of factor '{key}'; "
                                f"labels: {labels[key]}")
    if data.get("risk") is True and reference is None:
        problems.append("risk: the spread of paired differences needs a reference design point; set reference")
    outcomes = [o for o in as_list(data.get("outcomes")) if isinstance(o, str)]
    for declared, key in (("figure", "figures"), ("findings", "findings")):
        problems += _declared_problems(declared, key, as_list(data.get(key)), list(labels), outcomes)
    repeated = sorted({o for o in outcomes if outcomes.count(o) > 1})
    if repeated:
        problems.append(f"outcomes: each outcome once; repeated: {repeated}")
    return problems


# --------------------------------------------------------------------------------------------------
# Sampled designs
# --------------------------------------------------------------------------------------------------


def scale(factor: Factor, u: float) -> float | int:
    """A coordinate of the unit interval as the factor's value.

    A float factor is uniform over its bounds (``u = 0`` is the lower bound and ``u = 1`` the upper, exactly). An
    integer factor cuts [0, 1] into ``high - low + 1`` equal cells, one per whole number from ``low`` to ``high``
    (``u = 1`` belongs to the last), so that every whole number in the bounds is equally likely, the bounds
    included; rounding ``low + u (high - low)`` to the nearest instead would give the bounds half the chance.
    """
    assert factor.bounds is not None
    low, high = factor.bounds
    if factor.type == "integer":
        lo, hi = int(low), int(high)
        return lo + min(math.floor(u * (hi - lo + 1)), hi - lo)
    return float((1.0 - u) * low + u * high)


@dataclass(frozen=True, eq=False)
class Sampling:
    """A sampled design's points, drawn in the unit hypercube from the design seed, then scaled to the bounds.

    ``unit`` has one row per sampled point and one column per sampled factor, in [0, 1]; without arms a row is a
    design point, with arms each row is crossed with every combination of their levels
    (:meth:`Experiment.locate`). The report's estimators read it
    with the points' outcomes: SALib's Saltelli estimators read the rows' order, its Morris analysis the direction
    of each step (which rounding an integer factor to a whole number can hide).
    """

    kind: str
    seed: int
    factors: tuple[Factor, ...]
    unit: np.ndarray
    second_order: bool = False
    levels: int | None = None  # Morris: the grid's number of levels

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.factors]

    def values(self) -> list[dict[str, float | int]]:
        """Each design point's factor values, scaled from its unit coordinates."""
        return [{f.name: scale(f, float(u)) for f, u in zip(self.factors, row, strict=True)} for row in self.unit]


def salib_problem(names: Sequence[str]) -> dict:
    """SALib's description of a design's factors: each on the unit interval (the points are scaled to the bounds
    afterwards, :func:`scale`), for its samplers and its analyses alike."""
    return {"num_vars": len(names), "names": list(names), "bounds": [[0.0, 1.0]] * len(names)}


def draw_sampling(design: DesignSpec, factors: Sequence[Factor]) -> Sampling:
    """The points of a sampled design: the same design table and factors give the same points.

    ``lhs`` and ``sobol`` draw ``samples`` points with :mod:`scipy.stats.qmc` (a Latin hypercube; a scrambled Sobol'
    sequence), seeded by ``numpy.random.default_rng(seed)``. ``saltelli`` is SALib's Sobol' sample
    (``SALib.sample.sobol.sample``, scrambled): ``samples`` x (k + 2) points, or x (2k + 2) with second order.
    ``morris`` is SALib's Morris sample (``SALib.sample.morris.sample``): ``trajectories`` x (k + 1) points on a
    grid of ``levels`` levels. Points depend on scipy's and SALib's versions too; a run's key hashes its effective
    scenario, so a run is never confused with another whatever the points were.
    """
    k = len(factors)
    assert design.seed is not None and design.sampled
    if design.kind in ("lhs", "sobol"):
        from scipy.stats import qmc

        rng = np.random.default_rng(design.seed)
        engine = qmc.LatinHypercube(d=k, rng=rng) if design.kind == "lhs" else qmc.Sobol(d=k, scramble=True, rng=rng)
        unit = engine.random(design.samples)
    else:
        problem = salib_problem([f.name for f in factors])
        if design.kind == "saltelli":
            from SALib.sample import sobol

            unit = sobol.sample(problem, design.samples, calc_second_order=design.second_order, scramble=True,
                                seed=design.seed)
        else:
            from SALib.sample import morris

            unit = morris.sample(problem, design.trajectories, num_levels=design.levels or MORRIS_LEVELS,
                                 seed=design.seed)
    unit = np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0)
    return Sampling(design.kind, design.seed, tuple(factors), unit, design.second_order,
                    (design.levels or MORRIS_LEVELS) if design.kind == "morris" else None)


# --------------------------------------------------------------------------------------------------
# The loaded experiment
# --------------------------------------------------------------------------------------------------


class DesignPoint:
    """One design point: its index in the design, its labels and its validated scenario; in a sampled design also
    its factor values (its labels are then the values as text).

    A point keeps its scenario in canonical form only (:attr:`canonical`: the effective scenario as canonical JSON,
    compressed, about 2 kB), not as a validated model (about 40 kB), so that a design of 10,000 points costs tens of
    megabytes, not hundreds: :attr:`effective` and :attr:`scenario` are built from it when asked for (the scenario
    is what a sweep's worker builds from the same form).
    """

    __slots__ = ("index", "labels", "measurable", "packed", "values")

    def __init__(self, index: int, labels: dict[str, str], scenario: LoyaltyScenario,
                 values: dict[str, float | int] | None = None):
        self.index = index
        self.labels = labels
        self.values = {} if values is None else values
        self.packed = zlib.compress(canonical_json(scenario.to_dict()).encode("utf-8"))
        self.measurable = measurable_names(scenario)

    def __repr__(self) -> str:
        return f"DesignPoint({self.index}, {self.labels!r}, values={self.values!r})"

    def __eq__(self, other: object) -> bool:
        """The same index, labels, values and effective scenario."""
        if not isinstance(other, DesignPoint):
            return NotImplemented
        return ((self.index, self.labels, self.values) == (other.index, other.labels, other.values)
                and (self.packed == other.packed or self.canonical == other.canonical))

    __hash__ = None  # type: ignore[assignment]  (mutable, as the dataclass it replaces)

    @property
    def canonical(self) -> str:
        """The effective scenario as canonical JSON (sorted keys, no whitespace): what the run key hashes."""
        return zlib.decompress(self.packed).decode("utf-8")

    @property
    def effective(self) -> dict[str, Any]:
        """The scenario's canonical form (a new dict at each call): what the run key hashes and the manifest
        records."""
        return json.loads(self.canonical)

    @property
    def scenario(self) -> LoyaltyScenario:
        """The validated scenario (built again from :attr:`effective` at each call)."""
        return scenario_from_dict(self.effective, source=f"design point {self.index}")

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(the only design point)"


def measurable_names(scenario: LoyaltyScenario) -> list[str]:
    """Who can be measured in a scenario: its firms, category outlets, and the operators of its coalitions."""
    names = [f.name for f in scenario.market.firms] + [o.name for c in scenario.market.categories for o in c.outlets]
    names += [f"{p.name} operator" for f in scenario.effective_firms() for p in f.programmes if p.kind == "coalition"]
    return list(dict.fromkeys(names))


@dataclass
class Experiment:
    """A validated experiment: the file's contents, the base scenario and every design point."""

    spec: ExperimentSpec
    path: Path
    base: LoyaltyScenario
    design: list[DesignPoint] = field(default_factory=list)
    sampling: Sampling | None = None  # a sampled design's points (None for a grid)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def replications(self) -> int:
        return self.spec.replications

    @property
    def root_seed(self) -> int:
        return self.spec.root_seed

    @property
    def outcomes(self) -> list[str]:
        return list(self.spec.outcomes)

    @property
    def factors(self) -> list[str]:
        return [f.name for f in self.spec.factors]

    @property
    def levels(self) -> dict[str, list[str]]:
        """Each labelled factor's labels, in level order (a grid's factors, a sampled design's arms; its sampled
        factors have values instead)."""
        return {f.name: f.level_labels for f in self.spec.factors if not f.sampled}

    @property
    def kind(self) -> str:
        """The design's kind: "grid" or a sampled design's ("lhs", "sobol", "saltelli", "morris")."""
        return self.spec.design.kind

    @property
    def sampled_factors(self) -> list[str]:
        """A sampled design's sampled factors (path and bounds), in factor order; empty for a grid."""
        return [f.name for f in self.spec.factors if f.sampled]

    @property
    def arms(self) -> list[str]:
        """A sampled design's labelled factors (its arms, crossed with every sampled point), in factor order; empty
        for a grid (whose factors are all labelled: see :attr:`levels`) and for a design sampling every factor."""
        return [f.name for f in self.spec.factors if not f.sampled] if self.spec.design.sampled else []

    @property
    def arm_combinations(self) -> list[dict[str, str]]:
        """Every combination of the arms' labels, in design order (the cartesian product in factor order, as a
        grid's); a single empty combination without arms."""
        levels = self.levels
        return [dict(zip(self.arms, combo, strict=True))
                for combo in itertools.product(*(levels[a] for a in self.arms))]

    def locate(self, index: int) -> tuple[int, dict[str, str]]:
        """A sampled design's point as (its row of :attr:`Sampling.unit`, its arm labels): design point
        ``i * n + j`` is row i crossed with combination j of :attr:`arm_combinations` (n of them)."""
        if self.sampling is None:
            raise ValueError("a grid design has no sampled rows")
        combinations = self.arm_combinations
        if not 0 <= index < len(self.design):
            raise IndexError(f"design point {index} is not in the design (0 to {len(self.design) - 1})")
        row, j = divmod(index, len(combinations))
        return row, combinations[j]

    def arm_points(self, arm: Mapping[str, str]) -> list[int]:
        """The design points of one combination of the arms' labels (every arm named), one per row of
        :attr:`Sampling.unit`, in row order."""
        if self.sampling is None:
            raise ValueError("a grid design has no sampled rows")
        combinations = self.arm_combinations
        wanted = {a: arm.get(a) for a in self.arms}
        if wanted not in combinations or set(arm) - set(self.arms):
            raise KeyError(f"{dict(arm)} is not a combination of the arms' labels; arms: {self.levels}")
        j, n = combinations.index(wanted), len(combinations)
        return [i * n + j for i in range(len(self.sampling.unit))]

    @property
    def reference(self) -> dict[str, str] | None:
        ref = self.spec.reference
        return None if ref is None else {k: _label(v) for k, v in ref.items()}

    @property
    def risk(self) -> bool:
        return self.spec.risk

    @property
    def figures(self) -> list[str]:
        return list(self.spec.figures)

    @property
    def findings(self) -> list[str]:
        return list(self.spec.findings)

    @property
    def runs(self) -> int:
        return len(self.design) * self.replications

    def reference_labels(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        """Labels of the design point that ``labels`` is compared with (None without a reference)."""
        ref = self.reference
        return None if ref is None else {k: ref.get(k, v) for k, v in labels.items()}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path, "an experiment file (.toml)")
    except ValueError as err:
        raise ExperimentError(str(path), [str(err)]) from None


def _problem_location(problem: str) -> str | None:
    head, sep, _ = problem.partition(": ")
    return head if sep and " " not in head else None


def _attribute(problem: str, sources: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The (source, rest) of a scenario problem caused by an override, matched on the override's path."""
    where = _problem_location(problem)
    if where is None:
        return None
    rest = problem[len(where) + 2:]
    for path, source in reversed(sources):  # the last override of a path is the one in effect
        if where == path or where.startswith((path + ".", path + "[")):
            inner = where[len(path):].lstrip(".")
            return source, (f"{inner}: {rest}" if inner else rest)
    # a problem of a table holding overridden values (e.g. time: warm-up longer than the horizon)
    in_effect = dict(sources)  # path -> the last override of it
    inside = list(dict.fromkeys(src for path, src in in_effect.items() if path.startswith((where + ".", where + "["))))
    if inside:
        return " and ".join(inside), f"{where}: {rest}"
    return None


_BOUND_INDEX = re.compile(r"(?<=\.bounds)\[\d+\]$")


class _Candidate(NamedTuple):
    """A scenario to build and validate: a design point (``keep``), or a sampled factor's bound checked alone."""

    describe: str  # names it in a problem: "design point a=1, b=x", "factor a at its upper bound 2"
    labels: dict[str, str]
    values: dict[str, float | int]
    overrides: list[tuple[str, Any, str]]  # (path, value, where it is set in the experiment file)
    keep: bool = True


def _grid_candidates(spec: ExperimentSpec) -> Iterator[_Candidate]:
    """The cartesian product of the factors' levels, in factor order."""
    grids = [[(f.name, label, sets, where, i) for label, sets, where in f.resolved()]
             for i, f in enumerate(spec.factors)]
    for combo in itertools.product(*grids):
        labels = {name: label for name, label, _, _, _ in combo}
        overrides = [(p, v, f"factors[{i}].{where[p]}") for _, _, sets, where, i in combo for p, v in sets.items()]
        desc = ", ".join(f"{k}={v}" for k, v in labels.items()) or "the only design point"
        yield _Candidate(f"design point {desc}", labels, {}, overrides)


def _sampled_overrides(i: int, f: Factor, value: float | int, where: str) -> list[tuple[str, Any, str]]:
    """A sampled factor's value written to its path (located at ``where``: its bounds), or to each of its paths
    (located at ``factors[i].paths[k]``, so that a problem names the path)."""
    if f.paths is None:
        assert f.path is not None
        return [(f.path, f.written(value), where)]
    return [(p, f.written(value), f"factors[{i}].paths[{k}]") for k, p in enumerate(f.paths)]


def _sampled_candidates(spec: ExperimentSpec, sampling: Sampling) -> Iterator[_Candidate]:
    """Each sampled factor at each of its bounds alone (the rest as in the base scenario), so that a bound the
    scenario does not accept is reported even where no point reaches it; then the design points: each sampled point
    crossed with each combination of the arms' levels (the labelled factors'; one empty combination without)."""
    factors = list(enumerate(spec.factors))
    sampled = [(i, f) for i, f in factors if f.sampled]
    assert [f.name for _, f in sampled] == sampling.names
    for i, f in sampled:
        assert f.bounds is not None
        for j, side in enumerate(("lower", "upper")):
            value = scale(f, float(j))
            yield _Candidate(f"factor {f.name} at its {side} bound {value}", {}, {},
                             _sampled_overrides(i, f, value, f"factors[{i}].bounds[{j}]"), keep=False)
    arms = [[(i, label, sets, where) for label, sets, where in f.resolved()] for i, f in factors if not f.sampled]
    combinations = [{i: (label, sets, where) for i, label, sets, where in combo} for combo in itertools.product(*arms)]
    for values in sampling.values():
        desc = ", ".join(f"{k}={v:.6g}" for k, v in values.items())  # short: the labels keep every digit
        for chosen in combinations:
            overrides: list[tuple[str, Any, str]] = []
            labels: dict[str, str] = {}
            for i, f in factors:  # in factor order: a path set by two factors takes the later one's value
                if f.sampled:
                    overrides += _sampled_overrides(i, f, values[f.name], f"factors[{i}].bounds")
                    labels[f.name] = _label(values[f.name])
                else:
                    label, sets, where = chosen[i]
                    overrides += [(p, v, f"factors[{i}].{where[p]}") for p, v in sets.items()]
                    labels[f.name] = label
            arm = "".join(f", {spec.factors[i].name}={label}" for i, (label, _, _) in chosen.items())
            yield _Candidate(f"design point {desc}{arm}", labels, values, overrides)


def build_design(spec: ExperimentSpec, base: LoyaltyScenario,
                 sampling: Sampling | None = None) -> tuple[list[DesignPoint], list[str]]:
    """Every design point, validated (a grid's, or the points of ``sampling``); and the problems found, each once
    with the first design point (or sampled factor's bound) it hit."""
    base_data = base.to_dict()
    common: list[tuple[str, Any, str]] = []
    if spec.horizon is not None:
        common.append(("time.horizon", str(spec.horizon), "horizon"))
    if spec.warmup is not None:
        common.append(("time.warmup", str(spec.warmup), "warmup"))
    if spec.population is not None:
        common.append(("market.customers.population", spec.population, "population"))
    candidates = _grid_candidates(spec) if sampling is None else _sampled_candidates(spec, sampling)
    points: list[DesignPoint] = []
    seen: dict[str, list] = {}  # problem text (or place) -> [the problem, what it first hit, count]
    failed_bounds: set[str] = set()  # sampled factors whose bounds the scenario does not accept
    for candidate in candidates:
        data = copy.deepcopy(base_data)
        sources: list[tuple[str, str]] = []
        problems: list[str] = []
        for path, value, source in [*common, *candidate.overrides]:
            try:
                set_path(data, path, value)
            except ValueError as err:
                problems.append(f"{source}: cannot set '{path}': {err}")
                continue
            sources.append((format_path(parse_path(path)), source))
        if not problems:
            try:
                scenario = scenario_from_dict(data, source="design point")
            except ScenarioError as err:
                for p in err.problems:
                    hit = _attribute(p, sources)
                    problems.append(f"{hit[0]}: {hit[1]}" if hit else f"effective scenario: {p}")
            else:
                if candidate.keep:
                    points.append(DesignPoint(len(points), candidate.labels, scenario, candidate.values))
                continue
        for p in problems:
            key = p
            where = _problem_location(p)
            if not candidate.keep and where is not None:
                bounds = _BOUND_INDEX.sub("", where)  # factors[i].bounds[j] -> factors[i].bounds
                failed_bounds.add(bounds)
                key = bounds + p[len(where):]  # the same problem at both bounds (a missing path): said once
            elif candidate.values and where is not None:
                if where in failed_bounds:  # said already, at the bound
                    continue
                key = where  # one problem per factor of a sampled design, whatever value hit it
            seen.setdefault(key, [p, candidate.describe, 0])[2] += 1
    out = []
    for p, desc, count in seen.values():
        more = f" and {count - 1} more" if count > 1 else ""
        out.append(f"{p} ({desc}{more})")
    return points, out


def load_experiment(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment file and every design point; raise :class:`ExperimentError` listing
    every problem.

    ``overrides`` replace top-level fields before validation, e.g. ``{"replications": 2, "population": 100,
    "horizon": "30 weeks", "warmup": "8 weeks"}`` to run an experiment at a tiny size in tests.
    """
    path = Path(path)
    source = str(path)
    data = _read_toml(path)
    if overrides:
        data = {**data, **overrides}
    problems = cross_problems(data)
    spec: ExperimentSpec | None = None
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as err:
        found = format_validation_error(err)
        problems = found + [p for p in problems if p not in found]
    base: LoyaltyScenario | None = None
    if isinstance(data.get("scenario"), str) and data["scenario"]:
        try:
            base = load_scenario((path.parent / data["scenario"]).resolve())
        except ScenarioError as err:
            problems += [f"scenario: {err.source}: {p}" for p in err.problems]
    design: list[DesignPoint] = []
    sampling: Sampling | None = None
    if spec is not None:
        labelled = math.prod(len(f.levels if f.levels is not None else f.values or [None])
                             for f in spec.factors if not f.sampled)
        size = ""
        if spec.design.sampled:
            rows = spec.design.size(sum(f.sampled for f in spec.factors))
            points, where = rows * labelled, "design"
            if labelled > 1:
                size = f" ({rows:,} sampled x {labelled:,} combination(s) of the arms)"
        else:
            points, where = labelled, "factors"
        if points * spec.replications > MAX_RUNS:
            problems.append(f"{where}: the design has {points:,} design point(s){size} x {spec.replications:,} "
                            f"replication(s) = {points * spec.replications:,} runs; at most {MAX_RUNS:,}")
    if (spec is not None and base is not None
            and not any(p.startswith(("factors[", "factors:", "design.", "design:")) for p in problems)):
        if spec.design.sampled:
            sampling = draw_sampling(spec.design, [f for f in spec.factors if f.sampled])
        design, design_problems = build_design(spec, base, sampling)
        problems += design_problems
    if base is not None:
        # who can be measured: the market's firms, category outlets, and the operators of coalitions any design runs
        firms: list[str] = []
        for names in [measurable_names(base), *(point.measurable for point in design)]:
            firms += [x for x in names if x not in firms]
        segments = [s.name for s in base.market.customers.segments]
        for i, name in enumerate(as_list(data.get("outcomes"))):
            if isinstance(name, str):
                try:
                    check_name(name, firms, segments)
                except OutcomeError as err:
                    problems.append(f"outcomes[{i}]: {err}")
    if problems:
        raise ExperimentError(source, problems)
    assert spec is not None and base is not None
    return Experiment(spec, path.resolve(), base, design, sampling)
