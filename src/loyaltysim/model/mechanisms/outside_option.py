"""The outside option (ODD 3.3.34): a searching customer may choose none of the modelled firms.

Without it a searching customer always chooses one of the firms, so a market needs two of them. Real customers can
buy elsewhere (a store the model does not hold, another channel) or not at all; with the outside option on, the logit
choice (3.3.9) has one more alternative, j = 0, whose utility is the constant U<sub>0</sub> = ``utility`` plus its own
Gumbel shock scaled by the choice noise, σ G<sub>i0</sub>, with G<sub>i0</sub> drawn each step for every customer
from the ``outside_option`` stream (so no other draw moves). The customer takes the outside option when its value is
above every firm's score (ties go to the firms). Choosing it means having no firm after the step and buying nothing
from the modelled firms; a customer that had a firm leaves it for "none" (a switch, with its cause, 3.3.11). It then
behaves as any customer without a firm: it searches at once (contractual) or at its next purchase occasion
(repertoire). A market with one firm is then allowed.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import NO_FIRM


class OutsideOption:
    """The outside option's utility, and each step's value of it to every customer."""

    def __init__(self, spec, choice_noise: float, rng: np.random.Generator):
        self.utility = float(spec.utility)
        self.noise = float(choice_noise)
        self.rng = rng

    def draw(self, n: int) -> np.ndarray:
        """f8[n]: the outside option's value to each customer this step, U_0 + σ G_i0 (drawn for every customer)."""
        value = self.noise * self.rng.gumbel(size=n)
        value += self.utility
        return value


def choose(score: np.ndarray, choice: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """[m] the choice among the firms (``choice``, the index of the best of ``score`` [F, m]), or NO_FIRM where the
    outside option's value ``outside`` [m] is above every firm's score."""
    return np.where(outside > score.max(axis=0), NO_FIRM, choice).astype(np.int32)
