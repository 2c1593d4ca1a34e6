"""Perceived value against a reference price (model/mechanisms/reference_price.py): the rule, one customer by
hand, and the effect of a price rise in a market."""

import dataclasses

import numpy as np
import pytest

from loyaltysim import LoyaltyMarket
from loyaltysim.model.mechanisms.reference_price import adapt, start, value_response
from loyaltysim.model.rules import step_customers
from loyaltysim.model.state import CustomerState
from model.test_rules import PARAMS, T, one_customer, shared, variates

ON = dataclasses.replace(PARAMS, reference_price=True, reference_alpha=0.25, value_weight=0.1,
                         price_loss_aversion=2.0)


def test_a_price_above_the_reference_is_a_loss_that_weighs_more_than_a_saving():
    ref = np.full(3, 30.0)
    got = value_response(np.array([30.0, 27.0, 33.0]), ref, 0.1, 2.0)
    np.testing.assert_allclose(got, [0.0, 0.1 * 0.1, -2.0 * 0.1 * 0.1], rtol=1e-12)


def test_the_reference_moves_toward_the_price_paid_only_on_a_purchase():
    got = adapt(np.array([30.0, 30.0]), np.array([34.0, 34.0]), np.array([True, False]), 0.25)
    np.testing.assert_allclose(got, [31.0, 30.0], rtol=1e-15)


def test_customers_start_with_the_price_of_their_first_firm():
    st = CustomerState.allocate(3, 2, 1)
    st.current[:] = [1, 0, -1]
    start(st, np.array([28.0, 32.0]))
    assert st.ref_price.tolist() == [32.0, 28.0, 30.0]


def _experience(params, price: float, ref: float = 30.0, **changes):
    """One loyal purchase at firm 0 charging ``price``: the satisfaction and reference price after it."""
    st = one_customer(ref_price=ref, **changes)
    step_customers(st, slice(None), variates(), shared(price=np.array([price, 30.0])), params)
    return st.satisfaction[0, 0], st.ref_price[0]


def test_a_price_rise_is_felt_with_the_mechanism_and_not_without():
    at_ref, ref_after = _experience(ON, 30.0)
    dearer, ref_dearer = _experience(ON, 33.0)
    # the experience loses 2 x 0.1 x 10%, smoothed with weight 0.25 (PARAMS.sat_alpha)
    assert at_ref - dearer == pytest.approx(0.25 * 2.0 * 0.1 * 0.1, rel=1e-9)
    assert (ref_after, ref_dearer) == (30.0, pytest.approx(30.75))
    assert _experience(PARAMS, 30.0)[0] == _experience(PARAMS, 33.0)[0]  # switched off: price is not felt


def test_the_end_of_a_discount_is_felt():
    """A customer paying 20% less under a personal offer lowers its reference; paying the full price again
    afterwards is a loss, though the price never rose. Without the mechanism the discount leaves no trace."""
    experience = {}
    for params in (ON, PARAMS):
        st = one_customer(ref_price=30.0, offer_firm=0, offer_until=T, offer_discount=0.2)
        step_customers(st, slice(None), variates(), shared(), params)
        before = st.satisfaction[0, 0]
        step_customers(st, slice(None), variates(), shared(t=T + 1), params)  # the offer has ended
        experience[params.reference_price] = before + (st.satisfaction[0, 0] - before) / params.sat_alpha
        if params.reference_price:
            assert st.ref_price[0] == pytest.approx(28.5 + 0.25 * 1.5)  # paid 24, then 30
    # the reference had fallen to 30 - 0.25 x 6 = 28.5: paying 30 is 5.3% above it, a loss of 2 x 0.1 x that
    assert experience[True] - experience[False] == pytest.approx(0.1 * 2.0 * (28.5 - 30.0) / 28.5, rel=1e-9)


def test_choice_weighs_price_against_the_customers_own_reference():
    """Two customers alike but for their reference price: firm 1 is better and dearer; the one used to paying
    little finds the difference dearer (a price gap counts relative to the reference) and stays."""
    sh = shared(switching_cost=0.0, price=np.array([20.0, 30.0]))
    picks = {}
    for ref in (15.0, 60.0):
        st = one_customer(perceived=[0.5, 0.62], ref_price=ref)
        step_customers(st, slice(None), variates(u_search=[0.01]), sh, ON)
        picks[ref] = int(st.current[0])
    assert picks == {15.0: 0, 60.0: 1}


def _focal_satisfaction(make_scenario, seed: int, enabled: bool, rise: bool) -> float:
    """Mean satisfaction of the focal firm's customers with it, over the ten weeks after a 10% price rise."""
    events = [{"kind": "price_change", "at": "20 weeks", "firm": "Focal", "price": 33.0}] if rise else []
    sc = make_scenario(market__customers__population=1500, market__events=events,
                       market__customers__reference_price={"enabled": enabled})
    model = LoyaltyMarket(sc, seed=seed)
    model.run(20)
    values = []
    for _ in range(10):
        model.step()
        mine = model.customers.current == 0
        values.append(model.customers.satisfaction[mine, 0].mean())
    return float(np.mean(values))


def test_a_price_rise_dissatisfies_the_firms_customers_only_through_perceived_value(make_scenario):
    """Paired over seeds (the same draws with and without the rise): with the mechanism, the rise lowers the
    satisfaction of the firm's customers; without it, it changes satisfaction only through who stays, which is
    much less."""
    effect = {}
    for enabled in (True, False):
        effect[enabled] = np.array([_focal_satisfaction(make_scenario, s, enabled, True)
                                    - _focal_satisfaction(make_scenario, s, enabled, False) for s in range(4)])
    assert effect[True].max() < -0.003, effect
    assert np.abs(effect[False]).max() < 0.3 * np.abs(effect[True]).min(), effect
