"""Tests of the customer rules: the pure functions and single steps of hand-built customers, by hand."""

import dataclasses

import numpy as np
import pytest

from loyaltysim.model.rules import (
    attribute_response,
    defection_cause,
    logit_choice,
    recommend_score,
    step_customers,
    survey_score,
)
from loyaltysim.model.state import (
    ATTRACTIVE,
    KANO_CODES,
    MUST_BE,
    NEVER,
    NO_FIRM,
    ONE_DIMENSIONAL,
    Cause,
    CustomerState,
    Params,
    Shared,
    Variates,
    half_life_weight,
)

# ----------------------------------------------------------------------------------- Kano responses

GAPS = np.array([-0.4, -0.1, 0.0, 0.1, 0.4])


def _response(kano: int, loss_aversion: float = 2.0) -> np.ndarray:
    return attribute_response(GAPS, kano, loss_aversion)


def test_must_be_responds_only_to_shortfalls_scaled_by_loss_aversion():
    np.testing.assert_allclose(_response(MUST_BE), [-0.8, -0.2, 0.0, 0.0, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(_response(MUST_BE, 3.0), [-1.2, -0.3, 0.0, 0.0, 0.0], rtol=0, atol=1e-15)


def test_one_dimensional_is_linear_with_loss_aversion_below_expectation():
    np.testing.assert_allclose(_response(ONE_DIMENSIONAL), [-0.8, -0.2, 0.0, 0.1, 0.4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(_response(ONE_DIMENSIONAL, 1.0), GAPS, rtol=0, atol=1e-15)


def test_attractive_responds_only_to_surplus():
    np.testing.assert_allclose(_response(ATTRACTIVE), [0.0, 0.0, 0.0, 0.1, 0.4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(_response(ATTRACTIVE, 5.0), [0.0, 0.0, 0.0, 0.1, 0.4], rtol=0, atol=1e-15)


def test_weighted_response_sums_each_attribute_through_its_own_class():
    from loyaltysim.model.rules import weighted_response

    gap = np.array([[-0.1, -0.1, -0.1], [0.2, 0.2, 0.2]])
    kano = np.array([MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE], np.int8)
    weights = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    # responses [[-0.2, -0.2, 0], [0, 0.2, 0.2]] weighted by importance
    np.testing.assert_allclose(weighted_response(weights, gap, kano, 2.0), [-0.16, 0.1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(weighted_response(weights, gap, kano, 2.0, MUST_BE), [-0.1, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(weighted_response(weights, gap, kano, 2.0, ATTRACTIVE), [0.0, 0.04], rtol=0,
                               atol=1e-15)
    # a class no attribute has contributes nothing
    assert weighted_response(weights, gap, np.full(3, MUST_BE, np.int8), 2.0, ATTRACTIVE).tolist() == [0.0, 0.0]


def test_kano_codes():
    assert KANO_CODES == {"must_be": MUST_BE, "one_dimensional": ONE_DIMENSIONAL, "attractive": ATTRACTIVE}
    assert len({MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE}) == 3


# ----------------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize("h", [1, 2, 4, 8, 26, 52])
def test_half_life_weight_halves_the_gap_in_h_steps(h):
    a = half_life_weight(h)
    x = 0.0
    for _ in range(h):
        x += a * (1.0 - x)
    assert x == pytest.approx(0.5, rel=1e-12)
    y = 0.0
    for _ in range(h - 1):
        y += a * (1.0 - y)
    assert y < 0.5  # not sooner


def test_half_life_weight_values():
    assert half_life_weight(1) == 0.5
    assert half_life_weight(2) == pytest.approx(1.0 - 2**-0.5, rel=1e-15)
    assert half_life_weight(0) == 0.5  # a zero half-life is treated as one step


# ----------------------------------------------------------------------------------- logit choice


def test_logit_choice_without_noise_picks_the_highest_utility():
    utility = np.array([[1.0, 3.0, 2.0], [5.0, -1.0, 4.9], [0.0, 0.0, 0.1]])
    gumbel = np.array([[9.0, -9.0, 9.0], [0.0, 9.0, 9.0], [5.0, 0.0, 0.0]])
    choice = logit_choice(utility, gumbel, 0.0)
    assert choice.dtype == np.int32
    assert choice.tolist() == [1, 0, 2]


def test_logit_choice_is_argmax_of_utility_plus_scaled_shocks():
    utility = np.array([[1.0, 1.2], [1.0, 1.2], [1.0, 1.2]])
    gumbel = np.array([[0.5, 0.0], [0.0, 0.5], [0.3, 0.0]])
    # noise 1: 1.5 vs 1.2 -> 0; 1.0 vs 1.7 -> 1; 1.3 vs 1.2 -> 0
    assert logit_choice(utility, gumbel, 1.0).tolist() == [0, 1, 0]
    # noise 0.5: 1.25 vs 1.2 -> 0; 1.0 vs 1.45 -> 1; 1.15 vs 1.2 -> 1
    assert logit_choice(utility, gumbel, 0.5).tolist() == [0, 1, 1]


def test_logit_choice_frequencies_match_softmax():
    rng = np.random.default_rng(20240611)
    n = 200_000
    u = np.array([0.0, 0.5, 1.0, -0.3])
    noise = 0.4
    choice = logit_choice(np.broadcast_to(u, (n, u.size)), rng.gumbel(size=(n, u.size)), noise)
    freq = np.bincount(choice, minlength=u.size) / n
    expected = np.exp(u / noise) / np.exp(u / noise).sum()
    # binomial standard error is at most 0.0012 here; 0.005 is more than four of them
    np.testing.assert_allclose(freq, expected, rtol=0, atol=0.005)
    assert freq.argmax() == 2


# ----------------------------------------------------------------------------------- defection causes


FLAGS = ("life", "manager", "breach", "dissatisfied", "failure", "price_rose", "shock")


def _cause(life=False, manager=False, breach=False, dissatisfied=False, failure=False, price_rose=False,
           shock=False) -> int:
    args = [np.array([x]) for x in (life, manager, breach, dissatisfied, failure, price_rose, shock)]
    out = defection_cause(*args)
    assert out.dtype == np.int8
    return int(out[0])


@pytest.mark.parametrize(
    ("flags", "cause"),
    [
        ({}, Cause.COMPETITOR_OFFER),
        ({"dissatisfied": True}, Cause.NEEDS_NOT_MET),
        ({"dissatisfied": True, "failure": True}, Cause.SERVICE_FAILURE),
        ({"price_rose": True}, Cause.PRICE_RISE),
        ({"life": True}, Cause.NATURAL_CHURN),
        ({"manager": True}, Cause.MANAGER_LEFT),
        ({"breach": True}, Cause.INTEGRITY_BREACH),
        ({"shock": True}, Cause.MARKET_FLUCTUATION),
        # precedence
        ({"failure": True}, Cause.COMPETITOR_OFFER),  # a failure alone does not explain a satisfied defector
        ({"dissatisfied": True, "price_rose": True}, Cause.PRICE_RISE),
        ({"dissatisfied": True, "failure": True, "price_rose": True}, Cause.SERVICE_FAILURE),
        ({"failure": True, "price_rose": True}, Cause.PRICE_RISE),
        ({"dissatisfied": True, "shock": True}, Cause.MARKET_FLUCTUATION),
        ({"price_rose": True, "shock": True}, Cause.PRICE_RISE),
        ({"breach": True, "dissatisfied": True, "failure": True}, Cause.INTEGRITY_BREACH),
        ({"manager": True, "breach": True}, Cause.MANAGER_LEFT),
        ({"life": True, "dissatisfied": True, "failure": True, "price_rose": True}, Cause.NATURAL_CHURN),
        ({"life": True, "manager": True}, Cause.NATURAL_CHURN),
        ({"life": True, "dissatisfied": True}, Cause.NATURAL_CHURN),
    ],
)
def test_defection_cause_precedence(flags, cause):
    assert _cause(**flags) == cause


def test_defection_cause_is_elementwise_over_all_combinations():
    combos = np.array(np.meshgrid(*[[False, True]] * len(FLAGS))).reshape(len(FLAGS), -1)
    causes = defection_cause(*combos)
    expected = [_cause(*c) for c in combos.T.tolist()]
    assert causes.tolist() == expected
    assert set(expected) == set(Cause) - {Cause.NONE}


# ----------------------------------------------------------------------------------- survey answers

CUTPOINTS = np.array([-0.20, -0.10, -0.04, 0.04])


def test_survey_score_boundaries():
    s = np.array([-1.0, -0.2000001, -0.20, -0.15, -0.10, -0.0400001, -0.04, 0.0, 0.04, 0.5])
    score = survey_score(s, CUTPOINTS)
    assert score.dtype == np.int8
    assert score.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_recommend_score_boundaries():
    s = np.array([-10.0, -0.35, -0.30, -0.05, 0.0, 0.05, 0.10, 0.15, 0.20, 10.0])
    score = recommend_score(s, 20.0)
    assert score.dtype == np.int8
    # 7 + 20 s, rounded and clipped to 0..10
    assert score.tolist() == [0, 0, 1, 6, 7, 8, 9, 10, 10, 10]


def test_recommend_score_rounds_halves_to_even():
    # 7 + 2 s: 6.5 -> 6, 7.5 -> 8, 8.5 -> 8, 9.5 -> 10 (exact binary halves)
    assert recommend_score(np.array([-0.25, 0.25, 0.75, 1.25]), 2.0).tolist() == [6, 8, 8, 10]


def test_recommend_score_promoters_and_detractors():
    # the NPS bands: 9-10 promoters, 0-6 detractors
    assert recommend_score(np.array([0.1]), 20.0)[0] == 9
    assert recommend_score(np.array([-0.0251]), 20.0)[0] == 6


# ----------------------------------------------------------------------------------- one step, by hand

T = 10
KANO = np.array([MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE], np.int8)
LEVELS = np.array([[0.5, 0.7, 0.4], [0.8, 0.8, 0.8]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
# The customer of one_customer() expects [0.6, 0.6, 0.2]: firm 0's gaps [-0.1, 0.1, 0.2] count as
# [0.6 - 2 x 0.1, 0.7, 0.4] and firm 1's [0.2, 0.2, 0.6] as [0.6 (must-be: no credit above expectation), 0.8, 0.8]
QUALITY = np.array([0.5 * 0.4 + 0.3 * 0.7 + 0.2 * 0.4, 0.5 * 0.6 + 0.3 * 0.8 + 0.2 * 0.8])  # [0.49, 0.70]

PARAMS = Params(
    contractual=True, lapse_steps=8, quality_weight=4.0, choice_noise=0.3, loss_aversion=2.0, sat_alpha=0.25,
    expect_alpha=0.1, latent_alpha=0.1, competitor_alpha=0.0, learn_alpha=0.2, wallet_decay=0.9,
    p_search_satisfied=0.05, p_search_dissatisfied=0.5, offer_attention=0.0, p_leave=0.01, p_enter=0.1,
    failure_severity=0.3, failure_belief=1.0, complaint_rate=0.5, complaint_rate_dissatisfied=0.8,
    unresolved_factor=1.5,
    recovery_paradox=0.02, marketing_effect=0.2,
    wom_influence=0.05, attribution_steps=8, delight_level=0.02, attitude_gain=0.1, attitude_loss=0.2,
    attitude_decay=0.01, relationship_premium=1.0, relational_per_step=0.0, relational_cap=0.0, manager_bond=0.0,
    club_bond=0.0,
)


def one_customer(**changes) -> CustomerState:
    """A satisfied customer of firm 0 for five steps; firm 1 is better but unknown to it."""
    st = CustomerState.allocate(1, 2, 3)
    st.purchase_rate[:] = 1.0
    st.price_sensitivity[:] = 1.0
    st.weights[:] = WEIGHTS
    st.threshold[:] = -1.0
    st.current[:] = 0
    st.tenure[:] = 5
    st.expectation[:] = [0.6, 0.6, 0.2]
    st.perceived[:] = [0.5, 0.5]
    st.satisfaction[:] = [0.1, 0.0]
    st.wallet[:] = [2.0, 0.0]
    st.last_buy[:] = [3, NEVER]
    st.since[:] = [-5, NEVER]
    for name, value in changes.items():
        getattr(st, name)[:] = value
    return st


def shared(**changes) -> Shared:
    sh = Shared(
        t=T, available=np.array([True, True]), price=np.array([30.0, 30.0]), unit_cost=np.array([20.0, 20.0]),
        price_ref=30.0, price_factor=1.0,
        levels=LEVELS.copy(), best_levels=LEVELS.max(axis=0), kano=KANO,
        reliability=np.array([0.98, 0.98]), recovery=np.array([0.5, 0.5]), reach=np.array([0.1, 0.1]),
        managers=np.array([0, 0], np.int32), price_rose=np.array([False, False]), breached=np.array([False, False]),
        shocked=False, switching_cost=0.5, wom_pos=np.zeros((1, 2)), wom_neg=np.zeros((1, 2)),
        rel_share=np.zeros((1, 2)), rel_said=np.zeros((1, 2)),
    )
    return dataclasses.replace(sh, **changes)


def variates(**changes) -> Variates:
    """Nothing happens by chance: two occasions, no search, no failure, no marketing, no life event."""
    v = Variates(
        occasions=np.array([2]), u_search=np.array([0.9]), u_attention=np.array([0.9]), u_variety=np.array([0.9]),
        gumbel=np.zeros((1, 2)), u_fail=np.array([0.5]), u_complain=np.array([0.9]), u_recover=np.array([0.9]),
        u_market=np.full((1, 2), 0.9), u_life=np.array([0.5]),
    )
    return dataclasses.replace(v, **{k: np.asarray(x) for k, x in changes.items()})


def test_a_loyal_purchase_updates_satisfaction_expectations_beliefs_and_wallet():
    st = one_customer()
    step_customers(st, slice(None), variates(), shared(), PARAMS)
    # gaps [-0.1, 0.1, 0.2] -> Kano [-0.2, 0.1, 0.2] -> weighted -0.1 + 0.03 + 0.04 = -0.03
    np.testing.assert_allclose(st.satisfaction, [[0.1 + 0.25 * (-0.03 - 0.1), 0.0]], rtol=0, atol=1e-14)
    np.testing.assert_allclose(st.expectation, [[0.59, 0.61, 0.22]], rtol=0, atol=1e-14)
    np.testing.assert_allclose(st.perceived, [[0.5 + 0.2 * (QUALITY[0] - 0.5), 0.5]], rtol=0, atol=1e-14)
    np.testing.assert_allclose(st.wallet, [[0.9 * 2.0 + 2.0, 0.0]], rtol=0, atol=1e-14)
    assert st.current.tolist() == [0]
    assert st.active.tolist() == [True]
    assert st.tenure.tolist() == [6]
    assert st.last_buy.tolist() == [[T, NEVER]]
    assert st.since.tolist() == [[-5, NEVER]]
    assert st.last_failure.tolist() == [NEVER]
    assert st.step_purchases.tolist() == [2]
    assert st.step_failed.tolist() == [False]
    assert st.step_left.tolist() == [NO_FIRM]
    assert st.step_gained.tolist() == [NO_FIRM]
    assert st.step_cause.tolist() == [Cause.NONE]


def test_no_occasion_means_no_purchase_and_no_learning():
    st = one_customer()
    step_customers(st, slice(None), variates(occasions=[0]), shared(), PARAMS)
    np.testing.assert_array_equal(st.satisfaction, [[0.1, 0.0]])
    np.testing.assert_array_equal(st.expectation, [[0.6, 0.6, 0.2]])
    np.testing.assert_array_equal(st.perceived, [[0.5, 0.5]])
    np.testing.assert_allclose(st.wallet, [[1.8, 0.0]], rtol=0, atol=1e-15)
    assert st.last_buy.tolist() == [[3, NEVER]]
    assert (st.current.tolist(), st.tenure.tolist(), st.step_purchases.tolist()) == ([0], [6], [0])


@pytest.mark.parametrize(
    ("u_complain", "u_recover", "damage", "complained", "recovered"),
    [
        (0.9, 0.1, 0.3, False, False),  # silent: the full severity
        (0.1, 0.9, 0.45, True, False),  # a complaint handled badly: severity x 1.5
        (0.1, 0.1, -0.02, True, True),  # resolved well (recovery 0.5 > 0.1): the recovery paradox
    ],
)
def test_a_service_failure_complaint_and_recovery(u_complain, u_recover, damage, complained, recovered):
    st = one_customer()
    v = variates(u_fail=[0.99], u_complain=[u_complain], u_recover=[u_recover])
    step_customers(st, slice(None), v, shared(), PARAMS)
    np.testing.assert_allclose(st.satisfaction[0, 0], 0.1 + 0.25 * (-0.03 - damage - 0.1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(st.perceived[0, 0], 0.5 + 0.2 * (QUALITY[0] - damage - 0.5), rtol=0, atol=1e-14)
    assert st.step_failed.tolist() == [True]
    assert (st.step_complained.tolist(), st.step_recovered.tolist()) == ([complained], [recovered])
    assert st.last_failure.tolist() == [T]
    assert st.current.tolist() == [0]  # a failure alone does not make a satisfied customer search


def test_word_of_mouth_and_marketing_move_beliefs():
    st = one_customer()
    sh = shared(wom_pos=np.array([[1.0, 0.0]]), wom_neg=np.array([[0.0, 0.5]]))
    step_customers(st, slice(None), variates(occasions=[0], u_market=[[0.05, 0.05]]), sh, PARAMS)
    p0 = 0.5 + 0.05 * (1.0 * 0.5)  # recommended: toward 1
    p1 = 0.5 - 0.05 * (0.5 * 0.5)  # half the neighbours warn: toward 0
    p0, p1 = p0 + 0.2 * (QUALITY[0] - p0), p1 + 0.2 * (QUALITY[1] - p1)  # marketing reveals true quality
    np.testing.assert_allclose(st.perceived, [[p0, p1]], rtol=0, atol=1e-14)


def test_a_satisfied_customer_rarely_searches_and_the_switching_cost_holds_it():
    # firm 1 looks better (4 x 0.55 = 2.2) than firm 0 (2.0), but staying saves the switching cost (0.5)
    st = one_customer(perceived=[0.5, 0.55])
    step_customers(st, slice(None), variates(u_search=[0.01]), shared(), PARAMS)
    assert st.current.tolist() == [0]
    assert st.tenure.tolist() == [6]
    assert st.step_gained.tolist() == [NO_FIRM]


def test_without_a_switching_cost_a_searching_customer_switches():
    st = one_customer(perceived=[0.5, 0.55])
    step_customers(st, slice(None), variates(u_search=[0.01]), shared(switching_cost=0.0), PARAMS)
    assert st.current.tolist() == [1]
    assert st.tenure.tolist() == [1]
    assert st.step_gained.tolist() == [1]
    assert st.since.tolist() == [[-5, T]]
    assert st.step_cause.tolist() == [Cause.COMPETITOR_OFFER]  # satisfied: pulled away
    assert st.switch_cause.tolist() == [Cause.COMPETITOR_OFFER]
    assert st.last_buy.tolist() == [[3, T]]
    np.testing.assert_allclose(st.wallet, [[1.8, 2.0]], rtol=0, atol=1e-15)
    assert st.satisfaction[0, 0] == 0.1  # the old firm's memory is untouched


def test_a_switching_customer_records_the_firm_it_left():
    st = one_customer(perceived=[0.5, 0.55])
    step_customers(st, slice(None), variates(u_search=[0.01]), shared(switching_cost=0.0), PARAMS)
    assert st.step_left.tolist() == [0]


def test_the_search_probability_depends_on_satisfaction():
    # u_search 0.3: above the satisfied (0.05), below the dissatisfied (0.5) search probability
    satisfied = one_customer(perceived=[0.5, 0.7])
    step_customers(satisfied, slice(None), variates(u_search=[0.3]), shared(), PARAMS)
    assert satisfied.current.tolist() == [0]
    dissatisfied = one_customer(perceived=[0.5, 0.7], threshold=0.2)
    step_customers(dissatisfied, slice(None), variates(u_search=[0.3]), shared(), PARAMS)
    assert dissatisfied.current.tolist() == [1]
    assert dissatisfied.step_cause.tolist() == [Cause.NEEDS_NOT_MET]


@pytest.mark.parametrize(
    ("changes", "shared_changes", "cause"),
    [
        ({"last_failure": T - 8}, {}, Cause.SERVICE_FAILURE),  # within the attribution window
        ({"last_failure": T - 9}, {}, Cause.NEEDS_NOT_MET),  # just outside it
        ({}, {"price_rose": np.array([True, False])}, Cause.PRICE_RISE),
        ({}, {"price_rose": np.array([False, True])}, Cause.NEEDS_NOT_MET),  # the other firm's rise
    ],
)
def test_the_cause_of_a_switch(changes, shared_changes, cause):
    st = one_customer(perceived=[0.5, 0.7], threshold=0.2, **changes)
    step_customers(st, slice(None), variates(u_search=[0.3]), shared(**shared_changes), PARAMS)
    assert st.current.tolist() == [1]
    assert st.step_cause.tolist() == [cause]
    assert st.switch_cause.tolist() == [cause]


def test_price_enters_utility_relative_to_the_reference():
    # firm 1 is 40% dearer than the reference: utility 4 x 0.55 - 1.0 x 0.4 = 1.8 < 2.0
    st = one_customer(perceived=[0.5, 0.55])
    sh = shared(switching_cost=0.0, price=np.array([30.0, 42.0]))
    step_customers(st, slice(None), variates(u_search=[0.01]), sh, PARAMS)
    assert st.current.tolist() == [0]
    insensitive = one_customer(perceived=[0.5, 0.55], price_sensitivity=0.0)
    step_customers(insensitive, slice(None), variates(u_search=[0.01]), sh, PARAMS)
    assert insensitive.current.tolist() == [1]


def test_a_life_event_takes_a_customer_out_of_the_market():
    st = one_customer()
    step_customers(st, slice(None), variates(u_life=[0.001], u_search=[0.0]), shared(), PARAMS)
    assert st.active.tolist() == [False]
    assert st.current.tolist() == [NO_FIRM]
    assert st.tenure.tolist() == [0]
    assert st.step_purchases.tolist() == [0]
    assert st.step_cause.tolist() == [Cause.NATURAL_CHURN]
    assert st.step_gained.tolist() == [NO_FIRM]
    np.testing.assert_allclose(st.wallet, [[1.8, 0.0]], rtol=0, atol=1e-15)


def test_a_customer_leaving_the_market_records_the_firm_it_left():
    st = one_customer()
    step_customers(st, slice(None), variates(u_life=[0.001]), shared(), PARAMS)
    assert st.step_left.tolist() == [0]


def test_an_absent_customer_stays_out_unless_it_reenters():
    absent = {"active": False, "current": NO_FIRM, "tenure": 0}
    st = one_customer(**absent)
    step_customers(st, slice(None), variates(u_life=[0.5], u_market=[[0.0, 0.0]]), shared(), PARAMS)
    assert (st.active.tolist(), st.current.tolist(), st.step_purchases.tolist()) == ([False], [NO_FIRM], [0])
    np.testing.assert_array_equal(st.perceived, [[0.5, 0.5]])  # absent customers see no marketing
    # re-entry (u_life below p_enter, above p_leave): a prospect chooses without any switching cost
    st = one_customer(perceived=[0.6, 0.55], **absent)
    step_customers(st, slice(None), variates(u_life=[0.05]), shared(), PARAMS)
    assert (st.active.tolist(), st.current.tolist(), st.tenure.tolist()) == ([True], [0], [1])
    assert st.step_gained.tolist() == [0]
    assert st.step_left.tolist() == [NO_FIRM]
    assert st.step_cause.tolist() == [Cause.NONE]
    assert st.step_purchases.tolist() == [2]


def test_repertoire_customers_choose_only_on_an_occasion():
    params = dataclasses.replace(PARAMS, contractual=False)
    st = one_customer(perceived=[0.5, 0.7], threshold=0.2)
    step_customers(st, slice(None), variates(u_search=[0.0], occasions=[0]), shared(), params)
    assert st.current.tolist() == [0]
    st = one_customer(perceived=[0.5, 0.7], threshold=0.2)
    step_customers(st, slice(None), variates(u_search=[0.0], occasions=[1]), shared(), params)
    assert st.current.tolist() == [1]
    assert st.step_purchases.tolist() == [1]
    assert st.step_gained.tolist() == [1]  # never bought there before: won anew


@pytest.mark.parametrize(
    ("previous", "won"),
    [
        (T - 1, False),
        (T - 7, False),
        pytest.param(T - 8, False, id="still-a-customer-at-t-1"),
        (T - 9, True),
        (NEVER, True),
    ],
)
def test_repertoire_win_back_needs_a_lapsed_customer(previous, won):
    """Won back only if not a customer at t-1, that is, if ``(t - 1) - previous >= lapse_steps``."""
    params = dataclasses.replace(PARAMS, contractual=False)  # lapse: 8 steps
    st = one_customer(last_buy=[previous, NEVER])
    step_customers(st, slice(None), variates(), shared(), params)
    assert st.step_gained.tolist() == [0 if won else NO_FIRM]
    assert st.last_buy.tolist() == [[T, NEVER]]


def test_a_step_of_some_rows_leaves_the_others_alone():
    st = CustomerState.allocate(3, 2, 3)
    for name, value in one_customer(perceived=[0.5, 0.55]).arrays().items():
        getattr(st, name)[:] = value
    before = {k: v.copy() for k, v in st.arrays().items()}
    v = variates(u_search=[0.01, 0.01, 0.01])
    v = Variates(**{f.name: None if getattr(v, f.name) is None else np.repeat(getattr(v, f.name), 3, axis=0)
                    for f in dataclasses.fields(Variates)})
    sh = shared(switching_cost=0.0, wom_pos=np.zeros((3, 2)), wom_neg=np.zeros((3, 2)))
    step_customers(st, slice(1, 2), v, sh, PARAMS)
    for name, arr in st.arrays().items():
        np.testing.assert_array_equal(arr[[0, 2]], before[name][[0, 2]], err_msg=name)
    assert st.current.tolist() == [0, 1, 0]
    # the same customer stepped alone ends in the same state as row 1
    alone = one_customer(perceived=[0.5, 0.55])
    step_customers(alone, slice(None), variates(u_search=[0.01]), shared(switching_cost=0.0), PARAMS)
    for name, arr in alone.arrays().items():
        np.testing.assert_array_equal(st.arrays()[name][1:2], arr, err_msg=name)


def test_quality_judges_offers_against_expectations_through_kano_shapes():
    from loyaltysim.model.rules import quality_index

    expectation = np.array([[0.6, 0.6, 0.2]])
    np.testing.assert_allclose(quality_index(WEIGHTS[None, :], LEVELS, expectation, KANO, 2.0), [QUALITY],
                               rtol=0, atol=1e-15)
    # more of a must-be attribute than expected buys nothing; more of an attractive one counts in full
    richer = LEVELS.copy()
    richer[1, 0] = 1.0
    richer[1, 2] = 1.0
    q = quality_index(WEIGHTS[None, :], richer, expectation, KANO, 2.0)
    assert q[0, 1] == pytest.approx(QUALITY[1] + 0.2 * 0.2)
