"""Scheduled events (ODD 3.3.2): what the scenario's ``market.events`` change, on the step each takes effect.

An event is a scenario record (see :mod:`loyaltysim.scenario`) with a step ``at``; each kind has one handler here,
registered in :data:`HANDLERS`. Adding an event kind is its schema in ``scenario.py`` and a handler in this module.

The market conditions that events set live here too: the procedural switching cost, the income shock's factor on
price sensitivity (and the steps it lasts), the service crises and the price cuts running now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loyaltysim.model.agents import Firm
from loyaltysim.model.state import NEVER, NO_FIRM, CustomerState
from loyaltysim.scenario import (
    AttributeChange,
    Entry,
    IncomeShock,
    IntegrityBreach,
    ManagerLeaves,
    PriceChange,
    PriceWar,
    ServiceCrisis,
    SwitchingCostChange,
)


@dataclass(frozen=True)
class EventTargets:
    """What events act on: the firms (by name), the attributes' names, the customers, how far customers follow
    a manager who leaves."""

    firms: list[Firm]
    firm_names: list[str]
    attribute_names: list[str]
    customers: CustomerState
    manager_follow: float


class ScheduledEvents:
    """The scenario's events in the order they take effect, and the market conditions they set."""

    def __init__(self, events: list, unit: str, switching_cost: float):
        self.unit = unit
        self.pending = sorted(((max(e.at.steps(unit), 1), i, e) for i, e in enumerate(events)), key=lambda x: x[:2])
        self.switching_cost = switching_cost  # procedural switching cost, utility units
        self.price_factor = 1.0  # multiplies price sensitivity while an income shock lasts
        self.shock = (NEVER, NEVER)  # first and last step of the latest income shock
        self.crises: list[tuple[int, int, float]] = []  # (last step, firm, reliability) of service crises
        self.price_cuts: list[tuple[int, int, float]] = []  # (last step, firm, price before) of price wars running

    @staticmethod
    def entrants(events: list) -> list[str]:
        """Firms that enter the market later (absent until their entry)."""
        return [e.firm for e in events if isinstance(e, Entry)]

    def apply(self, targets: EventTargets, t: int) -> None:
        """Events due by step ``t`` take effect in schedule order; then each firm's reliability is that of its
        latest running service crisis, or its own."""
        if self.shock[1] < t and self.price_factor != 1.0:
            self.price_factor = 1.0
        for _, j, price in [c for c in self.price_cuts if c[0] < t]:  # price cuts that ended: prices return
            targets.firms[j].set_price(price)
        self.price_cuts = [c for c in self.price_cuts if c[0] >= t]
        while self.pending and self.pending[0][0] <= t:
            _, _, event = self.pending.pop(0)
            firm = targets.firms[targets.firm_names.index(event.firm)] if getattr(event, "firm", None) else None
            HANDLERS[type(event)](self, targets, event, firm, t)
        self.crises = [c for c in self.crises if c[0] >= t]
        for f in targets.firms:
            running = [c[2] for c in self.crises if c[1] == f.index]
            f.reliability = running[-1] if running else f.base_reliability

    def shocked(self, t: int, window: int) -> bool:
        """An income shock is running or ended within ``window`` steps (it can explain a defection)."""
        return bool(self.shock[0] <= t <= self.shock[1] + window)


Handler = Callable[[ScheduledEvents, EventTargets, Any, Firm | None, int], None]


def price_change(events: ScheduledEvents, targets: EventTargets, e: PriceChange, firm: Firm, t: int) -> None:
    firm.set_price(e.price)


def attribute_change(events: ScheduledEvents, targets: EventTargets, e: AttributeChange, firm: Firm, t: int) -> None:
    firm.levels[targets.attribute_names.index(e.attribute)] = e.level


def switching_cost_change(events: ScheduledEvents, targets: EventTargets, e: SwitchingCostChange, firm: None,
                          t: int) -> None:
    events.switching_cost = e.switching_cost


def entry(events: ScheduledEvents, targets: EventTargets, e: Entry, firm: Firm, t: int) -> None:
    firm.available = True


def service_crisis(events: ScheduledEvents, targets: EventTargets, e: ServiceCrisis, firm: Firm, t: int) -> None:
    events.crises.append((t + e.duration.steps(events.unit) - 1, firm.index, e.reliability))


def income_shock(events: ScheduledEvents, targets: EventTargets, e: IncomeShock, firm: None, t: int) -> None:
    events.price_factor = e.price_sensitivity
    events.shock = (t, t + e.duration.steps(events.unit) - 1)


def integrity_breach(events: ScheduledEvents, targets: EventTargets, e: IntegrityBreach, firm: Firm, t: int) -> None:
    """The news reaches everyone: beliefs in the firm fall, and so does its customers' attitude."""
    st = targets.customers
    firm.breach_step = t
    st.perceived[:, firm.index] *= 1.0 - e.severity
    st.attitude[st.current == firm.index] *= 1.0 - e.severity


def manager_leaves(events: ScheduledEvents, targets: EventTargets, e: ManagerLeaves, firm: Firm, t: int) -> None:
    """The manager's customers lose their personal bond (the firm hires a replacement, who serves only customers
    joining from now on); with ``to``, staff turnover takes customers' goodwill to that firm."""
    st = targets.customers
    served = (st.current == firm.index) & (st.manager == e.manager)
    st.manager[served] = NO_FIRM
    st.manager_lost[served] = t
    if e.to is not None:
        to = targets.firm_names.index(e.to)
        follow = targets.manager_follow
        st.perceived[served, to] += follow * (1.0 - st.perceived[served, to])


def price_war(events: ScheduledEvents, targets: EventTargets, e: PriceWar, firm: Firm, t: int) -> None:
    """The firm cuts its price for a while; when the cut ends, its price returns to what it was before."""
    events.price_cuts.append((t + e.duration.steps(events.unit) - 1, firm.index, firm.price))
    firm.set_price(firm.price * (1.0 - e.cut))


HANDLERS: dict[type, Handler] = {
    PriceChange: price_change,
    AttributeChange: attribute_change,
    SwitchingCostChange: switching_cost_change,
    Entry: entry,
    ServiceCrisis: service_crisis,
    IncomeShock: income_shock,
    IntegrityBreach: integrity_breach,
    ManagerLeaves: manager_leaves,
    PriceWar: price_war,
}
