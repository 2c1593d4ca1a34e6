"""Personalised offers: the campaign machinery of save offers (selector, offer, budget) ranking a firm's customers
by the value its records show or by risk."""

import numpy as np
import pytest

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms import crm
from loyaltysim.scenario import ScenarioError, scenario_from_dict

PERSONAL = {"kind": "personalised", "every": "4 weeks", "start": "8 weeks", "target": {"top_share": 0.1},
            "offer": {"discount": 0.1, "duration": "4 weeks"}, "contact_cost": 2.0, "recontact_after": "4 weeks"}


def test_value_ranking_offers_to_the_customers_with_the_most_recent_purchases(make_scenario):
    model = LoyaltyMarket(make_scenario(market__customers__population=1500, policy__campaigns=[PERSONAL]), seed=2)
    window = model.config.policy.campaigns[0].warning.window.steps("week")
    model.run(8)  # the first round comes at step 9: score from the records up to step 8
    st = model.customers
    rows = np.flatnonzero(st.active & (st.current == 0))
    recent = model.campaigns.crm.recent_purchases(rows, 0, 8, window)
    model.step()
    log = model.campaigns.warning_log[-1]
    np.testing.assert_array_equal(log["customer"], rows)
    np.testing.assert_array_equal(log["score"], recent.astype(float))
    chosen = log["flagged"]
    assert chosen.sum() == int(np.ceil(0.1 * rows.size))
    assert log["score"][chosen].min() >= log["score"][~chosen].max()  # the top of the ranking, ties at random
    treated = rows[log["treated"]]
    assert (st.offer_firm[treated] == 0).all() and (st.contacted_at[treated] == 9).all()
    assert (log["campaign"] == 1).all()


def test_a_budget_caps_each_round_and_outcomes_count_contacts_and_cost(make_scenario):
    campaign = {**PERSONAL, "budget": 20.0, "offer": {"discount": 0.1, "duration": "4 weeks", "cost": 3.0}}
    sc = make_scenario(market__customers__population=1500, time__horizon="30 weeks", time__warmup="4 weeks",
                       policy__campaigns=[campaign])
    result = simulate(sc, seed=4)
    table = result.tables["warnings"]
    per_round = table[table["treated"]].groupby("step").size()
    assert (per_round <= 4).all() and per_round.sum() > 0  # 20 / (2 + 3) per round
    got = outcomes.compute(["focal.personalised_contacts", "focal.personalised_cost", "focal.retention_contacts",
                            "focal.warning_flags"], sc, result.tables, result.summary)
    assert got["focal.personalised_contacts"] == per_round.sum()
    assert got["focal.personalised_cost"] == pytest.approx(per_round.sum() * 5.0)
    # a personalised campaign's rows are not a retention campaign's early warning
    assert got["focal.retention_contacts"] == 0.0 and got["focal.warning_flags"] == 0.0


def test_risk_ranking_uses_the_early_warning(make_scenario):
    campaign = {**PERSONAL, "target": {"rank_by": "risk", "top_share": 0.2}}
    model = LoyaltyMarket(make_scenario(market__customers__population=800, policy__campaigns=[campaign]), seed=5)
    model.run(8)
    st = model.customers
    rows = np.flatnonzero(st.active & (st.current == 0))
    rivals = [f.price for f in model.firms[1:]]
    gap = (model.firms[0].price - min(rivals)) / model.firms[0].price
    spec = model.config.policy.campaigns[0].warning
    expected = crm.risk_scores(st, model.campaigns.crm, rows, 0, 9, spec, spec.window.steps("week"), 52, gap)
    model.step()
    np.testing.assert_allclose(model.campaigns.warning_log[-1]["score"], expected)


@pytest.mark.parametrize(("target", "needle"), [
    ({"top_share": 0.1, "threshold": 2.0}, "exactly one of top_share"),
    ({}, "exactly one of top_share"),
    ({"top_share": 0.1, "rank_by": "loyalty"}, "'value' or 'risk'"),
])
def test_bad_personalised_targets_are_named(scenario_data, target, needle):
    data = scenario_data(policy__campaigns=[{**PERSONAL, "target": target}])
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    problems = err.value.problems
    assert len(problems) == 1 and problems[0].startswith("policy.campaigns[0].target"), problems
    assert needle in problems[0]
