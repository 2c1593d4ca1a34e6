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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loyaltysim.experiments.design import Experiment
from loyaltysim.scenario import LoyaltyScenario, format_path

METADATA = ("name", "description")  # top-level keys that describe a scenario rather than set it


@dataclass(frozen=True)
class Difference:
    path: str  # as in experiment files: market.firms[1].price
    label: str  # the path with the names of the list items it passes through
    base: Any
    other: Any


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
