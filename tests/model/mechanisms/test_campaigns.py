"""Win-back campaigns and second lifetimes: accounting, targeting, the mechanism of acceptance, and CLV."""

import math

import numpy as np
import pytest

from loyaltysim.measures.value import clv, expected_lifetime, return_on_regain
from loyaltysim.model.agents import Firm
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.state import NO_FIRM, Cause

CAMPAIGN = {"kind": "win_back", "every": "4 weeks", "start": "6 weeks",
            "target": {"lapsed_at_least": "1 week", "lapsed_at_most": "26 weeks"},
            "offer": {"discount": 0.3, "duration": "8 weeks", "cost": 10.0}, "contact_cost": 5.0}


def _market(make_scenario, campaign=CAMPAIGN, seed=1, population=2000, steps=30):
    scenario = make_scenario(market__customers__population=population,
                             policy__campaigns=[campaign] if campaign else [])
    return LoyaltyMarket(scenario, seed=seed).run(steps)


def _focal(model):
    frame = model.datacollector.get_agenttype_vars_dataframe(Firm).reset_index()
    return frame[frame["AgentID"] == model.firms[0].unique_id]


def test_campaign_cost_is_contacts_times_contact_cost_plus_accepted_offers(make_scenario):
    model = _market(make_scenario)
    focal = _focal(model)
    contacts, regained = focal["contacts"].sum(), focal["regained"].sum()
    assert contacts > 0 and regained > 0
    assert focal["campaign_cost"].sum() == pytest.approx(contacts * 5.0 + regained * 10.0)
    # contacts happen only on the campaign's days: steps 7, 11, 15, ...
    days = focal.loc[focal["contacts"] > 0, "Step"].astype(int).tolist()
    assert days and all((d - 7) % 4 == 0 for d in days)
    # discounts are revenue given up: revenue = units x price - discounts
    np.testing.assert_allclose(focal["revenue"], focal["units"] * focal["price"] - focal["discounts"], rtol=1e-12)


def test_only_lapsed_customers_of_the_firm_are_contacted_and_each_regain_is_counted_once(make_scenario):
    model = _market(make_scenario)
    st = model.customers
    contacted = st.contacted_at > 0
    assert (st.offer_firm[contacted] == 0).all()
    back = st.regained_by == 0
    assert back.any()
    assert (st.current[back] == 0).all()  # a second lifetime is with the firm that won them back
    assert (st.regained_at[back] >= st.contacted_at[back]).all()  # ... which starts at reacquisition
    regained_total = _focal(model)["regained"].sum()
    ended = sum(int((d["second_lifetime"] & (d["firm"] == 0)).sum()) for d in model.accounts.departures)
    assert regained_total == back.sum() + ended  # every regain is either still running or ended once


def test_no_campaign_contacts_nobody_and_changes_nothing(make_scenario):
    model = _market(make_scenario, campaign=None)
    focal = _focal(model)
    assert focal["contacts"].sum() == 0 and focal["campaign_cost"].sum() == 0.0
    assert (model.customers.offer_firm == NO_FIRM).all()


def test_targeting_by_cause_and_recontact(make_scenario):
    campaign = {**CAMPAIGN, "target": {**CAMPAIGN["target"], "causes": ["competitor_offer"]},
                "recontact_after": "52 weeks"}
    model = _market(make_scenario, campaign=campaign)
    st = model.customers
    contacted = st.contacted_at > 0
    assert contacted.any()
    # causes are recorded when a customer leaves; those contacted had left for a competitor's offer (their
    # latest departure may have come later, after the contact)
    assert (st.switch_cause[contacted & (st.lost_at < st.contacted_at)] == Cause.COMPETITOR_OFFER).all()
    # never twice within a year: each contacted customer was contacted once in 30 weeks
    assert _focal(model)["contacts"].sum() == contacted.sum()


def test_a_deeper_discount_wins_back_more_customers(make_scenario):
    won = {}
    for discount in (0.05, 0.5):
        campaign = {**CAMPAIGN, "offer": {**CAMPAIGN["offer"], "discount": discount}}
        won[discount] = sum(_focal(_market(make_scenario, campaign=campaign, seed=s))["regained"].sum()
                            for s in (1, 2, 3))
    assert won[0.5] > 1.5 * won[0.05], won


def test_clv_against_hand_computed_values():
    # 100 a period, retained 80%, discounted 10%: q = 0.8 / 1.1
    q = 0.8 / 1.1
    assert clv(100.0, 0.8, 0.1) == pytest.approx(100.0 / (1 - q))  # 366.67
    assert clv(100.0, 0.8, 0.1) == pytest.approx(366.6666666, rel=1e-9)
    assert clv(100.0, 0.8, 0.1, periods=3) == pytest.approx(100 + 100 * q + 100 * q**2)
    assert clv(100.0, 1.0, 0.0, periods=5) == 500.0
    assert clv(50.0, 0.0, 0.1) == 50.0  # one period only
    assert expected_lifetime(0.8) == pytest.approx(5.0)
    assert math.isinf(expected_lifetime(1.0))
    assert return_on_regain(150.0, 100.0) == pytest.approx(0.5)
    for bad in ({"retention": 1.2}, {"retention": 1.0, "discount_rate": 0.0}):
        with pytest.raises(ValueError):
            clv(1.0, **{"retention": 0.5, "discount_rate": 0.1, **bad})
    with pytest.raises(ValueError):
        return_on_regain(1.0, 0.0)


def test_bad_campaigns_get_clear_errors(scenario_data):
    from loyaltysim.scenario import ScenarioError, scenario_from_dict

    bad = {**CAMPAIGN, "target": {"causes": ["boredom"]}, "offer": {"discount": 1.5}}
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(scenario_data(policy__campaigns=[bad]))
    text = "\n".join(info.value.problems)
    assert "unknown defection cause(s) ['boredom']" in text
    assert "policy.campaigns[0].offer.discount" in text
    with pytest.raises(ScenarioError, match="win_back"):
        scenario_from_dict(scenario_data(policy__campaigns=[{"kind": "loyalty_bonus"}]))


def test_the_contacts_table_accounts_for_every_contact_and_regain(make_scenario):
    from loyaltysim.experiments.run import simulate

    scenario = make_scenario(market__customers__population=2000, policy__campaigns=[CAMPAIGN])
    result = simulate(scenario, seed=2)
    contacts, firms = result.tables["contacts"], result.tables["firms"]
    focal = firms[firms["firm"] == "Focal"]
    assert len(contacts) == focal["contacts"].sum()
    assert contacts["accepted"].sum() == focal["regained"].sum()  # every regain came through one offer
    cost = contacts["contact_cost"].sum() + (contacts["offer_cost"] * contacts["accepted"]).sum()
    assert cost == pytest.approx(focal["campaign_cost"].sum())
    accepted = contacts[contacts["accepted"]]
    assert (accepted["regained_at"] >= accepted["step"]).all()
    assert accepted["second_value"].notna().all() and (accepted["second_value"] >= 0).all()
    # revenue = margin + cost of goods
    assert (accepted["second_revenue"] >= accepted["second_value"]).all()
    assert (accepted["second_revenue"] > 0).any() and contacts.loc[~contacts["accepted"], "second_revenue"].isna().all()
    # second lifetimes start at reacquisition and run to the next departure from the firm, or to the end (30 steps)
    assert accepted["second_steps"].notna().all() and contacts.loc[~contacts["accepted"], "second_steps"].isna().all()
    dep = result.tables["defections"]
    ended = accepted[accepted["second_ended"]]
    assert len(ended) > 0 and (~accepted["second_ended"]).any()
    for _, row in ended.iterrows():
        left = dep[(dep["customer"] == row["customer"]) & (dep["firm"] == "Focal") & dep["second_lifetime"]
                   & (dep["step"] > row["regained_at"])]["step"].min()
        assert row["regained_at"] + row["second_steps"] == left
    running = accepted[~accepted["second_ended"]]
    assert (running["regained_at"] + running["second_steps"] == 30).all()
    assert contacts.loc[~contacts["accepted"], "second_value"].isna().all()
    assert (contacts["lapsed"] >= 1).all() and (contacts["lapsed"] <= 26).all()  # the target's window
    assert "contacts" not in simulate(make_scenario(market__customers__population=200), seed=2).tables


def test_win_back_outcomes_follow_the_contacts_table(make_scenario):
    from loyaltysim.experiments.run import simulate
    from loyaltysim.measures import outcomes

    scenario = make_scenario(market__customers__population=2000, policy__campaigns=[CAMPAIGN])
    result = simulate(scenario, seed=2)
    names = ["focal.winback_contacts", "focal.winback_rate", "focal.winback_cost", "focal.second_lifetime_value",
             "focal.return_on_regain", "firm[Rival A].winback_contacts", "firm[Rival A].winback_rate"]
    values = outcomes.compute(names, scenario, result.tables, result.summary)
    contacts = result.tables["contacts"]
    cost = 5.0 * len(contacts) + 10.0 * contacts["accepted"].sum()
    assert values["focal.winback_contacts"] == len(contacts)
    assert values["focal.winback_rate"] == pytest.approx(contacts["accepted"].mean())
    assert values["focal.winback_cost"] == pytest.approx(cost)
    value = contacts["second_value"].sum()
    assert values["focal.second_lifetime_value"] == pytest.approx(value)
    assert values["focal.return_on_regain"] == pytest.approx((value - cost) / cost)
    extra = outcomes.compute(["focal.cost_per_regain", "focal.second_lifetime_weeks"], scenario, result.tables,
                             result.summary)
    assert extra["focal.cost_per_regain"] == pytest.approx(cost / contacts["accepted"].sum())
    revenue = outcomes.compute(["focal.second_lifetime_revenue"], scenario, result.tables, result.summary)
    assert revenue["focal.second_lifetime_revenue"] == pytest.approx(contacts["second_revenue"].sum())
    assert extra["focal.second_lifetime_weeks"] == pytest.approx(contacts["second_steps"].dropna().mean())
    assert values["firm[Rival A].winback_contacts"] == 0.0 and math.isnan(values["firm[Rival A].winback_rate"])


def test_a_budget_caps_each_round_the_most_valuable_first(make_scenario):
    from loyaltysim.experiments.run import simulate

    capped = {**CAMPAIGN, "budget": 20.0}  # 4 contacts at 5 each (the offer is paid only when accepted)
    free = simulate(make_scenario(market__customers__population=2000, policy__campaigns=[CAMPAIGN]), seed=2)
    result = simulate(make_scenario(market__customers__population=2000, policy__campaigns=[capped]), seed=2)
    rounds = result.tables["contacts"].groupby("step")
    assert rounds.size().max() == 4 and free.tables["contacts"].groupby("step").size().max() > 4
    first = free.tables["contacts"]
    first = first[first["step"] == first["step"].min()]
    chosen = result.tables["contacts"][result.tables["contacts"]["step"] == first["step"].iloc[0]]
    assert sorted(chosen["first_value"]) == sorted(first["first_value"].nlargest(4))


def test_targeting_by_customer_segment_and_value_tier(make_scenario, scenario_data):
    from loyaltysim.scenario import ScenarioError, scenario_from_dict

    segments = [{"name": "business", "share": 0.3}, {"name": "consumer", "share": 0.7}]
    campaign = {**CAMPAIGN, "target": {**CAMPAIGN["target"], "segments": ["business"], "value_tiers": ["high"]}}
    model = LoyaltyMarket(
        make_scenario(market__customers__population=3000, market__customers__segments=segments,
                      policy__campaigns=[campaign]), seed=1).run(30)
    contacted = np.concatenate([e["customer"] for e in model.campaigns.contact_log])
    assert contacted.size > 0
    assert (model.customers.segment[contacted] == 0).all() and (model.customers.value_tier[contacted] == 2).all()
    bad = {**CAMPAIGN, "target": {"segments": ["students"]}}
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(scenario_data(market__customers__segments=segments, policy__campaigns=[bad]))
    assert info.value.problems == ["policy.campaigns[0].target.segments: unknown segment(s) ['students']; "
                                   "known: ['business', 'consumer']"]
