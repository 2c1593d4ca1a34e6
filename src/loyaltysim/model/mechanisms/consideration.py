"""Consideration sets (ODD 3.3.30): in a repertoire market a customer chooses only among the firms it knows.

Shoppers do not weigh every store in the market on every trip: they choose from a small consideration set of the
brands they are aware of (Howard & Sheth 1969; Hauser & Wernerfelt 1990; Roberts & Lattin 1991), and awareness
comes from advertising and from other people, and fades without them. Each customer holds an awareness a_ij ∈ [0, 1]
of each firm; before the customers step,

1. awareness fades: a ← a · 0.5^(1/h), h = ``half_life`` in steps;
2. word of mouth raises it: a ← a + g_w · (pos + neg) · (1 − a), with pos and neg the shares of the customer's
   neighbours who spoke for and against the firm this step (3.3.5; being warned about a store also makes it known);
3. a marketing exposure raises it: a ← a + g_m (1 − a), for the exposures the customer meets in this step (the same
   draws, and the same rule of who is exposed, as the beliefs of 3.3.8);
4. the customer's current firm, the firm it bought from in the previous step and a firm whose campaign contacted
   it in this step (a win-back, retention or personalised offer, 3.3.21-3.3.22) are fully known (a = 1).

A firm is *considered* while a ≥ ``threshold``. The customer rules (:func:`loyaltysim.model.rules.step_customers`)
read the considered set: searching and variety trips choose among considered firms only (the current firm always
is). At the start every customer knows its first firm and each other firm in the market with probability
``initial_awareness``, drawn from the ``consideration`` stream; nothing else is random here, so switching the
mechanism on shifts no other draw.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import CustomerState, Shared, Variates, half_life_weight


class Consideration:
    """Every customer's awareness of every firm [n, F] and the firms it considers (bool [n, F])."""

    def __init__(self, spec, current: np.ndarray, available: np.ndarray, unit: str, rng: np.random.Generator):
        n, n_firms = current.shape[0], available.shape[0]
        self.keep = 1.0 - half_life_weight(spec.half_life.steps(unit))
        self.marketing_gain = spec.marketing_gain
        self.word_of_mouth_gain = spec.word_of_mouth_gain
        self.threshold = spec.threshold
        known = (rng.random((n, n_firms)) < spec.initial_awareness) & available[None, :]
        self.awareness = known.astype(np.float64)
        has = current >= 0
        self.awareness[np.flatnonzero(has), current[has]] = 1.0
        self.considered = self.awareness >= self.threshold

    def before_step(self, st: CustomerState, sh: Shared, v: Variates, present: np.ndarray) -> None:
        """Move awareness by the step's news (fading, word of mouth, marketing, the customer's own purchases, a
        campaign's contact) and set the considered firms the customers choose among in this step."""
        a = self.awareness
        a *= self.keep
        if self.word_of_mouth_gain > 0:
            heard = sh.wom_pos + sh.wom_neg
            heard *= self.word_of_mouth_gain
            heard *= 1.0 - a
            a += heard
        exposed = (v.u_market < sh.reach[None, :]) & present[:, None] & sh.available[None, :]
        a += np.where(exposed, self.marketing_gain * (1.0 - a), 0.0)
        contacted = np.where(st.contacted_at == sh.t, st.offer_firm, -1)
        for firm in (st.current, st.step_firm, contacted):
            has = firm >= 0
            a[np.flatnonzero(has), firm[has]] = 1.0
        np.greater_equal(a, self.threshold, out=self.considered)
