"""What a firm can observe of its own customers (its CRM records), and the churn early-warning score built only
from them.

A firm sees its own sales to each customer, the complaints made to it and how they were handled, the survey
answers of those of its customers it sampled, how long each has been a customer, and its rivals' public prices.
It never sees a customer's satisfaction, attitude, expectations, beliefs or switching costs. The score adds
points per warning sign (:class:`~loyaltysim.scenario.EarlyWarning`), as the scorecards firms use do:

* ``usage_drop`` x how far the customer's purchases in the last ``window`` fell below its own usual rate in this
  relationship (0: no fall; 1: no purchases at all), for customers with more history than the window;
* ``low_score`` if its last survey answer in this relationship was 1-3;
* ``complaint`` if it complained within the window, and ``unresolved`` more if that complaint was not resolved;
* ``rival_cheaper`` x the share by which the cheapest rival undercuts the firm's price, per 10% (the same for
  every customer: it raises the score when rivals' visible offers are more tempting);
* ``new_customer`` if it has been a customer for less than a year (new customers leave more).
"""

from __future__ import annotations

import numpy as np

from .rules import NEVER, CustomerState
from .scenario import EarlyWarning


class CRM:
    """The firms' records of their current customers, kept by the market from what happens in each step.

    Purchases at the customer's current firm are kept for the last ``window`` steps (a ring), and reset when a
    new relationship begins, as each firm knows only its own customers' history.
    """

    def __init__(self, n: int, window: int):
        self.window = max(window, 1)
        self.purchases = np.zeros((n, self.window), np.int32)
        self.last_complaint = np.full(n, NEVER, np.int32)  # step of the last complaint to the current firm
        self.resolved = np.zeros(n, bool)  # ... and whether it was resolved well
        self.scored_at = np.full(n, NEVER, np.int32)  # step of the last survey answer

    def observe(self, st: CustomerState, t: int) -> None:
        """Record the step's purchases and complaints at each customer's current firm."""
        new = st.tenure == 1  # a relationship began this step: the firm starts a fresh record
        self.purchases[new] = 0
        self.last_complaint[new] = NEVER
        here = (st.step_firm >= 0) & (st.step_firm == st.current)
        self.purchases[:, t % self.window] = np.where(here, st.step_purchases, 0)
        complained = st.step_complained & here
        self.last_complaint[complained] = t
        self.resolved[complained] = st.step_recovered[complained]

    def surveyed(self, customers: np.ndarray, t: int) -> None:
        self.scored_at[customers] = t

    def recent_purchases(self, rows: np.ndarray, t: int, steps: int) -> np.ndarray:
        """Purchases at the current firm in the last ``steps`` steps (at most the ring's length)."""
        slots = [(t - k) % self.window for k in range(min(steps, self.window))]
        return self.purchases[np.ix_(rows, slots)].sum(axis=1)


def risk_scores(st: CustomerState, crm: CRM, rows: np.ndarray, t: int, warning: EarlyWarning, window: int,
                year: int, rival_gap: float) -> np.ndarray:
    """The early-warning score of the customers in ``rows`` (current customers of one firm) at the start of step
    ``t``, from the records up to the end of step ``t - 1``.

    ``window`` and ``year`` are in steps; ``rival_gap`` is the share by which the cheapest rival undercuts the
    firm's price (0 if none does).
    """
    last = t - 1
    tenure = st.tenure[rows]
    recent = crm.recent_purchases(rows, last, window)
    history = (tenure > window) & (last >= window)  # the records cover the whole window, and some time before
    before = np.maximum(st.relationship_purchases[rows] - recent, 0)
    usual = np.where(history, before / np.maximum(tenure - window, 1), 0.0)  # purchases per step before
    expected = usual * window
    drop = np.where(history & (expected > 0), np.clip(1.0 - recent / np.where(expected > 0, expected, 1.0), 0, 1),
                    0.0)
    since = last - tenure + 1  # first step of this relationship
    score = st.last_score[rows]
    low = (score >= 1) & (score <= 3) & (crm.scored_at[rows] >= since)
    complained = (last - crm.last_complaint[rows]) < window
    unresolved = complained & ~crm.resolved[rows]
    return (warning.usage_drop * drop + warning.low_score * low + warning.complaint * complained
            + warning.unresolved * unresolved + warning.rival_cheaper * max(rival_gap, 0.0) / 0.1
            + warning.new_customer * (tenure < year))
