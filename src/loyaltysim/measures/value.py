"""Customer lifetime value (CLV), for first and second lifetimes.

The formula (Gupta & Lehmann 2003; Berger & Nasr 1998): a customer who brings margin ``m`` each period, stays
each further period with probability ``r`` and whose value is discounted at ``d`` per period is worth, over
``T`` periods with the first margin now,

    CLV = sum_{t=0}^{T-1} m * r**t / (1 + d)**t  =  m * (1 - q**T) / (1 - q),   q = r / (1 + d),

and with no horizon (T infinite) m * (1 + d) / (1 + d - r). The expected lifetime is 1 / (1 - r) periods
(Reichheld & Sasser 1990). A second lifetime, after a customer is won back, is valued the same way with its own
margin and retention (Stauss & Friege 1999); the return on regain investment is (second-lifetime value - campaign
cost) / campaign cost.
"""

from __future__ import annotations

import math
from typing import Literal


def clv(margin: float, retention: float, discount_rate: float, periods: int | None = None) -> float:
    """Value of a customer: ``margin`` per period, retained with probability ``retention`` each period,
    discounted at ``discount_rate`` per period, over ``periods`` periods (None: no horizon)."""
    if not 0.0 <= retention <= 1.0:
        raise ValueError(f"retention must lie in [0, 1], got {retention}")
    if discount_rate <= -1.0:
        raise ValueError(f"discount_rate must be above -1, got {discount_rate}")
    q = retention / (1.0 + discount_rate)
    if periods is None:
        if q >= 1.0:
            raise ValueError("with no horizon the value is infinite unless retention < 1 + discount_rate")
        return margin / (1.0 - q)
    if periods < 0:
        raise ValueError(f"periods must be >= 0, got {periods}")
    return margin * periods if math.isclose(q, 1.0) else margin * (1.0 - q**periods) / (1.0 - q)


def expected_lifetime(retention: float) -> float:
    """Expected number of periods a customer stays, 1 / (1 - retention) (infinite at retention 1)."""
    return math.inf if retention >= 1.0 else 1.0 / (1.0 - retention)


def return_on_regain(second_lifetime_value: float, campaign_cost: float, *,
                     without_cost: Literal["raise", "nan"] = "raise") -> float:
    """(second-lifetime value - campaign cost) / campaign cost (Stauss & Friege 1999).

    The return is undefined when nothing was spent (``campaign_cost <= 0``): by default that is an error (a caller
    analysing one campaign passes its cost); ``without_cost="nan"`` returns NaN instead, as the outcome
    ``return_on_regain`` of a run in which a firm's campaign cost nothing does.
    """
    if campaign_cost <= 0:
        if without_cost == "nan":
            return math.nan
        raise ValueError(f"campaign cost must be positive, got {campaign_cost}")
    return (second_lifetime_value - campaign_cost) / campaign_cost
