"""Status tiers: the tiers a programme's members reach by their spend and visits over a rolling window.

A ``tiers`` programme is status alone; a points, coalition or co-brand programme may have tiers too. A member gets
its tier's discount, priority service (a share of service failures removed) and, on points programmes, its tier's
bonus on the points it earns. A status is a financial switching cost: a tier's ``status_value`` adds to that of a
balance at the member's current firm (Burnham, Frels & Mahajan 2003). Promotion is at once; demotion at reviews.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.state import CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView, Outlook


class Status:
    """The status tiers of one programme: each customer's tier and its qualification buckets, the spend and visits
    with the programme's sellers by bucket period over the window."""

    def __init__(self, tiers, n: int, unit: str):
        self.spec = tiers
        self.tier = np.zeros(n, np.int8)  # 0: no tier; k: levels[k - 1]
        self.window = tiers.window.steps(unit)
        self.bucket = max(math.ceil(self.window / 13), 1)
        slots = math.ceil(self.window / self.bucket)
        self.q_spend = np.zeros((n, slots))
        self.q_visits = np.zeros((n, slots))
        self.review = max(tiers.review.steps(unit), 1)
        inf = np.inf
        self.spend_needed = np.array([inf if lv.spend is None else lv.spend for lv in tiers.levels])
        self.visits_needed = np.array([inf if lv.visits is None else lv.visits for lv in tiers.levels])
        # per tier, 0 (none) first
        self.discount = np.array([0.0, *(lv.discount for lv in tiers.levels)])
        self.priority = np.array([0.0, *(lv.priority for lv in tiers.levels)])
        self.bonus_earn = np.array([0.0, *(lv.bonus_earn for lv in tiers.levels)])
        self.status_value = np.array([0.0, *(lv.status_value for lv in tiers.levels)])

    def highest_level(self, spend: np.ndarray, visits: np.ndarray) -> np.ndarray:
        """The highest tier (1-based; 0 for none) whose spend or visits rule ``spend`` and ``visits`` meet; a higher
        tier can be met by one rule while a lower tier's other rule is not."""
        met = (spend[:, None] >= self.spend_needed[None, :]) | (visits[:, None] >= self.visits_needed[None, :])
        top = met.shape[1] - np.argmax(met[:, ::-1], axis=1)
        return np.where(met.any(axis=1), top, 0)

    def perceive(self, outlook: Outlook, firm: int, member: np.ndarray, at_firm: np.ndarray) -> np.ndarray:
        """Before the customers step: a member's tier discount (returned), its priority service at ``firm`` (the
        largest over programmes) and, for a member whose current firm it is (``at_firm``), the tier's status value
        added to the financial switching cost."""
        tier, perks = self.tier, outlook.perks
        discount = np.where(member, self.discount[tier], 0.0)
        perks.priority[:, firm] = np.maximum(perks.priority[:, firm], np.where(member, self.priority[tier], 0.0))
        outlook.financial += np.where(at_firm, self.status_value[tier], 0.0)
        return discount

    def qualify(self, t: int, launched_at: int, member: np.ndarray, spend: np.ndarray, visits: np.ndarray) -> None:
        """Add the step's ``spend`` and ``visits`` with the programme's sellers to the current bucket, promote
        members to the highest tier the window's sums meet and, at reviews (every ``review`` steps from the launch),
        demote by the ``demotion`` rule."""
        slots = self.q_spend.shape[1]
        slot = ((t - 1) // self.bucket) % slots
        if (t - 1) % self.bucket == 0:  # a new bucket period reuses the oldest slot
            self.q_spend[:, slot] = 0.0
            self.q_visits[:, slot] = 0.0
        self.q_spend[:, slot] += spend
        self.q_visits[:, slot] += visits
        window_spend, window_visits = self.q_spend.sum(axis=1), self.q_visits.sum(axis=1)
        qualified = np.where(member, self.highest_level(window_spend, window_visits), 0).astype(np.int8)
        tier = np.maximum(self.tier, qualified)
        if (t - launched_at + 1) % self.review == 0:  # reviews every `review` steps from the launch
            rule = self.spec.demotion
            if rule == "one_level":
                tier = np.where(qualified < tier, np.maximum(qualified, tier - 1), tier)
            elif rule == "to_qualified":
                tier = qualified
        self.tier[:] = tier.astype(np.int8)

    def end(self, who: np.ndarray) -> None:
        """Status lost with a membership that ends, qualification history included."""
        self.tier[who] = 0
        self.q_spend[who] = 0.0
        self.q_visits[who] = 0.0

    def expected_discount(self, book: BookView, st: CustomerState, firm: int, spend: np.ndarray) -> np.ndarray:
        """A year's discount at the tier a customer's own expected yearly ``spend`` and visits with ``firm`` would
        reach over the window."""
        visits = st.purchase_rate * book.year * book.wallet_share(st, firm)
        level = self.highest_level(spend * self.window / book.year, visits * self.window / book.year)
        return spend * self.discount[level]

    def counts(self, member: np.ndarray) -> dict[str, int]:
        """Members at each tier, as the programmes table's ``tier_<name>`` columns."""
        counts = np.bincount(self.tier[member], minlength=len(self.spec.levels) + 1)
        return {f"tier_{level.name}": int(counts[k + 1]) for k, level in enumerate(self.spec.levels)}
