"""Heterogeneous lifetimes (ODD 3.3.32): how long each customer stays in the market differs from customer to customer.

Without the mechanism every active customer leaves the market (a life event, 3.3.2) with one constant hazard,
``natural_churn``, whoever it is and however much it buys, so lifetimes are exponential with one mean. Customers'
lifetimes are heterogeneous (Schmittlein, Morrison & Colombo 1987; Fader, Hardie & Lee 2005), and how fast a
cohort's purchases decay depends on it: a mix of short- and long-lived customers loses its buyers quickly at first
and slowly later, which one hazard cannot do. Two forms, as in the two standard models of customer bases:

* ``kind = "hazard"`` (Pareto/NBD): customer i leaves with its own hazard μ_i, drawn once from a gamma distribution
  with the given mean (per unit of time) and shape s (the coefficient of variation is 1/√s: lower means more
  heterogeneous), so that its chance of leaving in a step is 1 − exp(−μ_i Δ), Δ the step length;
* ``kind = "after_purchase"`` (BG/NBD): after each purchase occasion customer i becomes inactive with its own
  probability p_i, drawn once from a beta distribution Beta(a, b), so that a customer who made k purchase occasions
  in the previous step leaves at the start of this step with probability 1 − (1 − p_i)^k. A customer who buys
  nothing does not leave: exits are tied to purchase occasions (and heavy buyers reveal their dropout sooner). As in
  the BG/NBD, a customer is alive at its first purchase and can drop out only after a repeat one: with arrivals over
  time (3.3.33), the purchase a customer makes on arriving is not followed by a dropout (its other occasions of that
  step are). Without arrivals every customer is in the market from the start with a history, and every occasion
  counts.

Either replaces ``natural_churn`` as the chance of leaving; ``reentry`` still brings customers out of the market back,
with the same propensity (set it to 0% for a cohort whose leavers never come back, as both models assume). The leave
uses the step's life-event uniform (3.3.2) as before; the propensities are drawn from the ``lifetimes`` stream at
initialisation and nothing else is random here, so switching the mechanism on shifts no other draw.
"""

from __future__ import annotations

import numpy as np


class Lifetimes:
    """Every customer's exit propensity and, each step, its chance of leaving the market."""

    def __init__(self, spec, n: int, unit: str, rng: np.random.Generator):
        self.kind = spec.kind
        if self.kind == "hazard":
            mean = spec.hazard.mean.per_step(unit)  # μ per step
            shape = spec.hazard.shape
            self.propensity = rng.gamma(shape, mean / shape, n)  # μ_i per step
            self._constant = -np.expm1(-self.propensity)  # 1 - exp(-μ_i)
        else:
            self.propensity = rng.beta(spec.dropout.a, spec.dropout.b, n)  # p_i per purchase occasion
            self._log_stay = np.log1p(-self.propensity)

    def leave_probability(self, purchases: np.ndarray, trial: np.ndarray | None = None) -> np.ndarray:
        """f8[n]: each customer's chance of leaving the market in this step (``purchases``: its purchase occasions in
        the previous step, which only the ``after_purchase`` kind reads; ``trial``: the customers whose first of
        those occasions was their first purchase, on arriving, which is not followed by a dropout)."""
        if self.kind == "hazard":
            return self._constant
        if trial is not None:
            purchases = np.maximum(purchases - trial, 0)  # the repeat occasions only
        return -np.expm1(purchases * self._log_stay)  # 1 - (1 - p_i)^k
