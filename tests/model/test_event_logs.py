"""Tests of the per-customer event logs (outputs.event_logs): they add up to the firms' books and change nothing."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from loyaltysim import simulate
from loyaltysim.scenario import ScenarioError

LOGS = ["purchases", "service"]


def _digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("market", ["contractual", "repertoire"])
def test_event_logs_add_up_to_each_firms_step(make_scenario, market):
    scenario = make_scenario(market__type=market, outputs__event_logs=LOGS)
    tables = simulate(scenario, seed=4).tables
    firms = tables["firms"].set_index(["step", "firm"])
    purchases = tables["purchases"]
    by_firm = purchases.groupby(["step", "firm"])[["occasions", "units", "revenue"]].sum()
    index = by_firm.index
    np.testing.assert_array_equal(by_firm["occasions"], firms.loc[index, "purchases"])
    np.testing.assert_allclose(by_firm["units"], firms.loc[index, "units"], rtol=1e-12)
    np.testing.assert_allclose(by_firm["revenue"], firms.loc[index, "revenue"], rtol=1e-9)
    sold = firms[firms["units"] > 0]
    assert set(sold.index) == set(index)  # every sale is logged, and nothing else
    service = tables["service"]
    failures = service.groupby(["step", "firm"]).size()
    assert failures.sum() == firms["failures"].sum() > 0
    np.testing.assert_array_equal(failures, firms.loc[failures.index, "failures"])
    complaints = service[service["complained"]].groupby(["step", "firm"]).size()
    np.testing.assert_array_equal(complaints, firms.loc[complaints.index, "complaints"])
    assert not (service["recovered"] & ~service["complained"]).any()  # only a complaint can be recovered


def test_keeping_event_logs_changes_no_other_table(make_scenario):
    plain = simulate(make_scenario(), seed=2).tables
    logged = simulate(make_scenario(outputs__event_logs=LOGS), seed=2).tables
    assert set(logged) == set(plain) | set(LOGS)
    for name, table in plain.items():
        assert _digest(logged[name]) == _digest(table), name


def test_an_unknown_or_repeated_event_log_is_rejected(make_scenario):
    with pytest.raises(ScenarioError, match=r"outputs\.event_logs"):
        make_scenario(outputs__event_logs=["purchases", "dreams"])
    with pytest.raises(ScenarioError, match="each event log once"):
        make_scenario(outputs__event_logs=["service", "service"])


def test_programme_events_add_up_to_the_programmes_table(make_scenario):
    """Joins, quits (a yearly fee is reviewed) and redemptions, customer by customer, match the programme's books;
    and keeping the log changes no other table."""
    points = {"kind": "points", "name": "Points", "start": "3 weeks", "earn_rate": 1.0,
              "rewards": [{"points": 200, "value": 2.0, "cost": 2.0}], "expiry": "52 weeks",
              "enrolment": {"awareness": "30% per week", "fee": "10 per year"},
              "tiers": {"window": "8 weeks", "review": "4 weeks",
                        "levels": [{"name": "silver", "spend": 150.0, "discount": 0.02}]}}
    overrides = {"policy__programmes": [points], "time__horizon": "70 weeks", "market__customers__population": 400}
    plain = simulate(make_scenario(**overrides), seed=5).tables
    tables = simulate(make_scenario(**overrides, outputs__event_logs=["programme_events"]), seed=5).tables
    for name, table in plain.items():
        assert _digest(tables[name]) == _digest(table), name
    events, books = tables["programme_events"], plain["programmes"].set_index(["step", "programme"])
    counts = events.groupby(["step", "programme", "event"], observed=False).size().unstack("event")
    for event, column in (("joined", "joined"), ("left", "quit")):
        np.testing.assert_array_equal(counts[event], books.loc[counts.index, column])
        assert counts[event].sum() == books[column].sum() > 0, event
    redeemed = events[events["event"] == "redeemed"].groupby(["step", "programme"])["points"].sum()
    assert redeemed.sum() == books["points_redeemed"].sum() > 0
    np.testing.assert_allclose(redeemed, books.loc[redeemed.index, "points_redeemed"], rtol=1e-12)
    assert events.loc[events["event"] == "redeemed", "balance"].notna().all()
    assert set(events["tier"].dropna().unique()) <= {0, 1}


@pytest.mark.parametrize("market", ["contractual", "repertoire"])
def test_the_purchase_log_has_one_row_per_purchase_and_adds_up_with_one_firm_and_arrivals(scenario_data, market):
    """A single firm with the outside option and a cohort arriving over time, at daily steps: the purchase log has
    exactly one row per customer who bought in a step (none twice, none missing), and its totals are the firm's
    purchases, units and revenue."""
    from loyaltysim.model.market import LoyaltyMarket
    from loyaltysim.scenario import scenario_from_dict

    data = scenario_data(market__type=market, market__customers__population=300, time__step="day",
                         time__horizon="10 weeks", time__warmup="0 weeks", outputs__event_logs=["purchases"],
                         market__customers__arrivals={"enabled": True, "over": "4 weeks"},
                         market__outside_option={"enabled": True, "utility": 3.0, "reference_price": 30.0})
    data["market"]["firms"] = data["market"]["firms"][:1]
    data["market"]["events"] = []
    scenario = scenario_from_dict(data)
    model = LoyaltyMarket(scenario, seed=3)
    bought = []  # (step, customer) of every purchase, read off the state step by step
    for t in range(1, scenario.steps() + 1):
        model.step()
        who = np.flatnonzero(model.customers.step_purchases > 0)
        bought += [(t, int(i)) for i in who]
    tables = simulate(scenario, seed=3).tables
    log, firms = tables["purchases"], tables["firms"]
    assert len(log) == len(bought) > 500
    assert not log.duplicated(["step", "customer"]).any()
    assert list(zip(log["step"], log["customer"], strict=True)) == bought  # in step order, then customer order
    assert (log["occasions"] >= 1).all() and (log["firm"] == "Focal").all()
    assert log["occasions"].sum() == firms["purchases"].sum()
    np.testing.assert_allclose(log["units"].sum(), firms["units"].sum(), rtol=1e-12)
    np.testing.assert_allclose(log["revenue"].sum(), firms["revenue"].sum(), rtol=1e-9)
    by_step = log.groupby("step")["revenue"].sum()
    np.testing.assert_allclose(by_step, firms.set_index("step").loc[by_step.index, "revenue"], rtol=1e-9)
