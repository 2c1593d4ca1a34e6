"""Attainable rewards and spending headroom (ODD 3.3.31): what a points programme's pull on a member can be.

A goal pulls only if it can be reached: members accelerate toward a reward they can attain, and a reward out of
reach before the points expire exerts no pull (Kivetz, Urminsky & Zheng 2006: the goal gradient; Nunes & Drèze 2006:
the endowed-progress effect works through perceived attainability; the theory brief: high thresholds and expiry
"lose the near-high-value customers"). And a programme can only draw purchases a member still makes elsewhere: a
shopper who already gives a store all its category spend has nothing left to move (the headroom of share-of-wallet
programmes; Mägi 2003, Meyer-Waarden 2007).

With the mechanism on (``market.customers.attainable_rewards.enabled``), a points programme's pressure and its pull on
usage are scaled by the member's chance of attaining the next reward, and the pressure toward a seller by the share
of the member's category spend not yet there.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.arrays import select


def attainability(need: np.ndarray, points_year: np.ndarray, life: int | None, year: int) -> np.ndarray:
    """[n] how attainable the next reward is, 0..1: the points a member expects to earn from its own spending within a
    point's life (``life`` steps; ``None``: points never expire while the member keeps buying) over the points it
    still ``need``s, capped at 1. A member that needs nothing more (at or beyond its reward) has it within reach; one
    that earns nothing has no reward within reach."""
    earns = select(points_year > 0, np.inf, 0.0) if life is None else points_year * life / year
    return np.minimum(np.divide(earns, need, out=np.ones(need.shape), where=need > 0), 1.0)


def headroom(wallet_share: np.ndarray) -> np.ndarray:
    """[n] the share of a member's category spend a seller does not yet have: what its pressure can still draw."""
    return 1.0 - wallet_share
