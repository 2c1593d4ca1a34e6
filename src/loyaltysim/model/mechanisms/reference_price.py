"""Perceived value against a reference price (ODD 3.3.26).

Perceived value is what a customer gets for what it gives (Zeithaml 1988). Each customer holds an internal
reference price for the category that adapts to the prices it pays, discounts included, by exponential smoothing
(Winer 1986; Kalyanaram & Winer 1995). Paying less than the reference is a gain and paying more a loss that weighs
more than a gain of the same size (Kalyanaram & Winer 1995; Anderson & Sullivan 1993 for quality). Two things
follow that a fixed reference price cannot show: a price rise dissatisfies the firm's customers until their
reference catches up, and the end of a temporary discount (a win-back or save offer, a member discount lost) is
felt as a loss, because the discount had lowered the reference.

The customer rules (:func:`loyaltysim.model.rules.step_customers`) use the reference price in two places when the
mechanism is on: in choice, a firm's price counts relative to the customer's own reference instead of the market's
average starting price; and in satisfaction, value for money is added to the experience of each purchase. The
customer state holds ``ref_price`` [n] (money per unit), set here at initialisation to the price of the customer's
first firm.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.arrays import select
from loyaltysim.model.state import CustomerState


def start(st: CustomerState, prices: np.ndarray, elsewhere: float | None = None) -> None:
    """Each customer's starting reference: the price of the firm it starts with (for a customer without one, the
    market's average price, or the price ``elsewhere`` that the outside option gives)."""
    has = st.current >= 0
    st.ref_price[:] = np.where(has, prices[np.where(has, st.current, 0)],
                               prices.mean() if elsewhere is None else elsewhere)


def value_response(paid: np.ndarray, reference: np.ndarray, weight: float, loss_aversion: float) -> np.ndarray:
    """Satisfaction from value for money: ``weight`` per 100% of the price paid below the reference, and
    ``loss_aversion`` times that per 100% above it."""
    gap = (reference - paid) / reference
    return weight * select(gap < 0.0, loss_aversion * gap, gap)


def adapt(reference: np.ndarray, paid: np.ndarray, buying: np.ndarray, alpha: float) -> np.ndarray:
    """The reference after a step: a share ``alpha`` of the way to the price paid, for the customers who bought."""
    return select(buying, reference + alpha * (paid - reference), reference)
