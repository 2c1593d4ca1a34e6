"""Expectations that adapt to the whole market (ODD 3.3.27).

Expectations of known needs (must-be and one-dimensional attributes) are shaped by what the customer experiences
and by what the market offers (Oliver 1980; the theory brief's "expectations keep rising, shaped by the firm and its
competitors"). Without this mechanism they rise toward the best offer in the market and never fall toward it: a
ratchet, under which mean satisfaction keeps drifting down for years after the start and results depend on the
horizon. With it, they move toward the market's reference level in both directions: a mix of the best offer and the
average offer customers actually get (each firm's levels weighted by its share of the customers), so they rise when
the market's offers rise (a rival's improvement, an industry-wide investment) and fall back when the market offers
less, and the market settles into a steady state after the warm-up.

The reference is computed once a step from the previous step's customers (who is with which firm) and the firms'
current levels, so both paths of the customer step read the same numbers.
"""

from __future__ import annotations

import numpy as np


def reference_levels(levels: np.ndarray, available: np.ndarray, current: np.ndarray, active: np.ndarray,
                     best_weight: float) -> np.ndarray:
    """[A] the market's reference level of each attribute: ``best_weight`` times the best level offered by a firm in
    the market (``levels`` [F, A], ``available`` [F]) plus the rest times the average level the market's customers
    get (the firms' levels weighted by their customers, ``current`` [n] among the ``active`` [n]; the plain mean of
    the firms in the market while nobody has a firm)."""
    counts = np.bincount(current[active & (current >= 0)], minlength=levels.shape[0])[: levels.shape[0]]
    counts = np.where(available, counts, 0)
    weights = counts / counts.sum() if counts.sum() > 0 else available / available.sum()
    average = weights @ levels
    best = levels[available].max(axis=0)
    return best_weight * best + (1.0 - best_weight) * average
