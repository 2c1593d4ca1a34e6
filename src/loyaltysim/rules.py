"""Customer behaviour rules, written once as functions over arrays.

:func:`step_customers` advances the customers in ``rows`` (a slice) by one step. The vectorized market calls
it once with ``slice(None)``; the one-at-a-time path calls it for each :class:`~loyaltysim.agents.Customer`
with ``slice(i, i + 1)``. Each customer reads only its own row, the variates drawn for the step and the
shared state of the previous step, and every cross-row sum (word of mouth, firm totals) is computed outside,
so both paths give the same numbers. All arithmetic is elementwise or a sum over a customer's own short
axes, in a fixed order.

A step, for each customer:

1. **Life events** take an active customer out of the market (natural churn) or bring one back as a prospect.
2. **Beliefs** about each firm's quality move with word of mouth (advocates recommend, defectors warn) and
   with exposure to firms' marketing, which reveals a firm's true quality.
3. **Search and choice.** Below its satisfaction threshold (the lower edge of the zone of tolerance;
   Zeithaml, Berry & Parasuraman 1993) a customer searches often; above it rarely (inertia). A searching
   customer chooses by multinomial logit (McFadden 1974) over perceived quality, price and the switching cost
   of leaving its current firm. In a repertoire market a customer chooses only when it has an occasion.
4. **Purchase and experience.** Purchases come from Poisson occasions with a gamma-mixed mean (NBD). A
   purchase may fail (reliability); recovery repairs part of the damage. Satisfaction is disconfirmation of
   expectations (Oliver 1980) through Kano-shaped responses (Kano et al. 1984), losses weighted by loss
   aversion (Anderson & Sullivan 1993), smoothed over time. Expectations and perceived quality adapt toward
   experience.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np

NO_FIRM = -1
NEVER = -(2**30)  # "step of last event" for events that never happened

MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE = 0, 1, 2
KANO_CODES = {"must_be": MUST_BE, "one_dimensional": ONE_DIMENSIONAL, "attractive": ATTRACTIVE}


class Cause(IntEnum):
    """Why a customer defected: the textbook's seven causes of churn, plus a competitor's pull.

    One cause per defection, assigned by :func:`defection_cause` from the state and event that produced it.
    """

    NONE = 0
    NEEDS_NOT_MET = 1
    MANAGER_LEFT = 2
    COMPETITOR_OFFER = 3
    PRICE_RISE = 4
    SERVICE_FAILURE = 5
    INTEGRITY_BREACH = 6
    MARKET_FLUCTUATION = 7
    NATURAL_CHURN = 8


@dataclass
class CustomerState:
    """The population's state: one row per customer, one column per firm (F) or attribute (A).

    Traits are drawn once; dynamic fields change each step; the ``step_*`` fields hold what happened in the
    last step and are overwritten by the next.
    """

    # traits
    purchase_rate: np.ndarray  # f8[n] expected occasions per step
    price_sensitivity: np.ndarray  # f8[n]
    weights: np.ndarray  # f8[n, A] attribute importance, rows sum to 1
    threshold: np.ndarray  # f8[n] satisfaction threshold
    # dynamic
    active: np.ndarray  # bool[n] in the market
    current: np.ndarray  # i4[n] provider (contractual) or habitual firm (repertoire); -1 none
    tenure: np.ndarray  # i4[n] steps with the current firm
    expectation: np.ndarray  # f8[n, A] expected attribute levels
    perceived: np.ndarray  # f8[n, F] perceived quality of each firm, 0..1
    satisfaction: np.ndarray  # f8[n, F] smoothed satisfaction with each firm (0: expectations just met)
    wallet: np.ndarray  # f8[n, F] decayed purchase counts (share of wallet)
    last_buy: np.ndarray  # i4[n, F] step of the last purchase at each firm
    since: np.ndarray  # i4[n, F] step the current relationship with each firm began
    last_failure: np.ndarray  # i4[n] step of the last service failure
    switch_cause: np.ndarray  # i1[n] cause of the latest change of firm
    last_score: np.ndarray  # i1[n] last 1-5 survey answer (0: never asked)
    # what happened in the last step
    step_purchases: np.ndarray  # i4[n]
    step_failed: np.ndarray  # bool[n]
    step_left: np.ndarray  # i4[n] firm the customer left this step (switch or exit), -1 none
    step_cause: np.ndarray  # i1[n] cause of that departure
    step_gained: np.ndarray  # i4[n] firm that won the customer this step, -1 none

    @classmethod
    def allocate(cls, n: int, n_firms: int, n_attributes: int) -> CustomerState:
        f8 = np.float64
        return cls(
            purchase_rate=np.zeros(n, f8),
            price_sensitivity=np.zeros(n, f8),
            weights=np.zeros((n, n_attributes), f8),
            threshold=np.zeros(n, f8),
            active=np.ones(n, bool),
            current=np.full(n, NO_FIRM, np.int32),
            tenure=np.zeros(n, np.int32),
            expectation=np.zeros((n, n_attributes), f8),
            perceived=np.zeros((n, n_firms), f8),
            satisfaction=np.zeros((n, n_firms), f8),
            wallet=np.zeros((n, n_firms), f8),
            last_buy=np.full((n, n_firms), NEVER, np.int32),
            since=np.full((n, n_firms), NEVER, np.int32),
            last_failure=np.full(n, NEVER, np.int32),
            switch_cause=np.zeros(n, np.int8),
            last_score=np.zeros(n, np.int8),
            step_purchases=np.zeros(n, np.int32),
            step_failed=np.zeros(n, bool),
            step_left=np.full(n, NO_FIRM, np.int32),
            step_cause=np.zeros(n, np.int8),
            step_gained=np.full(n, NO_FIRM, np.int32),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __len__(self) -> int:
        return self.active.shape[0]


@dataclass(frozen=True)
class Params:
    """Behavioural constants of one run, already converted to the step length."""

    contractual: bool
    lapse_steps: int
    quality_weight: float
    choice_noise: float
    loss_aversion: float
    sat_alpha: float  # smoothing weight of a new experience
    expect_alpha: float
    learn_alpha: float
    wallet_decay: float
    p_search_satisfied: float
    p_search_dissatisfied: float
    p_leave: float
    p_enter: float
    failure_severity: float
    marketing_effect: float
    wom_influence: float
    attribution_steps: int


@dataclass
class Shared:
    """What every customer reads in a step: the firms' offers and the previous step's social signals."""

    t: int
    price: np.ndarray  # f8[F]
    price_ref: float
    levels: np.ndarray  # f8[F, A]
    kano: np.ndarray  # i1[A]
    reliability: np.ndarray  # f8[F]
    recovery: np.ndarray  # f8[F]
    reach: np.ndarray  # f8[F] per-step chance of marketing exposure
    price_rose: np.ndarray  # bool[F] price raised within the attribution window
    switching_cost: float
    wom_pos: np.ndarray  # f8[n, F] share of neighbours recommending each firm
    wom_neg: np.ndarray  # f8[n, F] share of neighbours warning against each firm


@dataclass
class Variates:
    """The random numbers of one step, drawn for the whole population whatever happens."""

    occasions: np.ndarray  # i8[n]
    u_search: np.ndarray  # f8[n]
    gumbel: np.ndarray  # f8[n, F]
    u_fail: np.ndarray  # f8[n]
    u_market: np.ndarray  # f8[n, F]
    u_life: np.ndarray  # f8[n]


# --- pure rules -----------------------------------------------------------------------------------------


def half_life_weight(half_life_steps: int) -> float:
    """Weight of a new observation in exponential smoothing with the given half-life in steps."""
    return 1.0 - 0.5 ** (1.0 / max(half_life_steps, 1))


def kano_response(gap: np.ndarray, kano: np.ndarray, loss_aversion: float) -> np.ndarray:
    """Satisfaction response to the gap ``performance - expectation`` of each attribute (Kano et al. 1984).

    Must-be: a loss below expectation, nothing above. One-dimensional: linear both ways. Attractive: a gain
    above expectation, nothing below. Losses are multiplied by ``loss_aversion`` (Anderson & Sullivan 1993).
    """
    loss = loss_aversion * np.minimum(gap, 0.0)
    gain = np.maximum(gap, 0.0)
    return np.where(kano == MUST_BE, loss, np.where(kano == ATTRACTIVE, gain, loss + gain))


def weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row-wise sum of ``weights * values`` over the last axis, in a fixed order (no BLAS)."""
    return (weights * values).sum(axis=-1)


def quality_index(weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each customer's importance-weighted quality of each firm: f8[m, F] from weights [m, A], levels [F, A]."""
    return weighted_sum(weights[:, None, :], levels[None, :, :])


def logit_choice(utility: np.ndarray, gumbel: np.ndarray, noise: float) -> np.ndarray:
    """Multinomial logit choice by the Gumbel-max rule: argmax of utility plus scaled Gumbel shocks."""
    return np.argmax(utility + noise * gumbel, axis=1).astype(np.int32)


def defection_cause(
    life_event: np.ndarray, dissatisfied: np.ndarray, recent_failure: np.ndarray, price_rose: np.ndarray
) -> np.ndarray:
    """The one cause recorded for a departure, by a fixed order of precedence.

    A life event is natural churn. A dissatisfied customer with a recent service failure left over the
    failure. A recent price rise by the firm left explains the rest of the departures it could have pushed.
    Other dissatisfied customers left because their needs were no longer met; satisfied ones were pulled
    away by a competitor's offer (the "satisfied defector" of Reichheld 1993).
    """
    return np.select(
        [life_event, dissatisfied & recent_failure, price_rose, dissatisfied],
        [Cause.NATURAL_CHURN, Cause.SERVICE_FAILURE, Cause.PRICE_RISE, Cause.NEEDS_NOT_MET],
        default=Cause.COMPETITOR_OFFER,
    ).astype(np.int8)


def survey_score(satisfaction: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
    """A 1-5 answer: 1 plus the number of cutpoints the (noisy) satisfaction reaches."""
    return (1 + (satisfaction[:, None] >= cutpoints[None, :]).sum(axis=1)).astype(np.int8)


def recommend_score(satisfaction: np.ndarray, scale: float) -> np.ndarray:
    """A 0-10 likelihood-to-recommend answer (the NPS item)."""
    return np.clip(np.rint(7.0 + scale * satisfaction), 0, 10).astype(np.int8)


# --- the step ---------------------------------------------------------------------------------------------


def step_customers(st: CustomerState, rows: slice, v: Variates, sh: Shared, p: Params) -> None:
    """Advance the customers in ``rows`` by one step, in place."""
    t = sh.t
    n_firms = sh.price.shape[0]
    firm_ids = np.arange(n_firms)
    # copies: these rows are overwritten below while the old values are still needed
    active = st.active[rows].copy()
    cur = st.current[rows].copy()
    m = cur.shape[0]
    idx = np.arange(m)

    # 1. life events
    u_life = v.u_life[rows]
    leave = active & (u_life < p.p_leave)
    enter = ~active & (u_life < p.p_enter)
    present = (active & ~leave) | enter
    had = cur >= 0
    cur_safe = np.where(had, cur, 0)

    # 2. beliefs: word of mouth, then marketing exposure (both before choosing)
    perceived = st.perceived[rows]
    perceived = perceived + p.wom_influence * (sh.wom_pos[rows] * (1.0 - perceived) - sh.wom_neg[rows] * perceived)
    weights = st.weights[rows]
    quality = quality_index(weights, sh.levels)
    exposed = (v.u_market[rows] < sh.reach[None, :]) & present[:, None]
    perceived = np.where(exposed, perceived + p.marketing_effect * (quality - perceived), perceived)

    # 3. search and choice
    k = v.occasions[rows]
    satisfaction = st.satisfaction[rows]
    sat_current = np.where(had, satisfaction[idx, cur_safe], 0.0)
    dissatisfied = had & (sat_current < st.threshold[rows])
    p_search = np.where(dissatisfied, p.p_search_dissatisfied, p.p_search_satisfied)
    staying = present & had & ~leave
    can_choose = present if p.contractual else present & (k > 0)
    search = can_choose & (~staying | (v.u_search[rows] < p_search))
    relative_price = sh.price / sh.price_ref - 1.0
    utility = (
        p.quality_weight * perceived
        - st.price_sensitivity[rows][:, None] * relative_price[None, :]
        + sh.switching_cost * ((firm_ids[None, :] == cur[:, None]) & staying[:, None])
    )
    choice = logit_choice(utility, v.gumbel[rows], p.choice_noise)
    new = np.where(search, choice, np.where(leave, NO_FIRM, cur)).astype(np.int32)
    changed = new != cur
    left = had & changed
    recent_failure = (t - st.last_failure[rows]) <= p.attribution_steps
    cause = np.where(
        left, defection_cause(leave, dissatisfied, recent_failure, sh.price_rose[cur_safe]), Cause.NONE
    ).astype(np.int8)

    # 4. purchase and experience at the (new) current firm
    has_new = new >= 0
    new_safe = np.where(has_new, new, 0)
    buying = present & has_new & (k > 0)
    purchases = np.where(buying, k, 0).astype(np.int32)
    failed = buying & (v.u_fail[rows] >= sh.reliability[new_safe])
    damage = np.where(failed, p.failure_severity * (1.0 - sh.recovery[new_safe]), 0.0)
    offered = sh.levels[new_safe]
    expectation = st.expectation[rows]
    experienced = weighted_sum(weights, kano_response(offered - expectation, sh.kano, p.loss_aversion)) - damage
    old = satisfaction[idx, new_safe]
    satisfaction[idx, new_safe] = np.where(buying, old + p.sat_alpha * (experienced - old), old)
    expectation = np.where(buying[:, None], expectation + p.expect_alpha * (offered - expectation), expectation)
    belief = perceived[idx, new_safe]
    target = quality[idx, new_safe] - damage
    perceived[idx, new_safe] = np.where(buying, belief + p.learn_alpha * (target - belief), belief)
    previous_buy = st.last_buy[rows][idx, new_safe]
    bought = buying[:, None] & (firm_ids[None, :] == new[:, None])
    wallet = p.wallet_decay * st.wallet[rows] + np.where(bought, purchases[:, None], 0)
    if p.contractual:
        gained = np.where(changed & has_new, new, NO_FIRM)
    else:  # won anew or back: a purchase by someone who was not a customer at the end of the last step
        gained = np.where(buying & (t - previous_buy > p.lapse_steps), new, NO_FIRM)

    # write back
    st.active[rows] = present
    st.current[rows] = new
    st.tenure[rows] = np.where(has_new, np.where(changed, 1, st.tenure[rows] + 1), 0)
    st.perceived[rows] = perceived
    st.satisfaction[rows] = satisfaction
    st.expectation[rows] = expectation
    st.wallet[rows] = wallet
    st.last_buy[rows] = np.where(bought, t, st.last_buy[rows])
    st.since[rows] = np.where((firm_ids[None, :] == gained[:, None]), t, st.since[rows])
    st.last_failure[rows] = np.where(failed, t, st.last_failure[rows])
    st.switch_cause[rows] = np.where(left, cause, st.switch_cause[rows])
    st.step_purchases[rows] = purchases
    st.step_failed[rows] = failed
    st.step_left[rows] = np.where(left, cur, NO_FIRM)
    st.step_cause[rows] = cause
    st.step_gained[rows] = gained
