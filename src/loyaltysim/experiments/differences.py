"""How one market differs from another: every setting whose value differs, path by path.

A finding measured on a market other than the baseline is only as honest as the list of what that market changes.
:func:`differences` compares two scenarios in their canonical form (every default written out), so a setting left
at its default in one file and written in the other counts only if the values differ; :func:`experiment_differences`
does it for every design point of an experiment against a baseline. ``loyaltysim diff BASE OTHER`` prints the list
(OTHER a scenario or an experiment file).

Paths are written as in experiment files (``market.firms[1].price``, the index in the other scenario). Lists of
named tables (firms, segments, programmes) are matched by name, so a firm added or removed is one difference and the
others are compared setting by setting, shown with their names (``market.firms[1].price (Rival A)``); another list
whose length differs is one difference at the list's path. The scenario's own ``name`` and ``description`` are not
settings and are left out.

**What a difference changes.** :func:`kind` sorts every setting into one of :data:`KINDS`, so that a list says at a
glance whether a market differs from the baseline in its structure or in the customers themselves:

* ``run``: the horizon, the warm-up, the number of customers simulated, the outputs kept;
* ``structure``: the market's make-up: its type, firms and their offers, costs and reactions, the attributes'
  costs, categories and outlets, the outside option, events, the network's shape, and what ties a customer to
  its firm (switching costs: procedural, relational, a manager's, a club's);
* ``demand``: how much the customers buy and how long they stay: purchase rates, baskets, variety seeking, exits,
  re-entry, lifetimes and arrivals;
* ``psychology``: how customers judge and decide: expectations, satisfaction, attitude, search, attention, choice
  noise, price sensitivity, what attributes mean to them (Kano class, importance, drift), segments, and word of
  mouth's talk and influence;
* ``survey``: the instrument that measures satisfaction (sample, noise, cutpoints, NPS scale);
* ``policy``: the focal firm's decisions (the treatments an experiment compares);
* ``economics``: how money is counted (discount rate, horizon of value, reference population, currency).

A finding measured on another market should differ from the baseline in structure (and run) only, unless it is
about the customers or the instrument (docs/findings.md lists each experiment's differences with their kinds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loyaltysim.experiments.design import Experiment
from loyaltysim.scenario import LoyaltyScenario, format_path

METADATA = ("name", "description")  # top-level keys that describe a scenario rather than set it

KINDS = ("run", "structure", "demand", "psychology", "survey", "policy", "economics")
# market.customers settings that are not psychology (the rest of market.customers is)
_CUSTOMER_STRUCTURE = ("switching_cost", "relational_cost", "relational_cost_cap", "manager_bond", "club_bond")
_CUSTOMER_DEMAND = ("purchase_rate", "basket", "variety_seeking", "natural_churn", "reentry", "lifetimes",
                    "arrivals")
_ATTRIBUTE_PSYCHOLOGY = ("kano", "importance", "drift")  # what an attribute means to customers; the rest is cost
_NETWORK_PSYCHOLOGY = ("talk", "influence", "advocate_level")  # who talks and how much it moves; the rest is shape


def kind(path: str) -> str:
    """Which of :data:`KINDS` the setting at ``path`` (as in experiment files: ``market.firms[1].price``) belongs
    to (see the module's docstring)."""
    keys = [k for k in path.replace("]", "").replace("[", ".").split(".") if k and not k.isdigit()]
    top = keys[0] if keys else ""
    if top in ("time", "outputs"):
        return "run"
    if top in ("policy", "economics"):
        return top
    if top != "market" or len(keys) < 2:
        return "structure"
    part, rest = keys[1], keys[2:]
    if part == "survey":
        return "survey"
    if part == "customers":
        if not rest or rest[0] == "population":
            return "run" if rest else "psychology"
        if rest[0] in _CUSTOMER_STRUCTURE:
            return "structure"
        return "demand" if rest[0] in _CUSTOMER_DEMAND else "psychology"
    if part == "attributes" and rest and rest[0] in _ATTRIBUTE_PSYCHOLOGY:
        return "psychology"
    if part == "network" and rest and rest[0] in _NETWORK_PSYCHOLOGY:
        return "psychology"
    return "structure"


@dataclass(frozen=True)
class Difference:
    path: str  # as in experiment files: market.firms[1].price
    label: str  # the path with the names of the list items it passes through
    base: Any
    other: Any

    @property
    def kind(self) -> str:
        """What the setting changes: one of :data:`KINDS`."""
        return kind(self.path)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # 1 and 1.0 are the same setting; 1 and True not


ABSENT = "(absent)"


def _named(items: list) -> dict[str, int] | None:
    """Each item's index by its name, when every item is a table with a name of its own."""
    names = [x.get("name") if isinstance(x, dict) else None for x in items]
    if not items or any(not isinstance(n, str) for n in names) or len(set(names)) < len(names):
        return None
    return {n: i for i, n in enumerate(names)}


def _walk(a: Any, b: Any, parts: list[str | int], names: list[str], out: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if not parts and key in METADATA:
                continue
            _walk(a.get(key, ABSENT), b.get(key, ABSENT), [*parts, key], names, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        by_a, by_b = _named(a), _named(b)
        if by_a is not None and by_b is not None:  # firms, segments, programmes: matched by name
            for name, j in by_b.items():
                if name in by_a:
                    _walk(a[by_a[name]], b[j], [*parts, j], [*names, name], out)
                else:
                    out.append(_difference([*parts, j], [*names, name], ABSENT, f"{name!r} (added)"))
            for name, i in by_a.items():
                if name not in by_b:
                    out.append(_difference([*parts, i], [*names, name], f"{name!r}", "(removed)"))
            return
        if len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _walk(x, y, [*parts, i], names, out)
            return
    if not _same(a, b):
        out.append(_difference(parts, names, a, b))


def _difference(parts: list[str | int], names: list[str], a: Any, b: Any) -> Difference:
    path = format_path(parts)
    return Difference(path, f"{path} ({', '.join(names)})" if names else path, a, b)


def shown(value: Any) -> str:
    """A setting's value as the list shows it: text as written, ``none`` for an unset option."""
    if value is None:
        return "none"
    return value if isinstance(value, str) else repr(value)


def differences(base: LoyaltyScenario, other: LoyaltyScenario) -> list[Difference]:
    """Every setting of ``other`` whose value differs from ``base``'s, in the scenario's order."""
    out: list[Difference] = []
    _walk(base.to_dict(), other.to_dict(), [], [], out)
    return out


def experiment_differences(base: LoyaltyScenario, experiment: Experiment) -> dict[str, list[Difference]]:
    """For each design point of ``experiment`` (by its labels, e.g. ``strategy=basic``), how its market differs from
    ``base``."""
    out = {}
    for point in experiment.design:
        label = ", ".join(f"{k}={v}" for k, v in point.labels.items()) or "(the experiment's scenario)"
        out[label] = differences(base, point.scenario)
    return out


def common_differences(by_point: dict[str, list[Difference]]) -> list[Difference]:
    """The differences every design point shares (path and both values): what the experiment's market changes
    whatever its factors."""
    sets = [{(d.path, repr(d.base), repr(d.other)) for d in diffs} for diffs in by_point.values()]
    shared = set.intersection(*sets) if sets else set()
    first = next(iter(by_point.values()), [])
    return [d for d in first if (d.path, repr(d.base), repr(d.other)) in shared]


CELL_WIDTH = 70  # a value longer than this is cut in a Markdown list (events, campaigns: see the file)


def cell(value: Any) -> str:
    """A value as a Markdown table shows it: :func:`shown`, with ``|`` escaped and cut at :data:`CELL_WIDTH`."""
    text = shown(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= CELL_WIDTH else text[:CELL_WIDTH - 1] + "…"


def own_differences(by_point: dict[str, list[Difference]]) -> dict[str, list[str]]:
    """For each setting some design point changes beyond the shared differences (by its label), the labels of the
    points that change it, in the design's order: what the experiment's arms vary."""
    shared = {(d.path, repr(d.base), repr(d.other)) for d in common_differences(by_point)}
    out: dict[str, list[str]] = {}
    for point, diffs in by_point.items():
        for d in diffs:
            if (d.path, repr(d.base), repr(d.other)) not in shared:
                arms = out.setdefault(d.label, [])
                if point not in arms:
                    arms.append(point)
    return out


MARKDOWN_SHARED = ("setting", "baseline", "here", "kind", "why")
MARKDOWN_ARMS = ("setting", "kind", "arms that change it")


def markdown_rows(base: LoyaltyScenario, other: LoyaltyScenario | Experiment) -> tuple[list[tuple[str, ...]],
                                                                                     list[tuple[str, ...]]]:
    """The rows of the two Markdown tables of :func:`markdown` (without the hand-written "why"): the shared
    differences (setting, baseline, here, kind) and, for an experiment, what its arms vary (setting, kind, and the
    arms that change it, or "every arm (values differ)")."""
    if isinstance(other, LoyaltyScenario):
        shared, arms = differences(base, other), {}
    else:
        by_point = experiment_differences(base, other)
        shared, arms = common_differences(by_point), (own_differences(by_point) if len(by_point) > 1 else {})
    first = [(f"`{d.label}`", cell(d.base), cell(d.other), d.kind) for d in shared]
    every = len(getattr(other, "design", ()))
    if not isinstance(other, LoyaltyScenario) and other.sampling is not None:
        return first, _sampled_rows(base, other, list(arms))
    second = [(f"`{label}`", kind(label.split(" (")[0]),
               "every arm (values differ)" if len(points) == every else "; ".join(points))
              for label, points in arms.items()]
    return first, second


def _related(a: str, b: str) -> bool:
    """One path is the other or lies inside it (``market.firms[3].reaction`` and ``...reaction.lags.attractive``)."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def _sampled_rows(base: LoyaltyScenario, experiment: Experiment, varied: list[str]) -> list[tuple[str, ...]]:
    """What a sampled design varies, setting by setting (``varied``: the settings' labels): the sampled factors that
    draw it (with their bounds) and the arms' labels that change it, rather than every design point's values."""
    from loyaltysim.scenario import format_path, parse_path

    factors = [f for f in experiment.spec.factors if f.sampled]
    drawn = {f.name: [format_path(parse_path(p)) for p in f.targets] for f in factors}
    arm_paths = {f.name: [format_path(parse_path(p)) for _, sets, _ in f.resolved() for p in sets]
                 for f in experiment.spec.factors if not f.sampled}
    rows = []
    for label in varied:
        path = label.split(" (")[0]
        by = [f"sampled: {f.name} {f.bounds[0]:g} to {f.bounds[1]:g}{' ' + f.unit if f.unit else ''}"
              for f in factors if any(_related(path, p) for p in drawn[f.name])]
        by += [f"arm: {name} ({', '.join(f.level_labels)})" for f in experiment.spec.factors if not f.sampled
               for name in [f.name] if any(_related(path, p) for p in arm_paths[name])]
        rows.append((f"`{label}`", kind(path), "; ".join(by)))
    return rows


def markdown(base: LoyaltyScenario, other: LoyaltyScenario | Experiment) -> str:
    """How ``other`` (a scenario or an experiment) differs from ``base``, as Markdown tables to paste into a write-up
    and justify: one row per shared difference with an empty "why" column to fill in, then (for an experiment with
    several design points) one row per setting its arms vary, with the arms that change it."""
    shared, arms = markdown_rows(base, other)
    lines = ["| " + " | ".join(MARKDOWN_SHARED) + " |", "|" + "---|" * len(MARKDOWN_SHARED)]
    lines += ["| " + " | ".join(row) + " |  |" for row in shared]
    if arms:
        lines += ["", "| " + " | ".join(MARKDOWN_ARMS) + " |", "|" + "---|" * len(MARKDOWN_ARMS)]
        lines += ["| " + " | ".join(row) + " |" for row in arms]
    return "\n".join(lines)
