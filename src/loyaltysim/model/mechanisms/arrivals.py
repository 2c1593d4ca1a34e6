"""Arrivals over time (ODD 3.3.33): customers who enter the market over a window, not all of them at the start.

Without the mechanism every customer is in the market at initialisation, most of them with a firm. A firm's data are
often a cohort acquired over weeks (CDNOW's 23,570 customers first bought in the first quarter of 1997), so that a
simulated cohort has to arrive the same way for its purchases by week to be comparable. Each customer gets an arrival
step a_i at initialisation, from the ``arrivals`` stream:

* ``over = "12 weeks"``: a_i uniform over the steps 1 … W of the window of W steps starting at step 0;
* ``shares = [...]`` with ``every = "1 week"``: a period k (of E steps) with probability ``shares[k]`` (normalised),
  then a_i uniform over the period's steps k E + 1 … (k + 1) E.

Until its arrival step a customer is out of the market and has never been a customer of any firm: not active, no firm,
no purchase history; re-entry (3.3.7) cannot bring it in early. On step a_i it enters the market as a prospect (its
chance of entering is 1 that step, 0 before and the usual re-entry chance after), and with ``first_purchase`` its
purchase occasions of that step are at least one, so that it searches and buys on its arrival step from the firm it
chooses (in both kinds of market), as a firm's transaction log shows a customer's first purchase. The draws are made
once, from the ``arrivals`` stream, and nothing else changes: switching the mechanism on shifts no other draw.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import NEVER, NO_FIRM, CustomerState


class Arrivals:
    """Every customer's arrival step, and what it means for the life events and the occasions of a step."""

    def __init__(self, spec, n: int, unit: str, rng: np.random.Generator):
        shares, period = spec.schedule()
        self.period_steps = period.steps(unit)  # E
        self.last = len(shares) * self.period_steps  # the window's last step
        cumulative = np.cumsum(shares)
        positive = np.flatnonzero(np.asarray(shares) > 0.0)
        period_of = np.searchsorted(cumulative, rng.random(n), side="right")
        period_of = np.minimum(period_of, positive[-1])  # (a uniform at the top of a rounded cumulative sum)
        self.step = (period_of * self.period_steps + rng.integers(1, self.period_steps + 1, n)).astype(np.int32)
        self.first_purchase = bool(spec.first_purchase)

    @staticmethod
    def hold_out(st: CustomerState) -> None:
        """At initialisation: nobody has arrived yet, so nobody is in the market or has ever had a firm."""
        st.active[:] = False
        st.current[:] = NO_FIRM
        st.tenure[:] = 0
        st.relationship_purchases[:] = 0
        st.since[:] = NEVER
        st.last_buy[:] = NEVER
        st.wallet[:] = 0.0
        st.manager[:] = NO_FIRM

    def enter_probability(self, t: int, p_enter: float) -> np.ndarray | None:
        """f8[n]: each customer's chance of entering the market in step ``t``: 0 before its arrival, 1 on its arrival
        step, the re-entry chance ``p_enter`` after it (None once every customer has arrived: re-entry as usual)."""
        if t > self.last:
            return None
        return np.where(self.step > t, 0.0, np.where(self.step == t, 1.0, p_enter))

    def first_occasions(self, occasions: np.ndarray, t: int) -> np.ndarray:
        """The step's purchase occasions with at least one for each customer arriving in step ``t`` (with
        ``first_purchase``; unchanged otherwise)."""
        if not self.first_purchase or t > self.last:
            return occasions
        return np.where(self.step == t, np.maximum(occasions, 1), occasions)

    def bought_on_arrival(self, t: int) -> np.ndarray | None:
        """i4[n]: 1 for the customers whose purchases of step ``t`` include their first purchase, made on arriving
        (with ``first_purchase``), else 0; None when nobody arrived in step ``t``."""
        if not self.first_purchase or t < 1 or t > self.last:
            return None
        return (self.step == t).astype(np.int32)

    def arriving(self, t: int) -> np.ndarray:
        """bool[n]: the customers who arrive in step ``t``."""
        return self.step == t
