"""Experiment files: a base scenario, factors varied over a full grid, replications and the outcomes to report.

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
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from loyaltysim.experiments import registry
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
    """A factor: either ``path`` and ``values`` (with optional ``labels``), or ``levels``."""

    name: str
    path: str | None = None
    values: list[Any] | None = None
    labels: list[str] | None = None
    levels: list[Level] | None = None

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


def _label(value: Any) -> str:
    return str(value)


def _factor_problems(i: int, f: dict) -> tuple[list[str], list[str] | None]:
    """Problems of one factor written in the raw data, and its labels when they can be told."""
    where = f"factors[{i}]"
    problems: list[str] = []
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


def cross_problems(data: Any) -> list[str]:
    """Problems between fields (names, labels, reference, figures and findings), one ``path: message`` each.

    Written over the raw data, so they are listed together with the field errors elsewhere in the file.
    """
    data = as_dict(data)
    problems: list[str] = []
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
        found, names = _factor_problems(i, f)
        problems += found
        if isinstance(fname, str):
            labels.setdefault(fname, names)
    reference = data.get("reference")
    if isinstance(reference, dict):
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
    for kind, key in (("figure", "figures"), ("findings", "findings")):
        problems += _declared_problems(kind, key, as_list(data.get(key)), list(labels), outcomes)
    repeated = sorted({o for o in outcomes if outcomes.count(o) > 1})
    if repeated:
        problems.append(f"outcomes: each outcome once; repeated: {repeated}")
    return problems


# --------------------------------------------------------------------------------------------------
# Paths into a scenario dict
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# The loaded experiment
# --------------------------------------------------------------------------------------------------


@dataclass
class DesignPoint:
    """One combination of factor levels: its index in the grid, its labels and its validated scenario."""

    index: int
    labels: dict[str, str]
    scenario: LoyaltyScenario

    @cached_property
    def effective(self) -> dict[str, Any]:
        """The scenario's canonical form: what the run key hashes and the manifest records."""
        return self.scenario.to_dict()

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels.items()) or "(the only design point)"


@dataclass
class Experiment:
    """A validated experiment: the file's contents, the base scenario and every design point."""

    spec: ExperimentSpec
    path: Path
    base: LoyaltyScenario
    design: list[DesignPoint] = field(default_factory=list)

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
        """Each factor's labels, in level order."""
        return {f.name: f.level_labels for f in self.spec.factors}

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


def build_design(spec: ExperimentSpec, base: LoyaltyScenario) -> tuple[list[DesignPoint], list[str]]:
    """Every design point, validated; and the problems found, each once with the first design point it hit."""
    base_data = base.to_dict()
    common: list[tuple[str, Any, str]] = []
    if spec.horizon is not None:
        common.append(("time.horizon", str(spec.horizon), "horizon"))
    if spec.warmup is not None:
        common.append(("time.warmup", str(spec.warmup), "warmup"))
    if spec.population is not None:
        common.append(("market.customers.population", spec.population, "population"))
    grids = [[(f.name, label, sets, where, i) for label, sets, where in f.resolved()]
             for i, f in enumerate(spec.factors)]
    points: list[DesignPoint] = []
    seen: dict[str, list] = {}  # problem text -> [first design point's labels, count]
    for index, combo in enumerate(itertools.product(*grids)):
        labels = {name: label for name, label, _, _, _ in combo}
        data = copy.deepcopy(base_data)
        sources: list[tuple[str, str]] = []
        problems: list[str] = []
        overrides = [(p, v, s) for p, v, s in common]
        for _, _, sets, where, i in combo:
            overrides += [(p, v, f"factors[{i}].{where[p]}") for p, v in sets.items()]
        for path, value, source in overrides:
            try:
                set_path(data, path, value)
            except ValueError as err:
                problems.append(f"{source}: cannot set '{path}': {err}")
                continue
            sources.append((format_path(parse_path(path)), source))
        if not problems:
            try:
                points.append(DesignPoint(index, labels, scenario_from_dict(data, source="design point")))
                continue
            except ScenarioError as err:
                for p in err.problems:
                    hit = _attribute(p, sources)
                    problems.append(f"{hit[0]}: {hit[1]}" if hit else f"effective scenario: {p}")
        desc = ", ".join(f"{k}={v}" for k, v in labels.items()) or "the only design point"
        for p in problems:
            seen.setdefault(p, [desc, 0])[1] += 1
    out = []
    for p, (desc, count) in seen.items():
        more = f" and {count - 1} more" if count > 1 else ""
        out.append(f"{p} (design point {desc}{more})")
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
    if spec is not None:
        points = math.prod(len(f.levels if f.levels is not None else f.values or [None]) for f in spec.factors)
        if points * spec.replications > MAX_RUNS:
            problems.append(f"factors: the design has {points:,} design point(s) x {spec.replications:,} "
                            f"replication(s) = {points * spec.replications:,} runs; at most {MAX_RUNS:,}")
    if (spec is not None and base is not None and not any(p.startswith(("factors[", "factors:")) for p in problems)):
        design, design_problems = build_design(spec, base)
        problems += design_problems
    if base is not None:
        # who can be measured: the market's firms, category outlets, and the operators of coalitions any design runs
        firms: list[str] = []
        for scenario in [base, *(point.scenario for point in design)]:
            names = [f.name for f in scenario.market.firms] + [o.name for c in scenario.market.categories
                                                              for o in c.outlets]
            names += [f"{p.name} operator" for f in scenario.effective_firms() for p in f.programmes
                      if p.kind == "coalition"]
            firms += [x for x in names if x not in firms]
        for i, name in enumerate(as_list(data.get("outcomes"))):
            if isinstance(name, str):
                try:
                    check_name(name, firms)
                except OutcomeError as err:
                    problems.append(f"outcomes[{i}]: {err}")
    if problems:
        raise ExperimentError(source, problems)
    assert spec is not None and base is not None
    return Experiment(spec, path.resolve(), base, design)
