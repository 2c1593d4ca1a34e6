"""Reliability in choice (model/mechanisms/reliability_beliefs.py): the rules, one customer by hand, and a service
crisis in a market."""

import dataclasses

import numpy as np

from loyaltysim import LoyaltyMarket
from loyaltysim.model.mechanisms.reliability_beliefs import expected, hear, learn, start
from loyaltysim.model.rules import step_customers
from loyaltysim.model.state import CustomerState
from model.test_rules import PARAMS, T, one_customer, shared, variates

ON = dataclasses.replace(PARAMS, reliability_choice=True, reliability_weight=10.0, reliability_alpha=0.25,
                         reliability_wom=0.1, recovery_credit=0.5)


def test_customers_know_their_own_firm_and_judge_the_others_by_the_market_average():
    st = CustomerState.allocate(2, 3, 1)
    st.current[:] = [2, -1]
    start(st, np.array([0.9, 0.99, 0.96]), np.array([True, False, True]))  # firm 1 is not in the market
    np.testing.assert_allclose(st.rel_belief, [[0.93, 0.93, 0.96], [0.93, 0.93, 0.93]], rtol=1e-15)


def test_a_purchase_teaches_failure_recovery_or_success():
    belief = np.full(4, 0.9)
    got = learn(belief, np.array([False, True, True, True]), np.array([False, False, True, False]),
                np.array([True, True, True, False]), 0.25, 0.5)
    np.testing.assert_allclose(got, [0.925, 0.675, 0.8, 0.9], rtol=1e-15)


def test_word_of_mouth_and_upgrades():
    # half the neighbours spoke of the first firm, believing it 0.99 reliable; nobody spoke of the second
    np.testing.assert_allclose(hear(np.array([0.9, 0.9]), np.array([0.5, 0.0]), np.array([0.495, 0.0]), 0.1),
                               [0.9045, 0.9], rtol=1e-15)
    # what is told is a belief, not a verdict: neighbours as sure as the listener leave it where it is
    np.testing.assert_allclose(hear(np.array([0.9]), np.array([1.0]), np.array([0.9]), 0.1), [0.9], rtol=1e-15)
    np.testing.assert_allclose(expected(np.array([0.9, 0.9]), np.array([0.0, 0.5])), [0.9, 0.95], rtol=1e-15)


def _choice(params, rel_belief, **changes) -> int:
    """A searching customer of firm 0, the two firms alike but for what it believes of their reliability."""
    st = one_customer(perceived=[0.5, 0.5], rel_belief=rel_belief, **changes)
    step_customers(st, slice(None), variates(u_search=[0.01]), shared(switching_cost=0.0), params)
    return int(st.current[0])


def test_customers_weigh_the_reliability_they_expect():
    assert _choice(ON, [0.9, 0.98]) == 1  # the more reliable firm wins
    assert _choice(ON, [0.98, 0.9]) == 0
    assert _choice(PARAMS, [0.9, 0.98]) == 0  # switched off: reliability beliefs are not weighed
    # a win-back guarantee removing 90% of failures at firm 1 makes it the more reliable while the offer lasts
    assert _choice(ON, [0.98, 0.9], offer_firm=1, offer_until=T, offer_upgrade=0.9) == 1
    assert _choice(ON, [0.98, 0.9], offer_firm=1, offer_until=T - 1, offer_upgrade=0.9) == 0  # expired


def test_a_failure_lowers_the_belief_in_the_firm_bought_from():
    st = one_customer(rel_belief=[0.98, 0.98])
    step_customers(st, slice(None), variates(u_fail=[0.999]), shared(), ON)
    assert st.step_failed.tolist() == [True]
    np.testing.assert_allclose(st.rel_belief, [[0.75 * 0.98, 0.98]], rtol=1e-15)


def _lost_by_the_firm_in_crisis(make_scenario, seed: int, crisis: bool, mechanism: dict) -> int:
    """Rival A's customers lost (net) from the start of an 8-week service crisis to 20 weeks after it."""
    events = ([{"kind": "service_crisis", "at": "12 weeks", "firm": "Rival A", "duration": "8 weeks",
                "reliability": 0.6}] if crisis else [])
    sc = make_scenario(market__customers__population=1500, market__events=events, time__horizon="40 weeks",
                       market__customers__reliability_choice=mechanism)
    model = LoyaltyMarket(sc, seed=seed).run(11)
    before = int((model.customers.current == 1).sum())
    model.run(29)
    return before - int((model.customers.current == 1).sum())


def test_a_service_crisis_costs_a_firm_more_customers_when_reliability_is_weighed(make_scenario):
    """Paired over seeds: the crisis's extra loss of customers (against the same run without it) is larger when
    customers weigh reliability; with a weight of 0 the mechanism changes nothing in choice (the same counts as
    switched off)."""
    extra = {}
    for name, mechanism in {"on": {"enabled": True}, "off": {"enabled": False}, "weight 0": {"enabled": True,
                                                                                               "weight": 0.0}}.items():
        extra[name] = np.array([_lost_by_the_firm_in_crisis(make_scenario, s, True, mechanism)
                                - _lost_by_the_firm_in_crisis(make_scenario, s, False, mechanism) for s in range(3)])
    assert (extra["on"] > extra["off"] + 15).all(), extra
    assert extra["weight 0"].tolist() == extra["off"].tolist()
