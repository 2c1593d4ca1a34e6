"""The state a step reads and writes: the customers' arrays, the run's behavioural constants, what every customer
reads in a step (the firms' offers, word of mouth) and the step's random numbers; the codes they use."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from math import log
from typing import Any

import numpy as np

NO_FIRM = -1
NEVER = -(2**30)  # "step of last event" for events that never happened

MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE = 0, 1, 2
KANO_CODES = {"must_be": MUST_BE, "one_dimensional": ONE_DIMENSIONAL, "attractive": ATTRACTIVE}
KANO_NAMES = {code: name for name, code in KANO_CODES.items()}


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


CAUSE_NAMES = [c.name.lower() for c in Cause]  # the defections table's categories, by code


@dataclass
class CustomerState:
    """The population's state: one row per customer, one column per firm (F) or attribute (A).

    Traits are drawn once; dynamic fields change each step; the ``step_*`` fields hold what happened in the
    last step and are overwritten by the next.
    """

    # traits
    segment: np.ndarray  # i1[n]
    value_tier: np.ndarray  # i1[n] 0 low, 1 medium, 2 high expected spend
    purchase_rate: np.ndarray  # f8[n] expected occasions per step
    basket: np.ndarray  # f8[n] units bought per occasion
    variety: np.ndarray  # f8[n] chance an occasion goes to another firm (repertoire)
    price_sensitivity: np.ndarray  # f8[n]
    weights: np.ndarray  # f8[n, A] attribute importance, rows sum to 1 (column-major: see allocate)
    threshold: np.ndarray  # f8[n] satisfaction threshold
    # dynamic
    active: np.ndarray  # bool[n] in the market
    current: np.ndarray  # i4[n] provider (contractual) or habitual firm (repertoire); -1 none
    previous: np.ndarray  # i4[n] the firm last left; -1 none
    tenure: np.ndarray  # i4[n] steps with the current firm
    relationship_purchases: np.ndarray  # i4[n] occasions with the current firm in this relationship
    expectation: np.ndarray  # f8[n, A] expected attribute levels (column-major: see allocate)
    perceived: np.ndarray  # f8[n, F] perceived quality of each firm, 0..1 (column-major: see allocate)
    satisfaction: np.ndarray  # f8[n, F] smoothed satisfaction with each firm (0: expectations just met)
    attitude: np.ndarray  # f8[n] attitudinal loyalty to the current firm, 0..1
    financial_cost: np.ndarray  # f8[n] financial switching cost (balances, status), utility units
    club: np.ndarray  # bool[n] member of the current firm's club
    manager: np.ndarray  # i4[n] relationship manager at the current firm; -1 none
    manager_lost: np.ndarray  # i4[n] step the customer's manager left
    wallet: np.ndarray  # f8[n, F] decayed units bought (share of wallet)
    last_buy: np.ndarray  # i4[n, F] step of the last purchase at each firm
    since: np.ndarray  # i4[n, F] step the current relationship with each firm began
    last_failure: np.ndarray  # i4[n] step of the last service failure
    switch_cause: np.ndarray  # i1[n] cause of the latest change of firm
    last_score: np.ndarray  # i1[n] last 1-5 survey answer (0: never asked)
    scores: np.ndarray  # i1[n, F] last 1-5 survey answer about each firm (0: never asked about it)
    ref_price: np.ndarray  # f8[n] reference price, money per unit (used when the reference-price mechanism is on)
    rel_belief: np.ndarray  # f8[n, F] belief in each firm's service reliability (used when reliability-in-choice is on;
    # column-major like perceived)
    # relationships and campaigns
    relationship_value: np.ndarray  # f8[n] margin earned by the current firm in this relationship
    relationship_revenue: np.ndarray  # f8[n] revenue it earned in this relationship (after personal discounts)
    lost_value: np.ndarray  # f8[n] margin of the relationship the customer last left (its value to that firm)
    lost_at: np.ndarray  # i4[n] step the customer last left a firm
    offer_firm: np.ndarray  # i4[n] firm whose personal offer the customer holds; -1 none
    offer_until: np.ndarray  # i4[n] last step of the offer
    offer_discount: np.ndarray  # f8[n] share off that firm's price while the offer lasts
    offer_upgrade: np.ndarray  # f8[n] share of service failures at that firm removed while it lasts
    offer_cost: np.ndarray  # f8[n] what the firm pays if the customer accepts
    contacted_at: np.ndarray  # i4[n] step of the last campaign contact
    regained_by: np.ndarray  # i4[n] firm that won the customer back with an offer; -1 none
    regained_at: np.ndarray  # i4[n] step it did (the start of a second lifetime)
    # what happened in the last step
    step_firm: np.ndarray  # i4[n] firm bought from, -1 none
    step_purchases: np.ndarray  # i4[n] occasions
    step_units: np.ndarray  # f8[n] units bought
    step_failed: np.ndarray  # bool[n]
    step_complained: np.ndarray  # bool[n]
    step_recovered: np.ndarray  # bool[n]
    step_left: np.ndarray  # i4[n] firm the customer left this step (switch or exit), -1 none
    step_cause: np.ndarray  # i1[n] cause of that departure
    step_gained: np.ndarray  # i4[n] firm that won the customer this step, -1 none
    step_discount: np.ndarray  # f8[n] revenue given up to a personal discount
    step_member_discount: np.ndarray  # f8[n] revenue given up to programme discounts (tiers, member days, clubs)
    step_regained: np.ndarray  # bool[n] won back this step by an offer
    step_lifetime_value: np.ndarray  # f8[n] value of the relationship the customer left this step
    step_lifetime_revenue: np.ndarray  # f8[n] revenue of that relationship
    step_second_ended: np.ndarray  # bool[n] the relationship it left was a second lifetime

    @classmethod
    def allocate(cls, n: int, n_firms: int, n_attributes: int) -> CustomerState:
        """Every array at its starting value. The beliefs about each firm (``perceived``, ``rel_belief``), the
        attribute weights and the expectations are stored column-major: the customer step reads and writes them
        whole, firm by firm ([F, n]) or attribute by attribute ([A, n]), with no transpose."""
        f8, i4 = np.float64, np.int32
        return cls(
            segment=np.zeros(n, np.int8),
            value_tier=np.zeros(n, np.int8),
            purchase_rate=np.zeros(n, f8),
            basket=np.ones(n, f8),
            variety=np.zeros(n, f8),
            price_sensitivity=np.zeros(n, f8),
            weights=np.zeros((n, n_attributes), f8, order="F"),
            threshold=np.zeros(n, f8),
            active=np.ones(n, bool),
            current=np.full(n, NO_FIRM, i4),
            previous=np.full(n, NO_FIRM, i4),
            tenure=np.zeros(n, i4),
            relationship_purchases=np.zeros(n, i4),
            expectation=np.zeros((n, n_attributes), f8, order="F"),
            perceived=np.zeros((n, n_firms), f8, order="F"),
            satisfaction=np.zeros((n, n_firms), f8),
            attitude=np.zeros(n, f8),
            financial_cost=np.zeros(n, f8),
            club=np.zeros(n, bool),
            manager=np.full(n, NO_FIRM, i4),
            manager_lost=np.full(n, NEVER, i4),
            wallet=np.zeros((n, n_firms), f8),
            last_buy=np.full((n, n_firms), NEVER, i4),
            since=np.full((n, n_firms), NEVER, i4),
            last_failure=np.full(n, NEVER, i4),
            switch_cause=np.zeros(n, np.int8),
            last_score=np.zeros(n, np.int8),
            scores=np.zeros((n, n_firms), np.int8),
            ref_price=np.zeros(n, f8),
            rel_belief=np.zeros((n, n_firms), f8, order="F"),
            step_firm=np.full(n, NO_FIRM, i4),
            step_purchases=np.zeros(n, i4),
            step_units=np.zeros(n, f8),
            step_failed=np.zeros(n, bool),
            step_complained=np.zeros(n, bool),
            step_recovered=np.zeros(n, bool),
            step_left=np.full(n, NO_FIRM, i4),
            step_cause=np.zeros(n, np.int8),
            step_gained=np.full(n, NO_FIRM, i4),
            relationship_value=np.zeros(n, f8),
            relationship_revenue=np.zeros(n, f8),
            lost_value=np.zeros(n, f8),
            lost_at=np.full(n, NEVER, i4),
            offer_firm=np.full(n, NO_FIRM, i4),
            offer_until=np.full(n, NEVER, i4),
            offer_discount=np.zeros(n, f8),
            offer_upgrade=np.zeros(n, f8),
            offer_cost=np.zeros(n, f8),
            contacted_at=np.full(n, NEVER, i4),
            regained_by=np.full(n, NO_FIRM, i4),
            regained_at=np.full(n, NEVER, i4),
            step_discount=np.zeros(n, f8),
            step_member_discount=np.zeros(n, f8),
            step_regained=np.zeros(n, bool),
            step_lifetime_value=np.zeros(n, f8),
            step_lifetime_revenue=np.zeros(n, f8),
            step_second_ended=np.zeros(n, bool),
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
    expect_alpha: float  # pull of experience on expectations of must-be and one-dimensional attributes
    latent_alpha: float  # pull of experience on expectations of attractive (latent) attributes
    competitor_alpha: float  # pull of the best offer in the market on expectations of known attributes
    learn_alpha: float
    wallet_decay: float
    p_search_satisfied: float
    p_search_dissatisfied: float
    offer_attention: float
    p_leave: float
    p_enter: float
    failure_severity: float
    failure_belief: float
    complaint_rate: float
    complaint_rate_dissatisfied: float
    unresolved_factor: float
    recovery_paradox: float
    marketing_effect: float
    wom_influence: float
    attribution_steps: int
    delight_level: float
    attitude_gain: float
    attitude_loss: float
    attitude_decay: float
    relationship_premium: float
    relational_per_step: float
    relational_cap: float
    manager_bond: float
    club_bond: float
    # second-pass mechanisms; the defaults switch them off
    attention_capacity: float | None = None  # most marketing messages noticed in a step; None: no limit
    reference_price: bool = False  # perceived value against each customer's reference price
    reference_alpha: float = 0.0  # pull of the price paid on the reference price
    value_weight: float = 0.0  # satisfaction per 100% of the price below or above the reference
    price_loss_aversion: float = 1.0  # a price above the reference weighs this many times a saving
    market_expectations: bool = False  # known needs adapt to the market's reference level both ways
    best_offer_weight: float = 1.0  # that reference's weight on the best offer (the rest: the average offer)
    reliability_choice: bool = False  # beliefs about each firm's reliability, weighed in choice
    reliability_weight: float = 0.0  # utility per unit of expected reliability
    reliability_alpha: float = 0.0  # pull of a purchase's outcome on the belief
    reliability_wom: float = 0.0  # pull of word of mouth on the belief
    recovery_credit: float = 0.0  # outcome counted for a failure whose complaint was resolved well

    @classmethod
    def from_scenario(cls, scenario) -> Params:
        """The scenario's customer psychology and market rules, converted to its step length."""
        unit = scenario.time.step
        market = scenario.market
        c = market.customers
        return cls(
            contractual=market.type == "contractual",
            lapse_steps=market.lapse.steps(unit),
            quality_weight=c.quality_weight,
            choice_noise=c.choice_noise,
            loss_aversion=c.loss_aversion,
            sat_alpha=half_life_weight(c.satisfaction_memory.steps(unit)),
            expect_alpha=half_life_weight(c.expectation_half_life.steps(unit)),
            latent_alpha=half_life_weight(c.latent_expectation_half_life.steps(unit)),
            competitor_alpha=half_life_weight(c.competitor_expectation_half_life.steps(unit)),
            learn_alpha=half_life_weight(c.learning_half_life.steps(unit)),
            wallet_decay=1.0 - half_life_weight(market.lapse.steps(unit)),
            p_search_satisfied=c.search_when_satisfied.per_step(unit),
            p_search_dissatisfied=c.search_when_dissatisfied.per_step(unit),
            offer_attention=c.offer_attention,
            p_leave=c.natural_churn.per_step(unit),
            p_enter=c.reentry.per_step(unit),
            failure_severity=c.failure_severity,
            failure_belief=c.failure_belief,
            complaint_rate=c.complaint_rate,
            complaint_rate_dissatisfied=c.complaint_rate_dissatisfied,
            unresolved_factor=c.unresolved_complaint_factor,
            recovery_paradox=c.recovery_paradox,
            marketing_effect=c.marketing_effect,
            wom_influence=market.network.influence,
            attribution_steps=c.attribution_window.steps(unit),
            delight_level=c.delight_level,
            attitude_gain=half_life_weight(c.attitude_gain.steps(unit)),
            attitude_loss=half_life_weight(c.attitude_loss.steps(unit)),
            attitude_decay=half_life_weight(c.attitude_decay.steps(unit)),
            relationship_premium=c.relationship_premium,
            relational_per_step=c.relational_cost.per_step(unit),
            relational_cap=c.relational_cost_cap,
            manager_bond=c.manager_bond,
            club_bond=c.club_bond,
            attention_capacity=c.attention.capacity.per_step(unit) if c.attention.enabled else None,
            reference_price=c.reference_price.enabled,
            reference_alpha=half_life_weight(c.reference_price.half_life.steps(unit)),
            value_weight=c.reference_price.value_weight,
            price_loss_aversion=c.reference_price.loss_aversion,
            market_expectations=c.market_expectations.enabled,
            best_offer_weight=c.market_expectations.best_offer_weight,
            reliability_choice=c.reliability_choice.enabled,
            reliability_weight=c.reliability_choice.weight,
            reliability_alpha=half_life_weight(c.reliability_choice.half_life.steps(unit)),
            reliability_wom=c.reliability_choice.word_of_mouth,
            recovery_credit=c.reliability_choice.recovery_credit,
        )


@dataclass
class Shared:
    """What every customer reads in a step: the firms' offers, market conditions, and social signals."""

    t: int
    available: np.ndarray  # bool[F] firms in the market
    price: np.ndarray  # f8[F]
    unit_cost: np.ndarray  # f8[F]
    price_ref: float
    price_factor: float  # multiplies price sensitivity (income shocks)
    levels: np.ndarray  # f8[F, A]
    best_levels: np.ndarray  # f8[A] best level offered in the market
    kano: np.ndarray  # i1[A] current Kano class of each attribute
    reliability: np.ndarray  # f8[F]
    recovery: np.ndarray  # f8[F]
    reach: np.ndarray  # f8[F] per-step chance of marketing exposure
    managers: np.ndarray  # i4[F] relationship managers per firm
    price_rose: np.ndarray  # bool[F] price raised within the attribution window
    breached: np.ndarray  # bool[F] integrity breach within the attribution window
    shocked: bool  # an income shock within the attribution window
    switching_cost: float  # procedural
    wom_pos: np.ndarray  # f8[n, F] share of neighbours recommending each firm
    wom_neg: np.ndarray  # f8[n, F] share of neighbours warning against each firm
    market_levels: np.ndarray | None = None  # f8[A] market reference level (None: expectations ratchet to the best)
    perks: Any = None  # the loyalty programmes' Perks (model.mechanisms.programmes; None: no programme in the market)
    taste: np.ndarray | None = None  # f8[n, F] brand-taste utility (model.mechanisms.tastes; None: no tastes)
    considered: np.ndarray | None = None  # bool[n, F] firms each customer knows (mechanisms.consideration; None: all)
    rel_share: np.ndarray | None = None  # f8[n, F] share of neighbours who spoke of each firm (reliability_beliefs)
    rel_said: np.ndarray | None = None  # f8[n, F] their reliability beliefs, summed over the customer's ties
    p_leave: np.ndarray | None = None  # f8[n] each customer's chance of leaving the market (lifetimes; None: p_leave)
    p_enter: np.ndarray | None = None  # f8[n] each customer's chance of entering it (arrivals; None: p_enter)
    outside: np.ndarray | None = None  # f8[n] the outside option's value to each customer (None: no outside option)


@dataclass
class Variates:
    """The random numbers of one step, drawn for the whole population whatever happens.

    The choice's Gumbel shocks are given (``gumbel``) or drawn as their uniforms (``u_gumbel``, the model's way: only
    the customers who choose need theirs, :meth:`shocks`)."""

    occasions: np.ndarray  # i8[n]
    u_search: np.ndarray  # f8[n]
    u_attention: np.ndarray  # f8[n]
    u_variety: np.ndarray  # f8[n]
    gumbel: np.ndarray | None  # f8[n, F] Gumbel shocks of the logit choice (None: from u_gumbel where used)
    u_fail: np.ndarray  # f8[n]
    u_complain: np.ndarray  # f8[n]
    u_recover: np.ndarray  # f8[n]
    u_market: np.ndarray  # f8[n, F]
    u_life: np.ndarray  # f8[n]
    u_gumbel: np.ndarray | None = None  # f8[n, F] the uniforms behind the shocks (streams.gumbel_uniforms)

    def shocks(self, rows: slice, who: np.ndarray) -> np.ndarray:
        """[k, F] the Gumbel shocks of customers ``who`` (positions within ``rows``)."""
        return self.gumbel[rows][who] if self.gumbel is not None else gumbel_of(self.u_gumbel[rows][who])


def gumbel_of(u: np.ndarray) -> np.ndarray:
    """The Gumbel shocks ``Generator.gumbel`` makes of uniforms ``u`` (see
    :func:`loyaltysim.model.streams.gumbel_uniforms`), bit for bit: its arithmetic, ``0 - 1 * log(-log(1 - u))``, with
    the C library's ``log`` that it calls (``math.log``; numpy's vectorised ``np.log`` may round differently in the
    last bit). Element by element, so meant for the few customers who choose in a step."""
    inner = np.fromiter(map(log, (1.0 - u).ravel().tolist()), np.float64, u.size)  # log(1 - u)
    outer = np.fromiter(map(log, np.negative(inner).tolist()), np.float64, u.size)  # log(-log(1 - u))
    return np.subtract(0.0, outer).reshape(u.shape)


def half_life_weight(half_life_steps: int) -> float:
    """Weight of a new observation in exponential smoothing with the given half-life in steps."""
    return 1.0 - 0.5 ** (1.0 / max(half_life_steps, 1))
