"""What each firm can observe of its own customers (its CRM records), and the churn early-warning score built only
from them.

A firm sees its own sales to each customer, the complaints made to it and how they were handled, the survey
answers about it of those it sampled, how long each has been its customer, and its rivals' public prices. It never
sees a customer's satisfaction, attitude, expectations, beliefs or switching costs. The score adds points per
warning sign (:class:`~loyaltysim.scenario.EarlyWarning`), as the scorecards firms use do:

* ``usage_drop`` x how far the customer's purchases at the firm in the last ``window`` fell below its own usual
  rate there in this relationship (0: no fall; 1: no purchases at all), for customers with more history than the
  window;
* ``low_score`` if its last survey answer about the firm in this relationship was 1-3;
* ``complaint`` if it complained to the firm within the window, and ``unresolved`` more if that complaint was not
  resolved;
* ``rival_cheaper`` x the share by which the cheapest rival undercuts the firm's price, per 10% (the same for
  every customer: it raises the score when rivals' visible offers are more tempting);
* ``new_customer`` if it has been a customer for less than a year (new customers leave more).

A firm's customers are its current providers' customers in a contractual market, and in a repertoire market every
customer who bought there within the lapse window (a firm knows who buys from it, not who buys mostly from it).
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import NEVER, CustomerState
from loyaltysim.scenario import EarlyWarning


class CRM:
    """Every firm's records of its customers, kept by the market from what happens in each step.

    Per customer and firm: purchase occasions in the last ``window`` steps (a ring), occasions since the
    relationship began, the last complaint and whether it was resolved, and the last survey answer about the firm.
    A firm's records of a customer start afresh when a relationship with it begins (``since``), as a firm knows only
    its own customers' history.
    """

    def __init__(self, st: CustomerState, window: int):
        n, n_firms = st.since.shape
        self.window = max(window, 1)
        self.purchases = np.zeros((n, n_firms, self.window), np.int32)
        self.total = np.zeros((n, n_firms), np.int64)  # occasions since the relationship began
        rows = np.flatnonzero(st.current >= 0)  # relationships running at the start: their history as recorded
        self.total[rows, st.current[rows]] = st.relationship_purchases[rows]
        self.last_complaint = np.full((n, n_firms), NEVER, np.int32)
        self.resolved = np.zeros((n, n_firms), bool)
        self.score = np.zeros((n, n_firms), np.int8)  # last 1-5 answer about the firm (0: none)
        self.scored_at = np.full((n, n_firms), NEVER, np.int32)

    def observe(self, st: CustomerState, t: int) -> None:
        """Record the step's purchases and complaints at the firm each customer bought from."""
        began = st.since == t  # a relationship began this step
        self.purchases[began] = 0
        self.total[began] = 0
        self.last_complaint[began] = NEVER
        self.score[began] = 0
        slot = t % self.window
        self.purchases[:, :, slot] = 0
        who = np.flatnonzero(st.step_firm >= 0)
        at = st.step_firm[who]
        self.purchases[who, at, slot] = st.step_purchases[who]
        self.total[who, at] += st.step_purchases[who]
        complained = who[st.step_complained[who]]
        self.last_complaint[complained, st.step_firm[complained]] = t
        self.resolved[complained, st.step_firm[complained]] = st.step_recovered[complained]

    def surveyed(self, customers: np.ndarray, firms: np.ndarray, scores: np.ndarray, t: int) -> None:
        """Record survey answers: each customer's score of the firm it was asked about."""
        self.score[customers, firms] = scores
        self.scored_at[customers, firms] = t

    def recent_purchases(self, rows: np.ndarray, firm: int, t: int, steps: int) -> np.ndarray:
        """Occasions at ``firm`` in the ``steps`` steps up to ``t`` (at most the ring's length)."""
        slots = [(t - k) % self.window for k in range(min(steps, self.window))]
        return self.purchases[rows, firm][:, slots].sum(axis=1)


def risk_scores(st: CustomerState, crm: CRM, rows: np.ndarray, firm: int, t: int, warning: EarlyWarning,
                window: int, year: int, rival_gap: float) -> np.ndarray:
    """The early-warning score of the customers in ``rows`` (customers of ``firm``) at the start of step ``t``,
    from the records up to the end of step ``t - 1``.

    ``window`` and ``year`` are in steps; ``rival_gap`` is the share by which the cheapest rival undercuts the
    firm's price (0 if none does).
    """
    last = t - 1
    since = st.since[rows, firm]  # the step this relationship began
    tenure = last - since + 1
    recent = crm.recent_purchases(rows, firm, last, window)
    history = (tenure > window) & (last >= window)  # the records cover the whole window, and some time before
    before = np.maximum(crm.total[rows, firm] - recent, 0)
    usual = np.where(history, before / np.maximum(tenure - window, 1), 0.0)  # occasions per step before the window
    expected = usual * window
    drop = np.where(history & (expected > 0), np.clip(1.0 - recent / np.where(expected > 0, expected, 1.0), 0, 1),
                    0.0)
    score = crm.score[rows, firm]
    low = (score >= 1) & (score <= 3) & (crm.scored_at[rows, firm] >= since)
    complained = (last - crm.last_complaint[rows, firm]) < window
    unresolved = complained & ~crm.resolved[rows, firm]
    return (warning.usage_drop * drop + warning.low_score * low + warning.complaint * complained
            + warning.unresolved * unresolved + warning.rival_cheaper * max(rival_gap, 0.0) / 0.1
            + warning.new_customer * (tenure < year))
