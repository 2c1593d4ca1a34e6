"""The teaching dashboard's model: a scenario with the values of a few levers, built through the scenario's public API.

The levers are the market's and the focal firm's main ones:

- ``switching_cost``: the market's procedural switching cost (``market.customers.switching_cost``);
- ``price``: the focal firm's price (``policy.price``);
- ``basic_level`` and ``latent_level``: the focal firm's level of the market's first basic (Kano must-be) attribute
  and of its first latent (Kano attractive) attribute (``market.firms[i].attributes``), which attributes these are
  being read from the scenario;
- ``programme`` and ``earn_rate``: whether the focal firm runs a points programme, and its points per unit of money
  (``policy.programmes``): the scenario's own first points programme of the focal firm if it has one, else
  :data:`DEFAULT_PROGRAMME`;
- ``winback``: whether the focal firm runs a win-back campaign (``policy.campaigns``): the scenario's own first
  win-back campaign of the focal firm if it has one, else :data:`DEFAULT_WINBACK`;
- ``change_at``: the step at which the other levers take effect. At 0 they hold from the first step. Later, the
  scenario's own values hold until then, and the changes arrive as the scenario's scheduled events do
  (``switching_cost_change``, ``price_change``, ``attribute_change``), a programme switched on launches then, and a
  win-back campaign switched on starts (or the scenario's own, switched off, stops) then. A programme cannot be
  closed during a run, so the scenario's own programme switched off is absent from the start, and its earn rate
  holds from its launch.

Nothing here imports Solara: :func:`build_scenario` and :func:`build_model`
are plain functions of a scenario and the levers' values, and the plots read what the model recorded through
:func:`~loyaltysim.measures.tables.firms_table`.
The page is :mod:`loyaltysim.viz.page` (served by :mod:`loyaltysim.viz.app`, shown in a notebook by
:func:`loyaltysim.viz.page.explore`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loyaltysim.measures.tables import firms_table
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import LoyaltyScenario, ScenarioError, load_scenario, scenario_from_dict
from loyaltysim.units import parse_duration

SCENARIO_ENV = "LOYALTYSIM_DASHBOARD_SCENARIO"  # the scenario file the page's server reads, once (an absolute path)
POPULATION_ENV = "LOYALTYSIM_DASHBOARD_POPULATION"  # its number of customers
CLASSROOM_POPULATION = 2000  # customers: a step takes a few milliseconds, a whole run a couple of seconds
SOURCE = "the dashboard's levers"

# A points programme like experiments/programme_designs.toml's (1% back at one point per unit of money), launched at
# once: used when the scenario gives its focal firm none.
DEFAULT_PROGRAMME: dict[str, Any] = {
    "kind": "points", "start": "0 weeks", "earn_rate": 1.0,
    "rewards": [{"points": 1500.0, "value": 15.0, "cost": 15.0}], "expiry": "52 weeks",
    "launch_cost": 50000.0, "operating_cost": "2 per year",
}
# A win-back campaign like experiments/scenarios/winback.toml's (30% off for 13 weeks to those who left within the last
# 8 weeks), from the first step: used when the scenario gives its focal firm none.
DEFAULT_WINBACK: dict[str, Any] = {
    "kind": "win_back", "every": "4 weeks", "start": "0 weeks", "contact_cost": 25.0, "recontact_after": "52 weeks",
    "target": {"lapsed_at_least": "1 week", "lapsed_at_most": "8 weeks"},
    "offer": {"discount": 0.3, "upgrade": 0.0, "duration": "13 weeks", "cost": 400.0},
}


@dataclass(frozen=True)
class Lever:
    """One control of the page: its label, and its range for a number (a switch has none)."""

    name: str
    label: str
    default: float | bool
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    whole: bool = False  # a whole number (of steps)

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this lever's, in one line (None if it can)."""
        if self.is_switch:
            return None if isinstance(value, bool) else f"{self.name} ({self.label}): expected on or off " \
                                                        f"(true/false), got {value!r}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{self.name} ({self.label}): expected a number, got {value!r}"
        if not self.minimum <= value <= self.maximum:
            return f"{self.name} ({self.label}) = {value:g} is outside its range {self.minimum:g} to {self.maximum:g}"
        if self.whole and value != int(value):
            return f"{self.name} ({self.label}): expected a whole number, got {value:g}"
        return None


@dataclass(frozen=True)
class Dashboard:
    """What the page needs from its scenario, worked out once: the levers (their defaults are the scenario's
    values), the classroom presets, and the templates of the programme and the win-back campaign."""

    scenario: LoyaltyScenario
    focal: str
    basic: str  # the basic (Kano must-be) attribute the basic lever sets
    latent: str  # the latent (Kano attractive) attribute the latent lever sets
    levers: dict[str, Lever]
    presets: dict[str, dict[str, Any]]
    programme: dict[str, Any] = field(repr=False)  # the points programme switched on and off
    programme_at: int | None = None  # its place in the focal firm's programmes, if the scenario has it
    winback: dict[str, Any] = field(default_factory=dict, repr=False)  # the win-back campaign switched on and off
    winback_at: int | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: lever.default for name, lever in self.levers.items()}

    def values(self, preset: str) -> dict[str, Any]:
        """Every lever's value under a preset: the scenario's values, with the preset's changes."""
        if preset not in self.presets:
            raise KeyError(f"unknown preset {preset!r}; known: {list(self.presets)}")
        return {**self.defaults, **self.presets[preset]}


def _first_of_kano(scenario: LoyaltyScenario, kano: str, role: str) -> str:
    for a in scenario.market.attributes:
        if a.kano == kano:
            return a.name
    names = ", ".join(f"{a.name} ({a.kano})" for a in scenario.market.attributes)
    raise ScenarioError(SOURCE, [f"the dashboard needs a {role} attribute (kano = \"{kano}\") in market.attributes, "
                                 f"and this scenario has none: {names}"])


def _first_of_kind(items: list[dict], kind: str) -> int | None:
    return next((i for i, item in enumerate(items) if item.get("kind") == kind), None)


def _programme_names(data: dict) -> set[str]:
    names = {p["name"] for f in data["market"]["firms"] for p in f.get("programmes") or []}
    return names | {p["name"] for p in data["policy"].get("programmes") or []}


def _nice_step(x: float) -> float:
    """A slider step of about a 60th of ``x``, rounded to 1, 2 or 5 times a power of ten."""
    raw = abs(x) / 60 or 0.01
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def dashboard_for(scenario: LoyaltyScenario, population: int | None = CLASSROOM_POPULATION) -> Dashboard:
    """The dashboard of ``scenario``, its population set to ``population`` (None: the scenario's). Raises
    :class:`ScenarioError` if the scenario has no basic or no latent attribute, or the population is invalid."""
    if population is not None and population != scenario.market.customers.population:
        scenario = scenario.with_changes({"market.customers.population": population}, source="--population")
    basic = _first_of_kano(scenario, "must_be", "basic")
    latent = _first_of_kano(scenario, "attractive", "latent")
    focal = scenario.effective_firms()[scenario.focal_index]
    data = scenario.to_dict()
    own = [p.model_dump(mode="json") for p in focal.programmes]
    programme_at = _first_of_kind(own, "points")
    if programme_at is not None:
        programme = own[programme_at]
    else:
        name, taken = f"{focal.name} Points", _programme_names(data)
        while name in taken:
            name += "+"
        programme = {"name": name, **DEFAULT_PROGRAMME}
    campaigns = [c.model_dump(mode="json") for c in focal.campaigns]
    winback_at = _first_of_kind(campaigns, "win_back")
    winback = campaigns[winback_at] if winback_at is not None else copy.deepcopy(DEFAULT_WINBACK)

    unit, warmup = scenario.time.step, scenario.warmup_steps()
    switching = scenario.market.customers.switching_cost
    price = focal.price
    earn = programme["earn_rate"]
    levers = {
        "switching_cost": Lever("switching_cost", "Switching cost (utility)", switching, 0.0, max(3.0, switching),
                                0.05),
        "price": Lever("price", f"{focal.name}'s price", price, round(price / 2, 10), round(price * 1.5, 10),
                       _nice_step(price)),
        "basic_level": Lever("basic_level", f"{focal.name}'s {basic} (basic)", focal.attributes[basic], 0.0, 1.0,
                             0.05),
        "latent_level": Lever("latent_level", f"{focal.name}'s {latent} (latent)", focal.attributes[latent], 0.0,
                              1.0, 0.05),
        "programme": Lever("programme", f"{programme['name']} (points programme)", programme_at is not None),
        "earn_rate": Lever("earn_rate", "Points per unit of money", earn, 0.25, max(5.0, earn), 0.25),
        "winback": Lever("winback", "Win-back campaign", winback_at is not None),
        "change_at": Lever("change_at", f"The levers change at {unit} (0: from the start)", 0, 0,
                           scenario.steps() - 1, 1, whole=True),
    }
    low, high = 0.1, min(2.5, levers["switching_cost"].maximum)
    # the market's structure holds from the start; a firm's move comes when the warm-up ends, against a market that
    # has settled (and, in a market whose rivals imitate, gives them something to copy)
    move = f" at {unit} {warmup}" if warmup else ""
    presets = {
        "As in the scenario": {},
        f"Competitive market (switching cost {low:g})": {"switching_cost": low},
        f"Protected market (switching cost {high:g})": {"switching_cost": high},
        f"Basic investment ({basic} +0.2{move})": {
            "basic_level": min(1.0, round(focal.attributes[basic] + 0.2, 10)), "change_at": warmup},
        f"Latent investment ({latent} +0.2{move})": {
            "latent_level": min(1.0, round(focal.attributes[latent] + 0.2, 10)), "change_at": warmup},
        f"Programme on{move}": {"programme": True, "change_at": warmup},
        "Programme off": {"programme": False},
    }
    return Dashboard(scenario, focal.name, basic, latent, levers, presets, programme, programme_at, winback,
                     winback_at)


def load_dashboard(path: str | os.PathLike, population: int | None = CLASSROOM_POPULATION) -> Dashboard:
    """The dashboard of the scenario file ``path`` (see :func:`dashboard_for`); :class:`ScenarioError` if the file
    cannot be read or used."""
    return dashboard_for(load_scenario(path), population)


def dashboard_from_environment() -> Dashboard:
    """The dashboard of the scenario file named by ``$LOYALTYSIM_DASHBOARD_SCENARIO``, at the population in
    ``$LOYALTYSIM_DASHBOARD_POPULATION`` (the classroom size if unset): how the page's server learns what
    ``loyaltysim dashboard`` was started with."""
    path = os.environ.get(SCENARIO_ENV)
    if not path:
        raise ScenarioError(SCENARIO_ENV, ["not set: start the page with `loyaltysim dashboard [SCENARIO]`"])
    population = os.environ.get(POPULATION_ENV)
    try:
        size = int(population) if population else CLASSROOM_POPULATION
    except ValueError:
        raise ScenarioError(POPULATION_ENV, [f"expected a whole number of customers, got {population!r}"]) from None
    return load_dashboard(path, size)


def _switched(items: list[dict], at: int | None, template: dict, on: bool) -> list[dict]:
    """``items`` with ``template`` in (at its place, if it was there) or out."""
    rest = [item for i, item in enumerate(items) if i != at]
    if not on:
        return rest
    return [*rest[:at], template, *rest[at:]] if at is not None else [*rest, template]


def _starting(item: dict, at: int, unit: str) -> dict:
    """``item`` (a programme or a campaign) starting no earlier than step ``at``."""
    start = parse_duration(item.get("start", "0 weeks")).steps(unit)
    return item if start >= at else {**item, "start": f"{at} {unit}s"}


def build_scenario(dashboard: Dashboard, values: Mapping[str, Any]) -> LoyaltyScenario:
    """The dashboard's scenario with the levers set to ``values`` (a lever left out keeps the scenario's value).
    Raises :class:`ScenarioError` naming every unknown lever and every value out of its range."""
    problems = [f"unknown lever {name!r}; known: {list(dashboard.levers)}" for name in values
                if name not in dashboard.levers]
    problems += [p for name, v in values.items() if name in dashboard.levers
                 for p in [dashboard.levers[name].problem(v)] if p]
    if problems:
        raise ScenarioError(SOURCE, problems)
    v, d = {**dashboard.defaults, **values}, dashboard.defaults
    base = dashboard.scenario
    focal = base.effective_firms()[base.focal_index]
    data = base.to_dict()
    at, unit = int(v["change_at"]), base.time.step
    when = f"{at} {unit}s"
    changed = {name for name in d if name != "change_at" and v[name] != d[name]}
    programme = {**dashboard.programme, "earn_rate": float(v["earn_rate"])}
    winback = dashboard.winback
    if at == 0:
        data["market"]["customers"]["switching_cost"] = float(v["switching_cost"])
        attributes = data["market"]["firms"][base.focal_index]["attributes"]
        attributes[dashboard.basic] = float(v["basic_level"])
        attributes[dashboard.latent] = float(v["latent_level"])
        data["policy"]["price"] = float(v["price"])
    else:  # the scenario's values until step `at`, then the changes, as scheduled events
        events = list(data["market"].get("events") or [])
        if "switching_cost" in changed:
            events.append({"kind": "switching_cost_change", "at": when, "switching_cost": float(v["switching_cost"])})
        if "price" in changed:
            events.append({"kind": "price_change", "at": when, "firm": focal.name, "price": float(v["price"])})
        for lever, attribute in (("basic_level", dashboard.basic), ("latent_level", dashboard.latent)):
            if lever in changed:
                events.append({"kind": "attribute_change", "at": when, "firm": focal.name, "attribute": attribute,
                               "level": float(v[lever])})
        data["market"]["events"] = events
        if dashboard.programme_at is None:  # switched on: it launches at the change
            programme = _starting(programme, at, unit)
        if dashboard.winback_at is None:
            winback = _starting(winback, at, unit)
        elif not v["winback"]:  # the scenario's own campaign runs until the change (or its own earlier stop)
            own_stop = winback.get("stop")
            if own_stop is None or parse_duration(own_stop).steps(unit) > at:
                winback = {**winback, "stop": when}
    data["policy"]["programmes"] = _switched([p.model_dump(mode="json") for p in focal.programmes],
                                             dashboard.programme_at, programme, v["programme"])
    stopped = at > 0 and dashboard.winback_at is not None and not v["winback"]
    data["policy"]["campaigns"] = _switched([c.model_dump(mode="json") for c in focal.campaigns],
                                            dashboard.winback_at, winback, v["winback"] or stopped)
    return scenario_from_dict(data, source=SOURCE)


class DashboardMarket(LoyaltyMarket):
    """A :class:`LoyaltyMarket` made from a dashboard and its levers' values, keyword by keyword, as Mesa's
    visualization re-creates a model from its parameters; it stops at the scenario's horizon."""

    def __init__(self, *, dashboard: Dashboard, seed: int = 1, switching_cost: float | None = None,
                 price: float | None = None, basic_level: float | None = None, latent_level: float | None = None,
                 programme: bool | None = None, earn_rate: float | None = None, winback: bool | None = None,
                 change_at: int | None = None):
        given = {"switching_cost": switching_cost, "price": price, "basic_level": basic_level,
                 "latent_level": latent_level, "programme": programme, "earn_rate": earn_rate, "winback": winback,
                 "change_at": change_at}
        self.dashboard = dashboard
        self.levers = {**dashboard.defaults, **{k: v for k, v in given.items() if v is not None}}
        self.seed = seed
        super().__init__(build_scenario(dashboard, self.levers), seed=seed)

        self._series: tuple[int, pd.DataFrame] | None = None

    def step(self) -> None:
        super().step()
        self.running = self.steps < self.config.steps()

    def series(self) -> pd.DataFrame:
        """The firms' recorded series so far (:func:`~loyaltysim.measures.tables.firms_table`), made once a step
        however many plots read it."""
        if self._series is None or self._series[0] != self.steps:
            self._series = (self.steps, firms_table(self))
        return self._series[1]


def build_model(dashboard: Dashboard, values: Mapping[str, Any], seed: int = 1) -> DashboardMarket:
    """A model of the dashboard's scenario with the levers set to ``values``, from root seed ``seed``."""
    return DashboardMarket(dashboard=dashboard, seed=seed, **values)


def annual_retention(per_step: pd.Series, steps_per_year: float, window: int) -> pd.Series:
    """A firm's retention per year, from its retention per step over the last ``window`` steps (fewer at the start):
    the product of the steps' retention, raised to a year's worth of steps."""
    logs = np.log(per_step.astype(float).clip(lower=1e-9))
    mean = logs.rolling(window, min_periods=1).mean()
    return np.exp(mean * steps_per_year)
