"""Mesa agents: customers as views onto rows of the market's arrays, and firms.

A :class:`Customer` holds no state of its own: its attributes read its row of
:class:`~loyaltysim.model.state.CustomerState`, so ``model.agents_by_type[Customer]``, ``AgentSet.select``,
``groupby``/``agg`` and Mesa's ``DataCollector`` see the same numbers the vectorized step changes. Its
:meth:`Customer.step` applies the shared rules to its own row: the one-at-a-time path, for teaching and as a
test oracle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from loyaltysim.model.classifications import NAMES
from loyaltysim.model.state import KANO_CODES, NEVER, NO_FIRM

if TYPE_CHECKING:
    from loyaltysim.scenario import FirmSpec


class Customer(mesa.Agent):
    """One customer, a view onto row ``row`` of the market's customer arrays."""

    def __init__(self, model: mesa.Model, row: int):
        super().__init__(model)
        self.row = row

    def step(self) -> None:
        """Advance this customer alone by one step, with the same rules and variates as the vectorized step."""
        self.model.step_rows(slice(self.row, self.row + 1))

    def _get(self, name: str):
        return getattr(self.model.customers, name)[self.row]

    @property
    def active(self) -> bool:
        return bool(self._get("active"))

    @property
    def firm(self) -> int:
        """Index of the current (or habitual) firm, -1 for none."""
        return int(self._get("current"))

    @property
    def firm_name(self) -> str | None:
        f = self.firm
        return None if f == NO_FIRM else self.model.firm_names[f]

    @property
    def tenure(self) -> int:
        return int(self._get("tenure"))

    @property
    def satisfaction(self) -> float:
        """Smoothed satisfaction with the current firm (0 when it has none)."""
        f = self.firm
        return 0.0 if f == NO_FIRM else float(self.model.customers.satisfaction[self.row, f])

    @property
    def threshold(self) -> float:
        return float(self._get("threshold"))

    @property
    def satisfied(self) -> bool:
        return self.satisfaction >= self.threshold

    @property
    def price_sensitivity(self) -> float:
        return float(self._get("price_sensitivity"))

    @property
    def purchase_rate(self) -> float:
        return float(self._get("purchase_rate"))

    @property
    def last_score(self) -> int | None:
        s = int(self._get("last_score"))
        return s or None

    @property
    def expectations(self) -> np.ndarray:
        return self._get("expectation").copy()

    @property
    def perceived_quality(self) -> np.ndarray:
        return self._get("perceived").copy()

    @property
    def purchases(self) -> int:
        """Purchase occasions in the last step."""
        return int(self._get("step_purchases"))

    @property
    def attitude(self) -> float:
        """Attitudinal loyalty to the current firm, 0..1."""
        return float(self._get("attitude"))

    @property
    def segment(self) -> str:
        return self.model.segment_names[int(self._get("segment"))]

    @property
    def value_tier(self) -> str:
        return ("low", "medium", "high")[int(self._get("value_tier"))]

    def _class(self, kind: str) -> str:
        """This customer's class of ``kind``: its own code (the model makes every customer's once a step), by name."""
        return NAMES[kind][int(self.model.classify_codes(kind)[self.row])]

    @property
    def ladder_stage(self) -> str:
        return self._class("ladder")

    @property
    def dick_basu(self) -> str:
        return self._class("dick_basu")

    @property
    def jones_sasser(self) -> str:
        return self._class("jones_sasser")


class Firm(mesa.Agent):
    """A firm: its offer (price, attribute levels, service), its policies, and its books for the last step.

    Each step a firm first acts (:meth:`step`): it spends its investment budgets on attributes at their cost
    per unit, and, if it reacts to rivals, matches a lower price or a better attribute it saw ``delay`` ago.
    After the customers have stepped, :class:`~loyaltysim.model.accounts.Accounts` writes its books and metrics.
    """

    def __init__(self, model: mesa.Model, index: int, spec: FirmSpec, attribute_names: list[str],
                 attribute_costs: np.ndarray):
        super().__init__(model)
        unit = model.step_unit
        self.index = index
        self.spec = spec
        self.name = spec.name
        self.available = True
        self.price = float(spec.price)
        self.unit_cost = float(spec.unit_cost)
        self.attribute_names = attribute_names
        self.attribute_costs = attribute_costs
        self.levels = np.array([spec.attributes[a] for a in attribute_names], dtype=np.float64)
        self.reliability = self.base_reliability = float(spec.reliability)
        self.recovery = float(spec.recovery)
        self.recovery_cost = float(spec.recovery_cost)
        self.reach = spec.marketing_reach.per_step(unit)
        self.marketing_spend = spec.marketing_spend.per_step(unit)
        self.fixed_cost = spec.fixed_cost.per_step(unit)
        self.acquisition_cost = float(spec.acquisition_cost)
        self.managers = int(spec.relationship_managers)
        self.investments = [
            (attribute_names.index(inv.attribute), inv.budget.per_step(unit), inv.start.steps(unit),
             None if inv.stop is None else inv.stop.steps(unit), inv.max_level)
            for inv in spec.investments
        ]
        self.reaction = spec.reaction
        watched = spec.reaction.attributes if spec.reaction and spec.reaction.attributes is not None else None
        self.watched = np.array([watched is None or a in watched for a in attribute_names])
        self.reaction_delay = spec.reaction.delay.steps(unit) if spec.reaction else 0
        lags = spec.reaction.lags if spec.reaction else None
        # imitation by Kano class (reaction.lags): each class's lag in steps, the classes never copied left out
        self.class_lags = None if lags is None else {  # in the order must-be, one-dimensional, attractive
            KANO_CODES[c]: lags[c].steps(unit) for c in KANO_CODES if lags[c] != "never"}
        self.reaction_memory = max([self.reaction_delay, *(self.class_lags or {}).values()])  # what it looks back at
        self.price_rise_step = NEVER
        self.breach_step = NEVER
        self.invested = 0.0
        self.contacts = 0  # customers contacted by its campaigns in the last step
        self.contact_spend = 0.0
        self.campaigns = list(spec.campaigns)
        self.books: dict[str, float] = {}
        self.metrics: dict[str, float] = {}

    def set_price(self, price: float) -> None:
        """Change the price; a rise is remembered, since it can explain defections for a while."""
        if price > self.price:
            self.price_rise_step = self.model.steps
        self.price = float(price)

    def raise_level(self, attribute: int, target: float, budget: float = np.inf) -> float:
        """Raise one attribute toward ``target`` spending at most ``budget``; returns the money spent."""
        cost = self.attribute_costs[attribute]
        gap = max(0.0, target - self.levels[attribute])
        if cost == 0.0:  # a free attribute is raised at once
            self.levels[attribute] += gap
            return 0.0
        spend = min(budget, gap * cost)
        self.levels[attribute] += spend / cost
        return spend

    def step(self) -> None:
        """Invest, then react to what rivals offered ``delay`` steps ago."""
        t = self.model.steps
        self.invested = 0.0
        if not self.available:
            return
        for attribute, budget, start, stop, max_level in self.investments:
            if t > start and (stop is None or t <= stop):
                self.invested += self.raise_level(attribute, max_level, budget)
        if self.reaction is None:
            return
        r = self.reaction
        seen = self.model.offers.at(t - self.reaction_delay)
        rivals = self._rivals(seen)
        if rivals:
            if r.match_price:
                low = min(seen["price"][j] for j in rivals)
                matched = max(low, self.unit_cost * (1.0 + r.min_margin))
                if low < self.price * (1.0 - r.tolerance) and matched < self.price:  # matching never raises a price
                    self.set_price(matched)
            if r.match_attributes and self.class_lags is None:
                self._match_levels(seen, rivals, self.watched)
        for code, lag in (self.class_lags or {}).items():  # each Kano class copied after its own lag
            seen = self.model.offers.at(t - lag)
            rivals = self._rivals(seen)
            if rivals:
                self._match_levels(seen, rivals, self.model.kano == code)

    def _rivals(self, seen: dict[str, np.ndarray] | None) -> list[int]:
        """The rivals available in the offers ``seen`` (none if nothing was recorded then)."""
        if seen is None:
            return []
        return [j for j in range(len(seen["price"])) if j != self.index and seen["available"][j]]

    def _match_levels(self, seen: dict[str, np.ndarray], rivals: list[int], watched: np.ndarray) -> None:
        """Match the ``watched`` attributes to the rivals' levels in ``seen`` (the best or their mean)."""
        r = self.reaction
        levels = seen["levels"][rivals]
        target = levels.max(axis=0) if r.target == "best" else levels.mean(axis=0)
        for a in np.flatnonzero((target > self.levels + r.tolerance) & watched):
            self.invested += self.raise_level(int(a), float(target[a]))
        if r.target == "mean":  # a follower also lets an attribute fall back to the rivals' mean, at no cost
            lower = (target < self.levels - r.tolerance) & watched
            self.levels[lower] = target[lower]


class OfferHistory:
    """What the firms offered at the start of each step, kept as long as the slowest reaction needs."""

    def __init__(self, firms: list[Firm]):
        self.memory = max([f.reaction_memory for f in firms], default=0)
        self.offers: dict[int, dict[str, np.ndarray]] = {}

    def record(self, firms: list[Firm], t: int) -> None:
        self.offers.pop(t - self.memory - 1, None)
        self.offers[t] = {"price": np.array([f.price for f in firms]),
                          "levels": np.array([f.levels for f in firms]),
                          "available": np.array([f.available for f in firms])}

    def at(self, t: int) -> dict[str, np.ndarray] | None:
        """What the firms offered at the start of step ``t`` (None if not kept)."""
        return self.offers.get(t)
