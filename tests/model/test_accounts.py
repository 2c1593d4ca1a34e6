"""Tests of membership, departures and the firms' books (model/accounts.py) on hand-built state."""

from types import SimpleNamespace

import numpy as np
import pytest

from loyaltysim.model.accounts import Membership, firm_books
from loyaltysim.model.mechanisms.surveys import Surveys
from loyaltysim.model.state import NEVER, NO_FIRM, Cause, CustomerState


def _repertoire_state() -> CustomerState:
    """Four shoppers and two stores; lapse 3 steps; step t = 10."""
    st = CustomerState.allocate(4, 2, 1)
    st.threshold[:] = 0.0
    st.last_buy[:] = NEVER
    st.last_buy[:, 0] = [7, 7, 7, 9]  # 0-2 last bought at store 0 three steps ago: lost to it now
    st.current[:] = [1, 1, 0, 0]  # 0 and 1 moved their habit to store 1; 2 still has store 0 as its habit
    st.previous[:] = [0, NO_FIRM, NO_FIRM, NO_FIRM]  # 0 switched away from store 0 (cause recorded at the switch)
    st.switch_cause[0] = Cause.PRICE_RISE
    st.satisfaction[:, 0] = [0.1, -0.2, 0.1, 0.1]  # 1 is dissatisfied with store 0
    st.since[:, 0] = 1
    return st


def test_a_repertoire_customer_is_lost_when_its_last_purchase_is_the_lapse_window_old():
    st = _repertoire_state()
    membership = Membership(contractual=False, lapse_steps=3, n_firms=2)
    np.testing.assert_array_equal(membership.counts(st, 10), [1, 0])  # only customer 3 bought within the window
    dep = membership.departures(st, 10)
    np.testing.assert_array_equal(dep["customer"], [0, 1, 2])
    np.testing.assert_array_equal(dep["firm"], [0, 0, 0])
    # switched away: the cause of that switch; moved and dissatisfied: needs not met; still its habit: fluctuation
    assert list(dep["cause"]) == [Cause.PRICE_RISE, Cause.NEEDS_NOT_MET, Cause.MARKET_FLUCTUATION]
    np.testing.assert_array_equal(dep["destination"], [1, 1, NO_FIRM])
    np.testing.assert_array_equal(dep["tenure"], [6, 6, 6])


def test_a_contractual_customer_leaves_when_it_changes_provider():
    st = CustomerState.allocate(3, 2, 1)
    st.current[:] = [1, 0, NO_FIRM]
    st.step_left[:] = [0, NO_FIRM, 1]
    st.step_cause[:] = [Cause.COMPETITOR_OFFER, Cause.NONE, Cause.NATURAL_CHURN]
    st.since[:] = 2
    membership = Membership(contractual=True, lapse_steps=13, n_firms=2)
    np.testing.assert_array_equal(membership.counts(st, 5), [1, 1])
    dep = membership.departures(st, 5)
    np.testing.assert_array_equal(dep["customer"], [0, 2])
    np.testing.assert_array_equal(dep["destination"], [1, NO_FIRM])
    assert list(dep["cause"]) == [Cause.COMPETITOR_OFFER, Cause.NATURAL_CHURN]


def _firm(**overrides):
    values = dict(price=10.0, unit_cost=6.0, recovery_cost=5.0, acquisition_cost=20.0, contact_spend=3.0,
                  marketing_spend=7.0, fixed_cost=11.0, invested=13.0, available=True)
    return SimpleNamespace(**{**values, **overrides})


def test_a_firms_books_add_up():
    books = firm_books(_firm(), units=100.0, complaints=2.0, gained=1.0, discounts=4.0, offer_costs=1.0,
                       member_discounts=6.0, programme_cost=8.0, programme_fees=9.0)
    assert books["revenue"] == 100 * 10 - 4 - 6
    costs = 100 * 6 + 2 * 5 + 7 + 11 + 20 + 13 + (3 + 1) + 8
    assert books["profit"] == pytest.approx(books["revenue"] + 9 - costs)
    absent = firm_books(_firm(available=False, invested=0.0), units=0.0, complaints=0.0, gained=0.0)
    assert absent["revenue"] == absent["marketing_cost"] == absent["fixed_cost"] == absent["profit"] == 0.0


def test_survey_metrics_count_scores_and_net_promoters():
    answers = {"firm": np.array([0, 0, 0, 0, 1]), "score": np.array([5, 4, 2, 5, 3]),
               "recommend": np.array([10, 9, 3, 7, 8])}
    mine = Surveys.firm_metrics(answers, 0)
    assert mine["surveyed"] == 4 and (mine["score_5"], mine["score_4"], mine["score_2"]) == (2, 1, 1)
    assert mine["nps"] == pytest.approx(100 * (2 / 4 - 1 / 4))
    none = Surveys.firm_metrics(None, 0)
    assert none["surveyed"] == 0 and np.isnan(none["nps"])
