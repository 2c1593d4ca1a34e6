"""Cashback programmes: money back on spend, paid at the end of each period.

A member counts a cashback programme as a price cut of its rate. A schedule's frequency condition (purchases on so
many days of the period) presses like points do (goal gradient; Kivetz, Urminsky & Zheng 2006) while it can still
be met. Cashback is paid at the end of each period (at the highest rate whose frequency condition was met) and costs
the firm when paid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.views import Outlook, Sales
from loyaltysim.model.state import CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView


class CashbackLedger(Ledger):
    """A cashback programme (kind ``cashback``): members get ``rate`` of what they spend at the firm back at the end
    of each period, or the higher rate of a frequency condition of the ``schedule`` they met; its ledger keeps each
    member's period counters."""

    def __init__(self, spec, firm: int, name: str, start: int, n: int, unit: str, year_steps: int,
                 partners: tuple[int, ...] = ()):
        super().__init__(spec, firm, name, start, n, unit, year_steps, partners)
        self.period = max(spec.period.steps(unit), 1)
        self.period_spend = np.zeros(n)
        self.days = np.zeros(n, np.int32)
        self.streak = np.zeros(n, np.int32)
        self.best_streak = np.zeros(n, np.int32)
        self.rate = np.full(n, spec.rate)  # the rate each member earned in its last period
        self.conditions = sorted(spec.schedule, key=lambda c: -c.rate)

    def progress(self, t: int) -> np.ndarray:
        """Progress toward the highest-paying frequency condition still within reach this period."""
        spent = (t - self.launched_at) % self.period  # steps of the period already gone (periods run from the launch)
        left = self.period - spent
        progress = np.zeros(self.n)
        met = np.zeros(self.n, bool)
        for c in self.conditions:  # highest rate first
            have = self.streak if c.consecutive else self.days
            done = (self.best_streak if c.consecutive else self.days) >= c.days
            reachable = ~met & ~done & (c.days - have <= left)
            progress = np.where(reachable & (progress == 0), have / c.days, progress)
            met |= done | reachable
        return progress

    def perceive(self, outlook: Outlook, at_firm: np.ndarray,
                 discount: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Worth its rate at the firm (a member's: the rate it earned in its last period with spend); with a
        schedule, the pressure and pull of the frequency condition within reach."""
        member, firm, perks = self.member, self.firm, outlook.perks
        worth = {firm: np.where(member, self.rate, self.spec.rate)}
        if self.conditions:
            g = self.progress(outlook.t) ** 2
            perks.pressure[:, firm] = np.maximum(perks.pressure[:, firm], np.where(member, outlook.pressure(g), 0.0))
            if outlook.contractual:
                outlook.pull = np.maximum(outlook.pull, np.where(at_firm, outlook.goal_pull(g), 0.0))
        return discount, worth

    def earn(self, sales: Sales, u_redeem: np.ndarray, totals: dict) -> None:
        """Members' purchases at the firm in the main market count toward the period."""
        at, money, _ = sales.views[0]
        firm = self.firm
        self.pay(sales.t, (at == firm) & self.member, np.where(at == firm, money, 0.0), totals)

    def pay(self, t: int, buyer: np.ndarray, spend: np.ndarray, totals: dict) -> None:
        """Count the step's ``spend`` of each ``buyer`` toward its period; at the end of a period pay each member
        the highest rate met on its period spend, and restart every customer's counters."""
        self.period_spend += np.where(buyer, spend, 0.0)
        self.days += buyer
        self.streak = np.where(buyer, self.streak + 1, 0).astype(np.int32)
        self.best_streak = np.maximum(self.best_streak, self.streak)
        if (t - self.launched_at + 1) % self.period:  # periods run from the launch
            return
        rate = np.full(self.n, self.spec.rate)
        for c in self.conditions:  # highest rate first: the first condition met sets the rate
            met = (self.best_streak if c.consecutive else self.days) >= c.days
            rate = np.where(met & (rate < c.rate), c.rate, rate)
        paid = np.where(self.member, rate * self.period_spend, 0.0)
        totals["cashback"] = float(paid.sum())
        self.rate = np.where(self.member & (self.period_spend > 0), rate, self.rate)
        self.period_spend[:] = 0.0
        self.days[:] = 0
        self.streak[:] = 0
        self.best_streak[:] = 0

    def add_benefit(self, benefit: np.ndarray, book: BookView, st: CustomerState, price: np.ndarray,
                    spend: np.ndarray) -> None:
        """Its expected spend times the highest rate of the non-consecutive conditions its expected days with a
        purchase in a period reach."""
        rate = np.full(self.n, self.spec.rate)
        days = self.period * -np.expm1(-st.purchase_rate)  # expected days with a purchase in a period
        for c in self.conditions:
            if not c.consecutive:
                rate = np.where(days >= c.days, np.maximum(rate, c.rate), rate)
        benefit += spend * rate
