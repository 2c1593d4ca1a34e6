"""Persistent brand tastes (ODD 3.3.29): each customer's own, lasting propensity toward each firm of a repertoire
market, so that customers hold stable, heterogeneous repertoires of a few firms rather than sampling all of them.

In the Dirichlet model of repeat buying (Goodhardt, Ehrenberg & Chatfield 1984; Ehrenberg 1988) each customer buys
brand j with its own, steady probability π_ij, and the vectors π_i vary across customers as a Dirichlet
distribution whose polarisation φ = 1 / (1 + S) says how unlike each other customers are (φ near 0: everyone buys
every brand alike; near 1: each customer sticks to one brand). Here π_i is drawn once per customer from a symmetric
Dirichlet with that polarisation (each firm's parameter S / F: tastes favour no firm on average, so brand sizes still
come from quality, price and everything else), and it enters every choice of the customer as the utility term

    τ_ij = w · σ · log(F π_ij),

with σ the logit's choice noise and w = ``market.tastes.weight``: at w = 1 a customer choosing among firms that are
otherwise equal picks firm j with probability π_ij exactly (the Gumbel-max rule turns σ log π into π), and firms that
differ add their utility on top. log(F π) is floored at log 1e-12 (a firm the customer all but never picks).

With ``drift_half_life`` set, tastes move slowly: each step a customer renews its whole propensity vector (a fresh
draw from the same Dirichlet) with probability α(h), h the half-life in steps, so the population's tastes keep the
same distribution while each customer's tastes decorrelate with that half-life (life changes, new needs). The draws
come from the ``tastes`` stream alone (the initial draw first, then one uniform per customer per step and a vector
for each customer renewed), so switching the mechanism on shifts no other draw.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import half_life_weight

LOG_FLOOR = float(np.log(1e-12))  # the least log(F π) counted: a firm the customer all but never picks


def log_dirichlet(rng: np.random.Generator, alpha: float, size: int, n_firms: int) -> np.ndarray:
    """[size, F] logs of draws from a symmetric Dirichlet(alpha, ..., alpha), exact even for tiny alpha.

    A gamma(alpha) variate is drawn as gamma(alpha + 1) · U^(1/alpha) (Marsaglia & Tsang 2000) and kept in logs, so
    a strongly polarised Dirichlet (alpha far below 1, whose gamma variates underflow to 0) still gives finite logs.
    """
    log_g = np.log(rng.gamma(alpha + 1.0, 1.0, (size, n_firms))) + np.log(rng.random((size, n_firms))) / alpha
    top = log_g.max(axis=1, keepdims=True)
    return log_g - (top + np.log(np.exp(log_g - top).sum(axis=1, keepdims=True)))


class Tastes:
    """Every customer's brand propensities π [n, F] and the utility τ [n, F] they add to each firm's choice."""

    def __init__(self, spec, n: int, n_firms: int, choice_noise: float, unit: str, rng: np.random.Generator):
        self.n_firms = n_firms
        self.concentration = (1.0 - spec.polarisation) / spec.polarisation  # the Dirichlet's S
        self.alpha = self.concentration / n_firms
        self.scale = spec.weight * choice_noise
        drift = spec.drift_half_life
        self.renewal = 0.0 if drift is None else half_life_weight(drift.steps(unit))
        self.rng = rng
        self.log_propensity = log_dirichlet(rng, self.alpha, n, n_firms)
        self.utility = self.taste_utility(self.log_propensity)

    @property
    def propensity(self) -> np.ndarray:
        """π [n, F]: each customer's propensity toward each firm (rows sum to 1)."""
        return np.exp(self.log_propensity)

    def taste_utility(self, log_propensity: np.ndarray) -> np.ndarray:
        """τ = w σ log(F π), floored (see the module's docstring)."""
        return self.scale * np.maximum(log_propensity + np.log(self.n_firms), LOG_FLOOR)

    def before_step(self) -> None:
        """Tastes drift: the customers whose renewal uniform falls below α(h) draw a fresh propensity vector."""
        if self.renewal <= 0.0:
            return
        n = self.log_propensity.shape[0]
        who = np.flatnonzero(self.rng.random(n) < self.renewal)
        if who.size:
            fresh = log_dirichlet(self.rng, self.alpha, who.size, self.n_firms)
            self.log_propensity[who] = fresh
            self.utility[who] = self.taste_utility(fresh)
