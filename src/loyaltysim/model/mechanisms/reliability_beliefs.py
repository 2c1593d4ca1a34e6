"""Reliability in choice (ODD 3.3.28): each customer's belief about each firm's service reliability.

Reliability, doing the service right the first time, is the SERVQUAL dimension customers weigh most (Parasuraman,
Zeithaml & Berry 1988; Zeithaml, Berry & Parasuraman 1996). Without this mechanism a service failure acts on
choice only through the quality belief it lowers, and a service upgrade (a win-back or save offer's guarantee, a
tier's priority service) only through a one-off repair of that belief. With it, each customer holds a belief about
the chance that a step's purchases at each firm go without a failure, learns it from its own purchases (a failure
is a lesson, softened when a complaint about it is resolved well), hears it from word of mouth (neighbours who talk
about a firm, advocates and those who warn against it alike, tell what they believe of its reliability, learned from
their own purchases), and weighs in choice the reliability it expects: the belief, raised while
it holds an offer's service upgrade or a programme's priority service at the firm, which remove a share of the
failures. A firm's real reliability (its own, or a service crisis) reaches choice through what its customers
experience and tell.

The customer state holds ``rel_belief`` [n, F]; :func:`start` sets it at initialisation; the customer rules
(:func:`loyaltysim.model.rules.step_customers`) apply :func:`hear`, :func:`expected` and :func:`learn` when the
mechanism is on; the market computes what is told (:func:`told`) once a step, into the shared state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.arrays import select
from loyaltysim.model.state import CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.word_of_mouth import WordOfMouth


def start(st: CustomerState, reliability: np.ndarray, available: np.ndarray) -> None:
    """Starting beliefs: the firm a customer starts with is known from experience (its true reliability); any other
    firm is judged by the market's average reliability, the prior of a customer who has not tried it."""
    prior = float(reliability[available].mean())
    st.rel_belief[:] = prior
    rows = np.flatnonzero(st.current >= 0)
    st.rel_belief[rows, st.current[rows]] = reliability[st.current[rows]]


def told(wom: WordOfMouth, st: CustomerState, n_firms: int) -> np.ndarray:
    """What each customer hears of each firm's reliability this step: [n, F] the sum, over its neighbours who spoke
    about the firm, of what each believes of the firm's reliability, divided by the customer's ties. The speakers are
    word of mouth's (3.3.5): advocates about their firm, the dissatisfied and defectors about the firm they warn
    against; each tells its own belief, from the previous step's state. The share of neighbours who spoke about each
    firm, which :func:`hear` also needs, is word of mouth's recommending plus warning shares."""
    recommend, cur, warn, about = wom.spoken
    belief = st.rel_belief.T  # [F, n]: the state keeps the beliefs column-major
    return (wom.heard(recommend, cur, n_firms, told_of=belief) + wom.heard(warn, about, n_firms, told_of=belief))


def hear(belief: np.ndarray, share: np.ndarray, said: np.ndarray, influence: float,
         out: np.ndarray | None = None) -> np.ndarray:
    """Word of mouth: the belief moves toward what the neighbours who spoke of the firm believe, by ``influence``
    times the share of neighbours who spoke (``said`` sums their beliefs over the customer's ties): a customer
    whose whole neighbourhood spoke moves ``influence`` of the way to their mean belief. Unlike the quality belief's
    recommendations and warnings (3.3.8), which push toward 1 or 0, what is told here is a reliability learned from
    experience, so word of mouth spreads it without drifting it. ``out``: where to write it (it may be ``belief``)."""
    return np.add(belief, influence * (said - share * belief), out=out)


def expected(belief: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The reliability a customer expects: its belief, with a share ``removed`` of the failures it expects taken
    away by a service upgrade or priority service it holds at the firm."""
    return 1.0 - (1.0 - belief) * (1.0 - removed)


def learn(belief: np.ndarray, failed: np.ndarray, recovered: np.ndarray, buying: np.ndarray, alpha: float,
          recovery_credit: float) -> np.ndarray:
    """After a step's purchases: the belief moves a share ``alpha`` of the way to the outcome, 1 without a failure, 0
    after one, ``recovery_credit`` after one whose complaint was resolved well; unchanged without a purchase."""
    outcome = select(failed, select(recovered, recovery_credit, 0.0), 1.0)
    return select(buying, belief + alpha * (outcome - belief), belief)
