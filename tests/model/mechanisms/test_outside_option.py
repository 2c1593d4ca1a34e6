"""The outside option (ODD 3.3.34, model/mechanisms/outside_option.py): a searching customer may choose none of the
modelled firms, which allows a market with one firm."""

from __future__ import annotations

import numpy as np
import pytest

from loyaltysim import simulate
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms import outside_option
from loyaltysim.scenario import ScenarioError

MARKETS = ("contractual", "repertoire")
ONE_FIRM = {"market__firms": "first only"}  # see _one_firm


def _one_firm(make_scenario, scenario_data, utility: float = 0.0, **overrides):
    """The small baseline with its focal firm alone, the outside option on at ``utility`` (price elsewhere: 30)."""
    data = scenario_data(**overrides)
    data["market"]["firms"] = data["market"]["firms"][:1]
    data["market"]["events"] = []
    data["market"]["outside_option"] = {"enabled": True, "utility": utility, "reference_price": 30.0}
    from loyaltysim.scenario import scenario_from_dict

    return scenario_from_dict(data, source="one firm")


def test_choose_takes_the_outside_option_only_when_it_beats_every_firm():
    score = np.array([[1.0, 2.0, 0.5, -np.inf], [0.0, 3.0, 0.5, 0.2]])  # [F, m]
    choice = np.array([0, 1, 0, 1], np.int32)
    got = outside_option.choose(score, choice, np.array([1.5, 2.9, 0.5, 0.3]))
    np.testing.assert_array_equal(got, [-1, 1, 0, -1])  # a tie goes to the firms


def test_one_firm_needs_the_outside_option_and_the_message_says_so(scenario_data):
    from loyaltysim.scenario import scenario_from_dict

    data = scenario_data()
    data["market"]["firms"] = data["market"]["firms"][:1]
    data["market"]["events"] = []
    with pytest.raises(ScenarioError, match=r"market\.firms: a market needs at least two firms \(got 1\); .*"
                                            r"market\.outside_option\.enabled = true"):
        scenario_from_dict(data)
    data["market"]["firms"] = []
    with pytest.raises(ScenarioError, match=r"market\.firms: .*at least 1 item"):
        scenario_from_dict(data)
    for bad, words in (({"utility": float("inf")}, "finite"), ({"utility": True}, "number"),
                       ({"reference_price": 0.0}, "greater than 0")):
        data = scenario_data(market__outside_option={"enabled": True, **bad})
        with pytest.raises(ScenarioError, match=rf"market\.outside_option\.\w+: .*{words}"):
            scenario_from_dict(data)


@pytest.mark.parametrize("market", MARKETS)
def test_a_very_low_utility_changes_nothing(make_scenario, market):
    """Switched on at a utility nobody prefers, the outside option leaves the run as it is without it: its shocks come
    from its own stream, and no other draw moves."""
    plain = simulate(make_scenario(market__type=market), seed=3).tables
    never = simulate(make_scenario(market__type=market,
                                   market__outside_option={"enabled": True, "utility": -1e9}), seed=3).tables
    for name in ("firms", "market", "defections", "customers"):
        assert plain[name].equals(never[name]), name


@pytest.mark.parametrize("market", MARKETS)
def test_the_outside_option_takes_more_choices_the_higher_its_utility(make_scenario, scenario_data, market):
    """With one firm: the higher the outside option's utility, the more searching customers choose it (fewer customers
    with the firm, fewer purchases there), and the more customers leave the firm for "none"."""
    rows = []
    for utility in (-1e9, 2.5, 3.5, 4.5):
        sc = _one_firm(make_scenario, scenario_data, utility, market__type=market)
        model = LoyaltyMarket(sc, seed=6)
        elsewhere = purchases = 0
        for _ in range(30):
            model.step()
            st = model.customers
            elsewhere += int((st.active & (st.current < 0)).sum())
            purchases += int(st.step_purchases.sum())
        departures = model.accounts.departures
        rows.append((utility, elsewhere, purchases, sum(int((d["destination"] < 0).sum()) for d in departures)))
    elsewhere = [r[1] for r in rows]
    bought = [r[2] for r in rows]
    assert elsewhere[0] == 0  # nobody takes an option worth nothing
    assert elsewhere == sorted(elsewhere) and elsewhere[1] < elsewhere[-1], rows
    assert bought == sorted(bought, reverse=True) and bought[-1] < 0.9 * bought[0], rows


def test_a_customer_with_a_firm_who_goes_elsewhere_defects_to_none(make_scenario, scenario_data):
    """A contractual customer who searches and takes the outside option leaves its firm: a departure to "none", with a
    cause, and no purchase that step."""
    sc = _one_firm(make_scenario, scenario_data, 3.0)
    result = simulate(sc, seed=2)
    defections = result.tables["defections"]
    switched = defections[defections["cause"] != "natural_churn"]
    assert len(switched) > 20
    assert switched["destination"].isna().all() or (switched["destination"] == "none").all()
    firms = result.tables["firms"]
    assert (firms["defections"].sum()) == len(defections)


def test_the_price_elsewhere_makes_a_single_firms_price_matter(make_scenario, scenario_data):
    """With one firm the market's reference price is the price elsewhere: a dearer firm loses more choices to the
    outside option (without it, the firm's own price would be its reference, whatever it is)."""
    for reference_price in (False, True):  # with the customers' own reference prices, those arriving without a firm
        lost = []  # start from the price elsewhere
        for price in (30.0, 45.0):
            sc = _one_firm(make_scenario, scenario_data, 3.0, policy__price=price,
                           market__customers__reference_price={"enabled": reference_price},
                           market__customers__arrivals={"enabled": reference_price, "over": "4 weeks"})
            model = LoyaltyMarket(sc, seed=4)
            assert model.price_ref == 30.0
            model.run(20)
            lost.append(int((model.customers.active & (model.customers.current < 0)).sum()))
        assert lost[1] > lost[0] + 20, (reference_price, lost)


@pytest.mark.parametrize("market", MARKETS)
def test_one_firm_one_at_a_time_equals_vectorized(make_scenario, scenario_data, market):
    """A single firm with the outside option and a cohort arriving over time: the one-at-a-time path gives the
    vectorized path's numbers."""
    sc = _one_firm(make_scenario, scenario_data, 3.0, market__type=market, market__customers__population=150,
                   market__customers__arrivals={"enabled": True, "over": "6 weeks"})
    fast, slow = LoyaltyMarket(sc, seed=7), LoyaltyMarket(sc, seed=7, one_at_a_time=True)
    for t in range(1, 16):
        fast.step()
        slow.step()
        for name, x in fast.customers.arrays().items():
            np.testing.assert_array_equal(x, slow.customers.arrays()[name], err_msg=f"{name} at step {t}")
    assert (fast.customers.active & (fast.customers.current < 0)).any()
