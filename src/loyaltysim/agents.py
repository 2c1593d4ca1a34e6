"""Mesa agents: customers as views onto rows of the market's arrays, and firms.

A :class:`Customer` holds no state of its own: its attributes read its row of
:class:`~loyaltysim.rules.CustomerState`, so ``model.agents_by_type[Customer]``, ``AgentSet.select``,
``groupby``/``agg`` and Mesa's ``DataCollector`` see the same numbers the vectorized step changes. Its
:meth:`Customer.step` applies the shared rules to its own row: the one-at-a-time path, for teaching and as a
test oracle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from . import rules
from .rules import NEVER, NO_FIRM

if TYPE_CHECKING:
    from .model import LoyaltyMarket
    from .scenario import Firm as FirmSpec


class Customer(mesa.Agent):
    """One customer, a view onto row ``row`` of the market's customer arrays."""

    def __init__(self, model: LoyaltyMarket, row: int):
        super().__init__(model)
        self.row = row

    def step(self) -> None:
        """Advance this customer alone by one step, with the same rules and variates as the vectorized step."""
        m = self.model
        rules.step_customers(m.customers, slice(self.row, self.row + 1), m.variates, m.shared, m.params)

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
        """Purchases in the last step."""
        return int(self._get("step_purchases"))


class Firm(mesa.Agent):
    """A firm: its offer (price, attribute levels, service) and its books for the last step."""

    def __init__(self, model: LoyaltyMarket, index: int, spec: FirmSpec, attribute_names: list[str]):
        super().__init__(model)
        unit = model.step_unit
        self.index = index
        self.spec = spec
        self.name = spec.name
        self.price = float(spec.price)
        self.unit_cost = float(spec.unit_cost)
        self.levels = np.array([spec.attributes[a] for a in attribute_names], dtype=np.float64)
        self.reliability = float(spec.reliability)
        self.recovery = float(spec.recovery)
        self.recovery_cost = float(spec.recovery_cost)
        self.reach = spec.marketing_reach.per_step(unit)
        self.marketing_spend = spec.marketing_spend.per_step(unit)
        self.fixed_cost = spec.fixed_cost.per_step(unit)
        self.acquisition_cost = float(spec.acquisition_cost)
        self.price_rise_step = NEVER
        self.books: dict[str, float] = {}
        self.metrics: dict[str, float] = {}

    def set_price(self, price: float) -> None:
        """Change the price; a rise is remembered, since it can explain defections for a while."""
        if price > self.price:
            self.price_rise_step = self.model.steps
        self.price = float(price)

    def settle(self, purchases: float, failures: float, gained: float) -> None:
        """Book the last step's profit and loss from its volumes."""
        revenue = purchases * self.price
        cogs = purchases * self.unit_cost
        recovery = failures * self.recovery_cost
        acquisition = gained * self.acquisition_cost
        cost = cogs + recovery + self.marketing_spend + self.fixed_cost + acquisition
        self.books = {
            "price": self.price,
            "revenue": revenue,
            "cost_of_goods": cogs,
            "recovery_cost": recovery,
            "marketing_cost": self.marketing_spend,
            "fixed_cost": self.fixed_cost,
            "acquisition_cost": acquisition,
            "profit": revenue - cost,
        }
