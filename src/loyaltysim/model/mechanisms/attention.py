"""Limited attention to marketing (ODD 3.3.25): advertising clutter.

Each firm's marketing reaches a customer with the firm's own per-step chance (its reach). A customer, though,
notices only so many messages: in a cluttered market each message is less likely to be noticed, and what is
noticed is shared among the firms by their share of voice (Webb & Ray 1979; Pieters, Warlop & Wedel 2002). So the
chance of meeting some rival's offer, which prompts a satisfied customer to reconsider, is bounded by the
customer's attention however many rivals advertise, instead of growing with their number.

Here the expected number of messages a customer notices in a step is the sum of the firms' chances of being
noticed; while the firms' combined reach is within the capacity, each is noticed with its reach (as without the
mechanism); beyond it, every firm's chance is scaled by capacity / combined reach, so each keeps its share of
voice and the total is the capacity.
"""

from __future__ import annotations

import numpy as np


def noticed_reach(reach: np.ndarray, available: np.ndarray, capacity: float | None) -> np.ndarray:
    """[F] each firm's per-step chance of being noticed by a customer, from its reach [F], which firms are in the
    market [F] and the most messages a customer notices in a step (``None``: no limit, the reach itself)."""
    if capacity is None:
        return reach
    voice = float(reach[available].sum())
    if voice <= capacity:
        return reach
    return reach * (capacity / voice)
