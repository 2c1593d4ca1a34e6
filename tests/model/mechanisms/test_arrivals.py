"""Arrivals over time (ODD 3.3.33, model/mechanisms/arrivals.py): customers who enter the market over a window, each on
its own arrival step, and buy on that step."""

from __future__ import annotations

import numpy as np
import pytest

from loyaltysim import simulate
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms.arrivals import Arrivals
from loyaltysim.scenario import Arrivals as ArrivalsSpec
from loyaltysim.scenario import ScenarioError

MARKETS = ("contractual", "repertoire")


def test_arrival_steps_are_uniform_over_the_window():
    arrivals = Arrivals(ArrivalsSpec(enabled=True, over="12 weeks"), 120_000, "day", np.random.default_rng(1))
    steps = arrivals.step
    assert steps.min() == 1 and steps.max() == 84 == arrivals.last  # 12 weeks of days, from step 1
    counts = np.bincount(steps, minlength=85)[1:]
    expected = steps.size / 84
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)  # each day within 5 binomial sd
    weekly = Arrivals(ArrivalsSpec(enabled=True, over="12 weeks"), 1000, "week", np.random.default_rng(1))
    assert set(np.unique(weekly.step)) == set(range(1, 13))


def test_a_schedule_of_shares_is_followed_period_by_period_and_normalised():
    spec = ArrivalsSpec(enabled=True, shares=[0.5, 0.0, 0.3, 0.2004], every="1 week")  # sums to 1.0004: normalised
    arrivals = Arrivals(spec, 200_000, "day", np.random.default_rng(2))
    week = (arrivals.step - 1) // 7
    shares = np.bincount(week, minlength=4) / week.size
    np.testing.assert_allclose(shares, np.array([0.5, 0.0, 0.3, 0.2004]) / 1.0004, atol=0.004)
    assert shares[1] == 0.0  # nobody arrives in a period of share 0
    days = np.bincount((arrivals.step - 1) % 7, minlength=7) / week.size
    np.testing.assert_allclose(days, 1 / 7, atol=0.004)  # uniform within the period
    assert arrivals.last == 28


def test_bad_arrivals_are_refused_with_what_is_allowed(make_scenario):
    for bad, words in (({"shares": [0.5, 0.3]}, "must sum to 1"),
                       ({"shares": []}, "must sum to 1"),
                       ({"shares": [0.5, -0.1, 0.6]}, "greater than or equal to 0"),
                       ({"over": "12 weeks", "shares": [1.0]}, "either over .* or shares"),
                       ({"over": "0 weeks"}, "longer than 0"),
                       ({"every": "0 days", "shares": [1.0]}, "longer than 0")):
        with pytest.raises((ScenarioError, ValueError), match=words):
            ArrivalsSpec(enabled=True, **bad)
    with pytest.raises(ScenarioError, match=r"market\.customers\.arrivals: the last arrivals come at step 40, after "
                                            r"the horizon of 30 steps"):
        make_scenario(market__customers__arrivals={"enabled": True, "over": "40 weeks"})
    with pytest.raises(ScenarioError, match=r"market\.customers\.arrivals\.shares: .*must sum to 1.*summing to 0\.4"):
        make_scenario(market__customers__arrivals={"enabled": True, "shares": [0.2, 0.2]})


def _arrivals_run(make_scenario, market: str, seed: int = 3, **extra):
    sc = make_scenario(market__type=market, market__customers__population=400, time__warmup="0 weeks",
                       market__customers__reentry="100% per month",  # re-entry as quick as it gets
                       market__customers__arrivals={"enabled": True, "over": "10 weeks", **extra})
    return sc, LoyaltyMarket(sc, seed=seed)


@pytest.mark.parametrize("market", MARKETS)
def test_nobody_is_in_the_market_before_arriving_and_everyone_buys_on_arrival(make_scenario, market):
    """Before its arrival step a customer is out of the market, with no firm and no history, even with re-entry at
    its quickest; on it, it enters, chooses a firm and buys (at least one occasion); later it may leave and come back
    as usual."""
    _, model = _arrivals_run(make_scenario, market)
    st, arrive = model.customers, model.arrivals.step
    assert not st.active.any() and (st.current < 0).all() and (st.last_buy < -1000).all()
    assert (st.wallet == 0).all() and (st.tenure == 0).all()
    assert (model.firm_after_warmup < 0).all()
    for t in range(1, 25):
        model.step()
        pending = arrive > t
        assert not st.active[pending].any() and (st.current[pending] < 0).all(), t
        assert (st.step_purchases[pending] == 0).all() and (st.step_firm[pending] < 0).all()
        now = arrive == t
        assert st.active[now].all()
        assert (st.current[now] >= 0).all() and (st.step_purchases[now] >= 1).all(), t
        np.testing.assert_array_equal(st.step_firm[now], st.current[now])
        np.testing.assert_array_equal(model.firm_after_warmup[now], st.current[now])  # the cohort: the first firm
        gained = st.step_gained[now]
        np.testing.assert_array_equal(gained, st.current[now])  # won by the firm it chose
    assert st.active.sum() > 300  # most arrived and stayed


def test_without_a_first_purchase_an_arrival_enters_as_a_prospect(make_scenario):
    """Repertoire: without ``first_purchase`` a customer arriving without an occasion enters with no firm and chooses
    at its next occasion."""
    _, model = _arrivals_run(make_scenario, "repertoire", first_purchase=False)
    st, arrive = model.customers, model.arrivals.step
    entered_idle = 0
    for t in range(1, 11):
        model.step()
        now = arrive == t
        assert st.active[now].all()
        idle = now & (model.variates.occasions == 0)
        assert (st.current[idle] < 0).all() and (st.step_purchases[idle] == 0).all()
        entered_idle += idle.sum()
    assert entered_idle > 20


@pytest.mark.parametrize("market", MARKETS)
def test_a_cohort_arriving_over_time_logs_its_first_purchases(make_scenario, market):
    """The purchase log shows each customer's first purchase on its arrival step (the first row of each customer),
    as a firm's transaction log does."""
    sc = make_scenario(market__type=market, market__customers__population=300, time__warmup="0 weeks",
                       market__customers__arrivals={"enabled": True, "shares": [0.4, 0.3, 0.2, 0.1]},
                       outputs__event_logs=["purchases"])
    result = simulate(sc, seed=5)
    log = result.tables["purchases"]
    first = log.groupby("customer")["step"].min()
    model = LoyaltyMarket(sc, seed=5)  # the same draws: the same arrival steps
    np.testing.assert_array_equal(first.to_numpy(), model.arrivals.step[first.index.to_numpy()])
    assert first.size == 300  # every customer bought on arrival
    np.testing.assert_allclose(np.bincount(first.to_numpy(), minlength=5)[1:] / 300, [0.4, 0.3, 0.2, 0.1], atol=0.08)
    market_table = result.tables["market"]
    assert market_table["in_market"].iloc[0] < 0.6 * 300 and market_table["in_market"].iloc[4] > 0.9 * 300


def test_arrivals_off_or_on_leave_every_other_stream_alone(make_scenario):
    """Switching arrivals on draws only from its own stream: the population and every step's variates are those of
    the run without it."""
    plain = LoyaltyMarket(make_scenario(), seed=4)
    arriving = LoyaltyMarket(make_scenario(market__customers__arrivals={"enabled": True, "over": "4 weeks"}), seed=4)
    for name in ("purchase_rate", "basket", "threshold", "weights", "expectation", "perceived"):
        np.testing.assert_array_equal(getattr(plain.customers, name), getattr(arriving.customers, name), name)
    for _ in range(3):
        plain.step()
        arriving.step()
        for name in ("u_search", "u_gumbel", "u_fail", "u_market", "u_life"):
            np.testing.assert_array_equal(getattr(plain.variates, name), getattr(arriving.variates, name), name)


def test_a_warm_up_of_zero_and_of_one_step_work_with_arrivals(make_scenario):
    """A calibration run may start measuring at once: warm-up 0 or 1 step, with summaries and cohort measures."""
    for warmup in ("0 weeks", "1 week"):
        sc = make_scenario(time__warmup=warmup, market__customers__arrivals={"enabled": True, "over": "8 weeks"})
        result = simulate(sc, seed=2)
        focal = next(f for f in result.summary["firms"] if f["focal"])
        assert focal["customers_end"] > 0
        customers = result.tables["customers"]
        assert customers["firm_after_warmup"].notna().mean() > 0.9  # the cohort: each customer's first firm
