"""Customer behaviour rules, written once as functions over arrays.

:func:`step_customers` advances the customers in ``rows`` (a slice) by one step. The vectorized market calls
it once with ``slice(None)``; the one-at-a-time path calls it for each :class:`~loyaltysim.model.agents.Customer`
with ``slice(i, i + 1)``. Each customer reads only its own row, the variates drawn for the step and the
shared state of the previous step, and every cross-row sum (word of mouth, firm totals, expectations of the
population) is computed outside, so both paths give the same numbers. All arithmetic is elementwise or a sum
over a customer's own short axes, in a fixed order.

A step, for each customer:

1. **Life events** take an active customer out of the market (natural churn) or bring one back as a prospect.
2. **Beliefs** about each firm's quality move with word of mouth (advocates recommend, defectors warn) and
   with exposure to firms' marketing, which reveals a firm's true quality.
3. **Search and choice.** Below its satisfaction threshold (the lower edge of the zone of tolerance;
   Zeithaml, Berry & Parasuraman 1993) a customer searches often; above it rarely, and the less the more
   attitudinally loyal it is (inertia), though a rival's offer met in its marketing can still make it
   reconsider. A searching customer chooses by multinomial logit (McFadden 1974) over perceived quality,
   price and, for its current firm, the switching cost (procedural, financial, relational: Burnham, Frels &
   Mahajan 2003) and the relationship premium of attitudinal loyalty (Dick & Basu 1994). In a repertoire
   market a customer chooses only when it has an occasion, and a variety seeker sometimes buys elsewhere.
4. **Purchase and experience.** Occasions are Poisson with a gamma-mixed mean (NBD; Ehrenberg 1959). A
   purchase may fail (reliability); the customer may complain, and a complaint resolved well can leave
   satisfaction higher than no failure at all (the recovery paradox; McCollough & Bharadwaj 1992), one
   handled badly hurts more than silence. Satisfaction is disconfirmation of expectations (Oliver 1980)
   through Kano-shaped responses (Kano et al. 1984) with loss aversion (Anderson & Sullivan 1993), smoothed
   over time. Expectations rise toward what is experienced and toward the best offer in the market.
5. **Attitude.** Attitudinal loyalty grows while the customer is delighted, falls fast while dissatisfied and
   fades slowly while merely satisfied (Jones & Sasser 1995: only the completely satisfied are truly loyal).
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.arrays import Mask, flat_index, pick, place, select, take
from loyaltysim.model.mechanisms import outside_option, reference_price, reliability_beliefs
from loyaltysim.model.state import (
    ATTRACTIVE,
    MUST_BE,
    NO_FIRM,
    Cause,
    CustomerState,
    Params,
    Shared,
    Variates,
)

# --- pure rules -----------------------------------------------------------------------------------------


def attribute_response(gap: np.ndarray, kano_class: int, loss_aversion: float) -> np.ndarray:
    """Satisfaction response to the gaps ``performance - expectation`` on one attribute of Kano class
    ``kano_class`` (Kano et al. 1984).

    Must-be: a loss below expectation, nothing above. One-dimensional: linear both ways. Attractive: a gain
    above expectation, nothing below. Losses are multiplied by ``loss_aversion`` (Anderson & Sullivan 1993).
    """
    if kano_class == ATTRACTIVE:
        return np.maximum(gap, 0.0)
    loss = np.minimum(gap, 0.0)
    loss *= loss_aversion
    if kano_class == MUST_BE:
        return loss
    loss += np.maximum(gap, 0.0)
    return loss


def row_total(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, e.g. a customer's wallet over the firms: the same numbers as ``x.sum(axis=-1)``
    (which adds fewer than 8 terms one after another), several times faster on a short axis."""
    if x.shape[-1] >= 8 or x.shape[-1] == 0:
        return x.sum(axis=-1)
    total = x[..., 0].copy()
    for k in range(1, x.shape[-1]):
        total += x[..., k]
    return total


def weighted_response(weights: np.ndarray, gap: np.ndarray, kano: np.ndarray, loss_aversion: float,
                      kano_class: int | None = None) -> np.ndarray:
    """[m] importance-weighted Kano responses to the gaps [m, A], summed over the attributes (of one class only
    when ``kano_class`` is given; zero if it has none): how the offer meets the customer's expectations.

    Sums here and in :func:`quality_index` add attribute by attribute in order, so a customer stepped alone gets
    the numbers it gets in a crowd (no BLAS, no pairwise summation)."""
    return attribute_sum(weights.T, gap.T, kano, loss_aversion, kano_class)


def attribute_sum(weights: np.ndarray, gap: np.ndarray, kano: np.ndarray, loss_aversion: float,
                  kano_class: int | None = None) -> np.ndarray:
    """:func:`weighted_response` of attribute-major weights and gaps ([A, m]: one row per attribute)."""
    total = None
    for a in range(gap.shape[0]):
        if kano_class is None or kano[a] == kano_class:
            term = attribute_response(gap[a], int(kano[a]), loss_aversion)
            term *= weights[a]
            if total is None:
                total = term
            else:
                total += term
    return np.zeros(gap.shape[1]) if total is None else total


def quality_index(weights: np.ndarray, levels: np.ndarray, expectation: np.ndarray, kano: np.ndarray,
                  loss_aversion: float) -> np.ndarray:
    """How good each firm's offer is to each customer, 0..1 scale: [m, F] from weights [m, A], levels [F, A] and
    expectations [m, A].

    Customers judge an offer against what they expect, through the same Kano shapes as satisfaction: each
    attribute counts as the expectation plus the Kano response to the gap, so a must-be attribute beyond
    expectation adds nothing, a shortfall costs loss-aversion times its size, and an attractive attribute adds
    what it exceeds the expectation by (Kano et al. 1984; Anderson & Sullivan 1993). Summed attribute by attribute
    over [m, F] arrays, in the order of :func:`weighted_response`.
    """
    return judged_quality(firm_major(weights), levels, firm_major(expectation), kano, loss_aversion).T


def judged_quality(weights: np.ndarray, levels: np.ndarray, expectation: np.ndarray, kano: np.ndarray,
                   loss_aversion: float) -> np.ndarray:
    """:func:`quality_index` firm-major ([F, m]), of attribute-major weights and expectations ([A, m]): every firm's
    offer ([F, A] levels, as [A, F, 1]) judged by :func:`judged_levels` against each customer's expectations."""
    return judged_levels(weights, levels.T[:, :, None], expectation, kano, loss_aversion)


def judged_levels(weights: np.ndarray, levels: np.ndarray, expectation: np.ndarray, kano: np.ndarray,
                  loss_aversion: float) -> np.ndarray:
    """:func:`quality_index` of offers: attribute-major weights, offered levels and expectations ([A, ...],
    broadcasting together) give the judged qualities, attribute by attribute."""
    total = None
    for a in range(levels.shape[0]):
        e = expectation[a]
        judged = attribute_response(levels[a] - e, int(kano[a]), loss_aversion)
        judged += e
        judged *= weights[a]
        if total is None:
            total = judged
        else:
            total += judged
    return total


def judged_offer(weights: np.ndarray, gap: np.ndarray, expectation: np.ndarray, kano: np.ndarray,
                 loss_aversion: float) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`attribute_sum`, :func:`judged_levels`) of one offer per customer, from attribute-major weights, gaps
    (offer - expectation) and expectations ([A, m]): how the offer meets expectations and how good it is judged,
    from the same Kano responses."""
    met = judged = None
    for a in range(gap.shape[0]):
        response = attribute_response(gap[a], int(kano[a]), loss_aversion)
        term = response * weights[a]
        response += expectation[a]
        response *= weights[a]
        if met is None:
            met, judged = term, response
        else:
            met += term
            judged += response
    return met, judged


def logit_choice(utility: np.ndarray, gumbel: np.ndarray, noise: float) -> np.ndarray:
    """Multinomial logit choice by the Gumbel-max rule: argmax of utility plus scaled Gumbel shocks.

    ``utility`` and ``gumbel`` are [m, F] (in either memory order); ties go to the first firm, as in ``np.argmax``.
    """
    return first_best(np.ascontiguousarray((utility + noise * gumbel).T))


def first_best(score: np.ndarray) -> np.ndarray:
    """[m] index of the highest of each column of ``score`` [F, m] (firm-major), the first one on ties: ``np.argmax``
    over the firms, row by row, which is fast because F is small."""
    best = score[0]
    choice = np.zeros(score.shape[1], np.int32)
    for f in range(1, score.shape[0]):
        better = score[f] > best
        choice = select(better, np.int32(f), choice)
        best = select(better, score[f], best)
    return choice


def switching_cost(procedural: float, financial: np.ndarray, tenure: np.ndarray, has_manager: np.ndarray,
                   club: np.ndarray, p: Params) -> np.ndarray:
    """Cost of leaving the current firm (Burnham, Frels & Mahajan 2003), in utility units.

    Procedural (time, learning, set-up), financial (points, status: filled by programmes) and relational:
    it grows with tenure up to a cap, a relationship manager adds a personal bond, and so does membership of
    the firm's club or brand community.
    """
    relational = (np.minimum(tenure * p.relational_per_step, p.relational_cap) + p.manager_bond * has_manager
                  + p.club_bond * club)
    return procedural + financial + relational


def update_attitude(attitude: np.ndarray, satisfaction: np.ndarray, threshold: np.ndarray, p: Params) -> np.ndarray:
    """Attitudinal loyalty: grows while delighted, falls while dissatisfied, fades while merely satisfied."""
    delighted = satisfaction >= p.delight_level
    dissatisfied = satisfaction < threshold
    return select(
        delighted,
        attitude + p.attitude_gain * (1.0 - attitude),
        select(dissatisfied, attitude - p.attitude_loss * attitude, attitude - p.attitude_decay * attitude),
    )


def update_expectation(expectation: np.ndarray, offered: np.ndarray, buying: np.ndarray, present: np.ndarray,
                       best: np.ndarray, kano: np.ndarray, p: Params, market: np.ndarray | None = None) -> np.ndarray:
    """Expectations adapt toward what the customer experiences and, for needs it knows of (must-be and
    one-dimensional attributes), toward the market: they rise toward the best offer in the market (Oliver 1980; the
    brief's "expectations keep rising, shaped by the firm and its competitors") or, given the market's reference
    levels ``market`` [A] (:mod:`~loyaltysim.model.mechanisms.market_expectations`), move toward them both ways.
    Latent needs (attractive attributes) are not expected until met, so they adapt only to the customer's own
    experience, and slowly."""
    return adapt_expectations(firm_major(expectation), firm_major(offered), buying, present, best, kano, p, market).T


def adapt_expectations(expectation: np.ndarray, offered: np.ndarray, buying: np.ndarray, present: np.ndarray,
                       best: np.ndarray, kano: np.ndarray, p: Params, market: np.ndarray | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
    """:func:`update_expectation` of attribute-major expectations and offers ([A, m]), returned attribute-major (into
    ``out`` if given, which may be ``expectation`` itself: each attribute's row is read before it is written)."""
    out = np.empty_like(expectation) if out is None else out
    for a in range(out.shape[0]):
        col = expectation[a]
        latent = kano[a] == ATTRACTIVE
        alpha = p.latent_alpha if latent else p.expect_alpha
        # (each attribute's last select writes its row of ``out``)
        col = select(buying, col + alpha * (offered[a] - col), col, out=out[a] if latent else None)
        if not latent:
            pull = np.maximum(best[a] - col, 0.0) if market is None else market[a] - col
            select(present, col + p.competitor_alpha * pull, col, out=out[a])
    return out


def experience_damage(failed: np.ndarray, complained: np.ndarray, recovered: np.ndarray, p: Params) -> np.ndarray:
    """Satisfaction lost to a service failure: full severity if silent, more if a complaint is handled
    badly, and a small gain if it is resolved well (the recovery paradox)."""
    hurt = p.failure_severity * select(complained, p.unresolved_factor, 1.0)
    return select(failed, select(recovered, -p.recovery_paradox, hurt), 0.0)


def defection_cause(
    life_event: np.ndarray,
    manager_left: np.ndarray,
    breach: np.ndarray,
    dissatisfied: np.ndarray,
    recent_failure: np.ndarray,
    price_rose: np.ndarray,
    shock_to_cheaper: np.ndarray,
) -> np.ndarray:
    """The one cause recorded for a departure, by a fixed order of precedence.

    A life event is natural churn. A customer whose relationship manager left within the attribution window
    left with the staff (manager left); one whose firm was caught in an integrity breach, over integrity. A
    dissatisfied customer with a recent service failure left over the failure. A recent price rise by the
    firm left explains the departures it could have pushed; an income shock, moves to a cheaper firm (market
    fluctuation). Other dissatisfied customers left because their needs were no longer met; satisfied ones
    were pulled away by a competitor's offer (the "satisfied defector" of Reichheld 1993).
    """
    return np.select(
        [life_event, manager_left, breach, dissatisfied & recent_failure, price_rose, shock_to_cheaper,
         dissatisfied],
        [Cause.NATURAL_CHURN, Cause.MANAGER_LEFT, Cause.INTEGRITY_BREACH, Cause.SERVICE_FAILURE, Cause.PRICE_RISE,
         Cause.MARKET_FLUCTUATION, Cause.NEEDS_NOT_MET],
        default=Cause.COMPETITOR_OFFER,
    ).astype(np.int8)


def survey_score(satisfaction: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
    """A 1-5 answer: 1 plus the number of cutpoints the (noisy) satisfaction reaches."""
    return (1 + (satisfaction[:, None] >= cutpoints[None, :]).sum(axis=1)).astype(np.int8)


def recommend_score(satisfaction: np.ndarray, scale: float) -> np.ndarray:
    """A 0-10 likelihood-to-recommend answer (the NPS item)."""
    return np.clip(np.rint(7.0 + scale * satisfaction), 0, 10).astype(np.int8)


def life_events(active: np.ndarray, u_life: np.ndarray, p: Params, p_leave: np.ndarray | None = None,
                p_enter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(leave, enter, present): natural churn takes active customers out of the market, re-entry brings inactive
    ones back; present = in the market after both (the consideration sets read it before the customers step).
    ``p_leave``: each customer's own chance of leaving (heterogeneous lifetimes), instead of natural churn's;
    ``p_enter``: each customer's own chance of entering (arrivals over time), instead of re-entry's."""
    leave = active & (u_life < (p.p_leave if p_leave is None else p_leave))
    enter = ~active & (u_life < (p.p_enter if p_enter is None else p_enter))
    return leave, enter, (active & ~leave) | enter


def considered_firms(considered: np.ndarray, is_current: np.ndarray, available: np.ndarray) -> np.ndarray:
    """[F, m] firms a customer can choose in this step: the available firms it considers, its current firm always
    (Howard & Sheth 1969: choice within the evoked set); a customer who knows no available firm (back in the market
    after long enough away to forget them all) looks at every available firm."""
    choosable = (considered | is_current) & available
    return choosable | (available & ~choosable.any(axis=0))


# --- the step ---------------------------------------------------------------------------------------------


def firm_major(x: np.ndarray) -> np.ndarray:
    """A contiguous [F, m] copy of an [m, F] array: the layout the step computes in."""
    return np.ascontiguousarray(x.T)


def step_customers(st: CustomerState, rows: slice, v: Variates, sh: Shared, p: Params) -> None:
    """Advance the customers in ``rows`` by one step, in place.

    Per-firm quantities are worked on firm-major ([F, m]: one row per firm), so that broadcasting a customer's
    own values over the firms runs along the customers; each element is computed by the same arithmetic as in
    the state's [m, F] layout, so the layout changes nothing but speed.
    """
    t = sh.t
    n_firms = sh.price.shape[0]
    firm_ids = np.arange(n_firms)[:, None]
    available = sh.available[:, None]
    # copies: these rows are overwritten below while the old values are still needed
    active = st.active[rows].copy()
    cur = st.current[rows].copy()
    m = cur.shape[0]
    idx = np.arange(m)
    row_ids = idx + (rows.start or 0)

    # 1. life events
    leave, enter, present = life_events(active, v.u_life[rows], p, None if sh.p_leave is None else sh.p_leave[rows],
                                        None if sh.p_enter is None else sh.p_enter[rows])  # (arrivals over time)
    had = cur >= 0
    cur_safe = select(had, cur, 0)

    # a personal offer (a campaign's) changes one firm's price and service for this customer
    offer_firm = st.offer_firm[rows]
    offer_on = (offer_firm >= 0) & (t <= st.offer_until[rows])
    offered_here = (firm_ids == offer_firm) & offer_on  # [F, m]
    contacted = st.contacted_at[rows] == t
    # a win-back offer (from a firm other than the customer's own) makes it look around; a save offer from its own
    # firm does not: it changes what staying is worth if it does look
    approached = contacted & (offer_firm != cur)

    # 2. beliefs: word of mouth, then marketing exposure (both before choosing)
    # the per-firm beliefs are updated in place where their firm-major form is a view of the state (the write-back
    # below is then a no-op): the old values are not read again
    perceived = firm_major(st.perceived[rows])
    np.add(perceived, p.wom_influence * (firm_major(sh.wom_pos[rows]) * (1.0 - perceived)
                                         - firm_major(sh.wom_neg[rows]) * perceived), out=perceived)
    # expectations and attribute weights attribute-major ([A, m]), like the offers below: each attribute's row is
    # contiguous for the judged quality, the experience and the expectations' update
    weights = firm_major(st.weights[rows])
    expectation = firm_major(st.expectation[rows])
    levels = np.ascontiguousarray(sh.levels.T)  # [A, F]

    def quality(flat: np.ndarray) -> np.ndarray:
        """The judged quality (:func:`judged_quality`) at flat positions of the [F, m] arrays."""
        firm, row = np.divmod(flat, m)
        return judged_levels(weights[:, row], levels[:, firm], expectation[:, row], sh.kano, p.loss_aversion)

    u_market = firm_major(v.u_market[rows])
    exposed = (u_market < sh.reach[:, None]) & present & available
    # few customers meet a firm's marketing in a step: their beliefs are updated where they met it
    met = np.flatnonzero(exposed)
    belief = pick(perceived, met)
    place(perceived, met, belief + p.marketing_effect * (quality(met) - belief))
    rival_offer = (exposed & (firm_ids != cur)).any(axis=0)
    # a contact offering a service upgrade (a guarantee that removes that share of failures) restores that share
    # of the gap between the customer's belief and the firm's true offer: it repairs what failures taught the
    # customer. A discount alone says nothing about quality: it acts through price.
    upgrade = st.offer_upgrade[rows]
    informed = np.flatnonzero(offered_here & (contacted & (upgrade > 0) & present) & available)
    belief = pick(perceived, informed)
    place(perceived, informed, belief + upgrade[informed % m] * (quality(informed) - belief))
    if p.reliability_choice:  # what the neighbours say about each firm's reliability
        rel_belief = firm_major(st.rel_belief[rows])  # (in place, like the beliefs above)
        reliability_beliefs.hear(rel_belief, firm_major(sh.rel_share[rows]), firm_major(sh.rel_said[rows]),
                                 p.reliability_wom, out=rel_belief)

    # 3. search and choice
    k = v.occasions[rows]
    satisfaction = st.satisfaction[rows]  # a view: updated in place below
    attitude = st.attitude[rows]
    tenure = st.tenure[rows]
    manager = st.manager[rows]
    sat_current = select(had, pick(satisfaction, flat_index(idx, cur_safe, satisfaction.shape[1])), 0.0)
    threshold = st.threshold[rows]
    dissatisfied = had & (sat_current < threshold)
    dissatisfied_m = Mask(dissatisfied)  # (masks used by several selects: their integer forms are kept)
    p_search = select(dissatisfied_m, p.p_search_dissatisfied, p.p_search_satisfied * (1.0 - attitude))
    lost_manager_now = st.manager_lost[rows] == t
    staying = present & had & ~leave
    can_choose = present if p.contractual else present & (k > 0)
    # attitudinally loyal customers discount rivals' offers as they discount search
    prompted = ((rival_offer & (v.u_attention[rows] < p.offer_attention * (1.0 - attitude))) | lost_manager_now
                | approached)
    search = can_choose & (~staying | (v.u_search[rows] < p_search) | prompted)
    # a customer who does not search keeps its firm (none if it left the market)
    new = select(leave, NO_FIRM, cur).astype(np.int32, copy=False)
    # consideration sets (model.mechanisms.consideration): choose among the firms known
    choosable = (available if sh.considered is None
                 else considered_firms(firm_major(sh.considered[rows]), firm_ids == cur, available))
    if p.contractual:
        wander = None
        scored = search
    else:  # a variety trip: a buyer who did not search may buy elsewhere
        wander = (present & (new >= 0) & (k > 0) & ~search & (v.u_variety[rows] < st.variety[rows])
                  & (sh.available.sum() > 1))
        if sh.considered is not None:  # it needs another store the customer knows
            wander &= (choosable & (firm_ids != new)).any(axis=0)
        scored = search | wander
    # only the customers who choose a firm in this step (a few in a step) need the firms' utilities: they are
    # scored alone, column by column of the [F, m] arrays, by the same elementwise arithmetic
    who = np.flatnonzero(scored)
    perks = sh.perks
    # programmes: members pay less, count rewards as a price cut, and feel points pressure
    # (the perks are column-major [n, S]: their firm-major views need no copy)
    member_off = None if perks is None else firm_major(perks.discount[rows])
    priority = None if perks is None else firm_major(perks.priority[rows])
    felt = sh.price[:, None] * (1.0 - select(offered_here[:, who], st.offer_discount[rows][who], 0.0))
    if perks is not None:
        felt = felt * (1.0 - member_off[:, who]) * (1.0 - firm_major(perks.value[rows])[:, who])
    # against the market's average starting price, or (perceived value) the customer's own reference price
    relative_price = felt / (st.ref_price[rows][who] if p.reference_price else sh.price_ref) - 1.0
    base = p.quality_weight * perceived[:, who] - (sh.price_factor * st.price_sensitivity[rows][who]) * relative_price
    if perks is not None:
        base = base + firm_major(perks.pressure[rows])[:, who]
    if p.reliability_choice:  # the reliability expected, with an offer's upgrade or priority service it holds
        removed = select(offered_here[:, who], st.offer_upgrade[rows][who], 0.0)
        if perks is not None:
            removed = 1.0 - (1.0 - removed) * (1.0 - priority[:, who])
        base = base + p.reliability_weight * (reliability_beliefs.expected(rel_belief[:, who], removed) - 1.0)
    if sh.taste is not None:  # persistent brand tastes (model.mechanisms.tastes)
        base = base + firm_major(sh.taste[rows])[:, who]
    if sh.considered is not None or not sh.available.all():  # (every firm choosable: base as it is)
        base = np.where(choosable if choosable.shape[1] == 1 else choosable[:, who], base, -np.inf)
    hold = switching_cost(sh.switching_cost, st.financial_cost[rows][who], tenure[who], manager[who] >= 0,
                          st.club[rows][who], p)
    hold = hold + p.relationship_premium * attitude[who]
    # logit choice by the Gumbel-max rule (see logit_choice)
    shock = p.choice_noise * firm_major(v.shocks(rows, who))
    # the current firm's score of a customer who stays in the market gains what holding it is worth
    score = base.copy()
    stays = np.flatnonzero(staying[who])
    own = flat_index(cur_safe[who][stays], stays, who.size)
    place(score, own, pick(base, own) + hold[stays])
    score += shock
    choice = first_best(score)
    if sh.outside is not None:  # buying elsewhere (model.mechanisms.outside_option): no firm chosen
        choice = outside_option.choose(score, choice, sh.outside[rows][who])
    searching = search[who]
    new[who[searching]] = choice[searching]
    changed = new != cur
    left = had & changed
    recent = p.attribution_steps
    # the cause of each departure, worked out for the few who left
    cause = np.full(m, Cause.NONE, np.int8)
    gone = np.flatnonzero(left)
    if gone.size:
        was, now = cur_safe[gone], new[gone]
        cheaper = sh.price[np.where(now >= 0, now, 0)] < sh.price[was]
        cause[gone] = defection_cause(
            leave[gone],
            (t - st.manager_lost[rows][gone]) <= recent,
            sh.breached[was],
            dissatisfied[gone],
            (t - st.last_failure[rows][gone]) <= recent,
            sh.price_rose[was],
            sh.shocked & cheaper,
        )

    # 4. purchase at the (new) current firm, or elsewhere for variety
    has_new = new >= 0
    has_new_m = Mask(has_new)
    new_safe = select(has_new_m, new, 0)
    buying = present & has_new & (k > 0)
    buying_m = Mask(buying)
    if p.contractual:
        at = new_safe
    else:
        score = np.where(firm_ids == new[who], -np.inf, base)
        score += shock
        other = first_best(score)
        at = new_safe.copy()
        wanders = wander[who]
        at[who[wanders]] = other[wanders]
    # the step's outputs are worked out into the state's arrays where they are written back below (which is then a
    # no-op); nothing reads their previous values in the step
    purchases = st.step_purchases[rows]
    purchases[...] = select(buying_m, k, 0)
    units = np.multiply(purchases, st.basket[rows], out=st.step_units[rows])
    # the elements at the firm bought from, of [m, S] (customer-major) and [F, m] (firm-major) arrays
    at_row = {}
    at_index = at.astype(np.int64)  # (indices as np.take uses them: converted once)

    def at_positions(x: np.ndarray) -> np.ndarray:
        if x.shape[1] not in at_row:
            at_row[x.shape[1]] = flat_index(idx, at_index, x.shape[1])
        return at_row[x.shape[1]]

    def pick_at(x: np.ndarray) -> np.ndarray:
        return pick(x, at_positions(x))

    at_firm = flat_index(at_index, idx, m)
    offer_applies = Mask((at == offer_firm) & offer_on)  # the offer is from the firm bought from
    reliability_at = take(sh.reliability, at_index)
    reliability = select(offer_applies, 1.0 - (1.0 - reliability_at) * (1.0 - st.offer_upgrade[rows]),
                           reliability_at)
    if perks is not None:  # priority service removes a share of the failures left
        reliability = 1.0 - (1.0 - reliability) * (1.0 - pick(priority, at_firm))
    failed = buying & (v.u_fail[rows] >= reliability)
    # below the zone of tolerance a customer is quicker to complain
    complained = failed & (v.u_complain[rows] < select(dissatisfied_m, p.complaint_rate_dissatisfied,
                                                           p.complaint_rate))
    # the few who complained or failed: worked out where they did (elsewhere nothing is recovered, no damage done)
    recovered = complained.copy()
    complaining = np.flatnonzero(complained)
    recovered[complaining] = v.u_recover[rows][complaining] < take(sh.recovery, at_index[complaining])
    hurt = np.flatnonzero(failed)
    damage = np.zeros(m)
    damage_hurt = experience_damage(failed[hurt], complained[hurt], recovered[hurt], p)
    if perks is not None:  # members forgive part of a failure (a share in [0, 1]: no damage stays +0.0)
        damage_hurt = damage_hurt * (1.0 - pick(firm_major(perks.forgive[rows]), at_firm[hurt]))
    damage[hurt] = damage_hurt
    offered = take(levels, at_index, axis=1)  # [A, m]
    list_price = take(sh.price, at_index)
    member_at = None if perks is None else pick(member_off, at_firm)  # a member's share off there
    price_at = list_price * (1.0 - select(offer_applies, st.offer_discount[rows], 0.0))
    experienced, quality_at = judged_offer(weights, offered - expectation, expectation, sh.kano, p.loss_aversion)
    experienced -= damage
    if p.reference_price:  # value for money: the price paid, personal and member discounts off, against the reference
        paid = price_at if perks is None else price_at * (1.0 - member_at)
        reference = st.ref_price[rows]
        experienced += reference_price.value_response(paid, reference, p.value_weight, p.price_loss_aversion)
        ref_price = reference_price.adapt(reference, paid, buying_m, p.reference_alpha)
    old = pick_at(satisfaction)
    sat_at = select(buying_m, old + p.sat_alpha * (experienced - old), old)
    place(satisfaction, at_row[satisfaction.shape[1]], sat_at)
    expectation = adapt_expectations(expectation, offered, buying_m, Mask(present), sh.best_levels, sh.kano, p,
                                     sh.market_levels, out=expectation)
    if p.reliability_choice:
        place(rel_belief, at_firm, reliability_beliefs.learn(pick(rel_belief, at_firm), failed, recovered, buying_m,
                                                             p.reliability_alpha, p.recovery_credit))
    belief = pick(perceived, at_firm)
    target = np.clip(quality_at - p.failure_belief * damage, 0.0, 1.0)
    place(perceived, at_firm, select(buying_m, belief + p.learn_alpha * (target - belief), belief))
    last_buy = st.last_buy[rows]  # a view: updated in place below
    buyers = np.flatnonzero(buying)
    wallet = st.wallet[rows]  # a view: decayed in place
    np.multiply(p.wallet_decay, wallet, out=wallet)
    bought = take(at_positions(wallet), buyers)  # (one element per buyer, of [m, F])
    place(wallet, bought, pick(wallet, bought) + take(units, buyers))
    if p.contractual:
        gained = select(changed & has_new, new, NO_FIRM)
    else:  # won anew or back: a purchase by someone who was not a customer at the end of the last step
        previous_buy = pick_at(last_buy)
        gained = select(buying & (t - previous_buy > p.lapse_steps), at, NO_FIRM)

    # margins and lifetimes: what each relationship earns its firm, and second lifetimes won back by an offer
    discount = select(offer_applies, units * list_price * st.offer_discount[rows], 0.0, out=st.step_discount[rows])
    margin = units * (list_price - take(sh.unit_cost, at_index)) - discount
    if perks is not None:
        member_discount = np.multiply(units * price_at, member_at, out=st.step_member_discount[rows])
        margin = margin - member_discount
        discount_all = discount + member_discount
    else:
        member_discount = 0.0
        discount_all = discount
    here = Mask(buying & (at == new))
    changed_m = Mask(changed)
    # won back: the offer came after the customer left that firm (a save offer made while it was still a customer
    # does not make its return a regain)
    regained = (changed & has_new & (new == offer_firm) & offer_on & (st.previous[rows] == new)
                & (st.lost_at[rows] < st.contacted_at[rows]))

    # 5. attitude toward the current firm, relationship bookkeeping
    attitude = select(changed_m, 0.0, attitude)
    # the satisfaction at the current firm: where the customer bought (written above), but at its own firm for a
    # customer on a variety trip
    sat_new = sat_at
    if at is not new_safe:
        tripped = who[wanders]
        sat_new[tripped] = pick(satisfaction, flat_index(tripped, new_safe[tripped], satisfaction.shape[1]))
    attitude = select(present & has_new, update_attitude(attitude, sat_new, threshold, p), attitude,
                      out=st.attitude[rows])
    # a customer who changed firm gets a manager at its new firm if it is of high value and the firm has managers
    moved = np.flatnonzero(changed)
    managers = take(sh.managers, new_safe[moved])
    assigned = np.where((st.value_tier[rows][moved] == 2) & (managers > 0),
                        row_ids[moved] % np.maximum(managers, 1), NO_FIRM)
    manager = manager.copy()
    manager[moved] = np.where(has_new[moved], assigned, NO_FIRM)

    # write back (``st.x[rows]`` is a view: indexed assignments write in place; the few who entered, left, failed
    # or were won back are written by position)
    st.active[rows] = present
    st.current[rows] = new
    # a customer coming back into the market starts afresh, as a prospect
    st.previous[rows][np.flatnonzero(enter)] = NO_FIRM
    st.previous[rows][gone] = cur[gone]
    select(has_new_m, select(changed_m, 1, tenure + 1), 0, out=st.tenure[rows])
    np.add(select(changed_m, 0, st.relationship_purchases[rows]), select(here, purchases, 0),
           out=st.relationship_purchases[rows])
    st.perceived[rows] = perceived.T
    st.attitude[rows] = attitude
    st.club[rows] = st.club[rows] & ~changed
    st.manager[rows] = manager
    st.expectation[rows] = expectation.T
    if p.reference_price:
        st.ref_price[rows] = ref_price
    if p.reliability_choice:
        st.rel_belief[rows] = rel_belief.T
    st.wallet[rows] = wallet
    place(last_buy, bought, t)
    won = np.flatnonzero(gained >= 0)
    st.since[rows][won, gained[won]] = t
    st.last_failure[rows][np.flatnonzero(failed)] = t
    st.switch_cause[rows][gone] = cause[gone]
    select(buying_m, at, NO_FIRM, out=st.step_firm[rows])
    st.step_purchases[rows] = purchases
    st.step_units[rows] = units
    st.step_failed[rows] = failed
    st.step_complained[rows] = complained
    st.step_recovered[rows] = recovered
    left_m = Mask(left)
    select(left_m, cur, NO_FIRM, out=st.step_left[rows])
    st.step_cause[rows] = cause
    st.step_gained[rows] = gained
    st.step_discount[rows] = discount
    st.step_member_discount[rows] = member_discount
    st.step_regained[rows] = regained
    select(left_m, st.relationship_value[rows], 0.0, out=st.step_lifetime_value[rows])
    select(left_m, st.relationship_revenue[rows], 0.0, out=st.step_lifetime_revenue[rows])
    st.step_second_ended[rows] = left & (st.regained_by[rows] == cur)
    st.lost_value[rows][gone] = st.relationship_value[rows][gone]
    st.lost_at[rows][gone] = t
    # the relationship's value and revenue so far: anew after a change of firm, plus this step's at the firm held
    np.add(select(changed_m, 0.0, st.relationship_value[rows]), select(here, margin, 0.0),
           out=st.relationship_value[rows])
    np.add(select(changed_m, 0.0, st.relationship_revenue[rows]), select(here, units * list_price - discount_all, 0.0),
           out=st.relationship_revenue[rows])
    st.regained_by[rows][moved] = NO_FIRM
    won_back = np.flatnonzero(regained)
    st.regained_by[rows][won_back] = new[won_back]
    st.regained_at[rows][won_back] = t
