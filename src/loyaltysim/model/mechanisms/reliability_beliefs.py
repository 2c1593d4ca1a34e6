"""Reliability in choice (ODD 3.3.28): each customer's belief about each firm's service reliability.

Reliability, doing the service right the first time, is the SERVQUAL dimension customers weigh most (Parasuraman,
Zeithaml & Berry 1988; Zeithaml, Berry & Parasuraman 1996). Without this mechanism a service failure acts on
choice only through the quality belief it lowers, and a service upgrade (a win-back or save offer's guarantee, a
tier's priority service) only through a one-off repair of that belief. With it, each customer holds a belief about
the chance that a step's purchases at each firm go without a failure, learns it from its own purchases (a failure
is a lesson, softened when a complaint about it is resolved well), hears it from word of mouth (advocates vouch for
their firm, defectors warn against it), and weighs in choice the reliability it expects: the belief, raised while
it holds an offer's service upgrade or a programme's priority service at the firm, which remove a share of the
failures. A firm's real reliability (its own, or a service crisis) reaches choice through what its customers
experience and tell.

The customer state holds ``rel_belief`` [n, F]; :func:`start` sets it at initialisation; the customer rules
(:func:`loyaltysim.model.rules.step_customers`) apply :func:`hear`, :func:`expected` and :func:`learn` when the
mechanism is on.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import CustomerState


def start(st: CustomerState, reliability: np.ndarray, available: np.ndarray) -> None:
    """Starting beliefs: the firm a customer starts with is known from experience (its true reliability); any other
    firm is judged by the market's average reliability, the prior of a customer who has not tried it."""
    prior = float(reliability[available].mean())
    st.rel_belief[:] = prior
    rows = np.flatnonzero(st.current >= 0)
    st.rel_belief[rows, st.current[rows]] = reliability[st.current[rows]]


def hear(belief: np.ndarray, pos: np.ndarray, neg: np.ndarray, influence: float) -> np.ndarray:
    """Word of mouth: recommendations move the belief toward 1 and warnings toward 0, by ``influence`` times the
    share of neighbours talking (the same form as the quality belief's, 3.3.8)."""
    return belief + influence * (pos * (1.0 - belief) - neg * belief)


def expected(belief: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The reliability a customer expects: its belief, with a share ``removed`` of the failures it expects taken
    away by a service upgrade or priority service it holds at the firm."""
    return 1.0 - (1.0 - belief) * (1.0 - removed)


def learn(belief: np.ndarray, failed: np.ndarray, recovered: np.ndarray, buying: np.ndarray, alpha: float,
          recovery_credit: float) -> np.ndarray:
    """After a step's purchases: the belief moves a share ``alpha`` of the way to the outcome, 1 without a failure, 0
    after one, ``recovery_credit`` after one whose complaint was resolved well; unchanged without a purchase."""
    outcome = np.where(failed, np.where(recovered, recovery_credit, 0.0), 1.0)
    return np.where(buying, belief + alpha * (outcome - belief), belief)
