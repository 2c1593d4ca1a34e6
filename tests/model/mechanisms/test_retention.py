"""Retention campaigns and the churn early warning: observable data only, selection, accounting, the warning's
quality measures, budgets, and what save offers do over several seeds."""

import math

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.model.agents import Firm
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms import crm
from loyaltysim.model.state import NEVER
from loyaltysim.scenario import ScenarioError, scenario_from_dict

RETENTION = {"kind": "retention", "every": "4 weeks", "start": "4 weeks",
             "target": {"top_share": 0.1}, "offer": {"discount": 0.2, "duration": "8 weeks", "cost": 3.0},
             "contact_cost": 2.0}


def _campaign(**changes):
    out = {**RETENTION}
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _focal(model):
    frame = model.datacollector.get_agenttype_vars_dataframe(Firm).reset_index()
    return frame[frame["AgentID"] == model.firms[0].unique_id]


def test_the_score_reads_only_what_the_firm_observes(make_scenario):
    model = LoyaltyMarket(make_scenario(market__customers__population=1500, policy__campaigns=[RETENTION]), seed=3)
    model.run(20)
    st = model.customers
    rows = np.flatnonzero(st.active & (st.current == 0))
    warning = model.config.policy.campaigns[0].warning
    before = crm.risk_scores(st, model.campaigns.crm, rows, 0, model.steps + 1, warning, 8, 52, 0.05)
    assert before.max() > before.min()  # the score does discriminate
    rng = np.random.default_rng(0)
    for hidden in ("satisfaction", "perceived", "expectation", "threshold", "price_sensitivity", "weights"):
        getattr(st, hidden)[:] = rng.random(getattr(st, hidden).shape)
    st.attitude[:] = rng.random(st.attitude.shape)
    st.financial_cost[:] = rng.random(st.financial_cost.shape)
    after = crm.risk_scores(st, model.campaigns.crm, rows, 0, model.steps + 1, warning, 8, 52, 0.05)
    np.testing.assert_array_equal(before, after)


def test_each_warning_sign_adds_its_points():
    from loyaltysim.model.state import CustomerState
    from loyaltysim.scenario import EarlyWarning

    st = CustomerState.allocate(5, 2, 1)
    st.current[:] = 0
    st.since[:, 0] = [1, 1, 1, 91, 41]  # relationships with firm 0: 100, 100, 100, 10 and 60 steps at step 100
    records = crm.CRM(st, window=4)
    t = 101  # scored at the start of step 101, from records up to step 100
    records.total[:, 0] = [96 + 4, 96, 96, 6 + 4, 56 + 4]  # one a step before the window
    for step in range(97, 101):
        records.purchases[:, 0, step % 4] = [1, 0, 0, 1, 1]  # customers 1 and 2 stopped buying
    records.score[:, 0] = [5, 2, 0, 5, 3]
    records.scored_at[:, 0] = [90, 90, NEVER, 90, 2]  # customer 4 answered before this relationship began
    records.last_complaint[:, 0] = [NEVER, NEVER, 99, NEVER, 99]
    records.resolved[:, 0] = [False, False, False, False, True]
    records.purchases[:, 1] = 9  # records at another firm are not this firm's
    w = EarlyWarning(usage_drop=1.0, low_score=2.0, complaint=4.0, unresolved=8.0, rival_cheaper=16.0,
                     new_customer=32.0)
    score = crm.risk_scores(st, records, np.arange(5), 0, t, w, window=4, year=52, rival_gap=0.0)
    np.testing.assert_allclose(score, [0.0, 1.0 + 2.0, 1.0 + 4.0 + 8.0, 32.0, 4.0])
    undercut = crm.risk_scores(st, records, np.arange(5), 0, t, w, window=4, year=52, rival_gap=0.05)
    np.testing.assert_allclose(undercut - score, 8.0)  # half of 10% below: half of 16 points


def test_records_follow_each_firm_and_start_afresh_with_a_relationship(make_scenario):
    """In a repertoire market a firm records its own sales to every customer who buys there, habitual or not."""
    model = LoyaltyMarket(make_scenario(market__type="repertoire", market__customers__population=800,
                                        policy__campaigns=[RETENTION]), seed=2)
    counted = np.zeros((800, 3), np.int64)
    for _ in range(20):
        model.step()
        st = model.customers
        counted[st.since == model.steps] = 0
        buyer = np.flatnonzero(st.step_firm >= 0)
        counted[buyer, st.step_firm[buyer]] += st.step_purchases[buyer]
    started = model.customers.since > 0  # relationships begun in the run: recorded from their start
    np.testing.assert_array_equal(model.campaigns.crm.total[started], counted[started])
    scored = pd.concat([pd.DataFrame(r) for r in model.campaigns.warning_log])
    st = model.customers
    assert (st.current[scored["customer"]] != 0).any()  # non-habitual buyers are the firm's customers too


def test_retention_accounting_selection_and_the_warnings_table(make_scenario):
    scenario = make_scenario(market__customers__population=2000, policy__campaigns=[RETENTION])
    result = simulate(scenario, seed=1)
    scored, firms = result.tables["warnings"], result.tables["firms"]
    focal = firms[firms["firm"] == "Focal"]
    assert (scored["firm"] == "Focal").all()
    # rounds on steps 5, 9, 13, ...: every current customer of the firm scored, the riskiest tenth flagged
    assert sorted(scored["step"].unique()) == list(range(5, 31, 4))
    customers_before = focal.set_index("step")["customers"]
    for step, round_ in scored.groupby("step"):
        assert len(round_) == customers_before[step - 1]
        assert round_["flagged"].sum() == math.ceil(0.1 * len(round_))
        assert round_.loc[round_["flagged"], "score"].min() >= round_.loc[~round_["flagged"], "score"].max()
    treated = scored["treated"]
    assert (scored.loc[treated, "flagged"]).all()
    assert treated.sum() == focal["contacts"].sum()
    # retention offers are paid when made: contacts x (contact cost + offer cost); the discount through revenue
    assert focal["campaign_cost"].sum() == pytest.approx(treated.sum() * (2.0 + 3.0))
    assert focal["discounts"].sum() > 0
    # the default recontact_after (52 weeks): nobody is given two save offers within the run
    assert not scored.loc[treated, "customer"].duplicated().any()
    left = scored["left_at"].dropna()
    assert (left > scored.loc[left.index, "step"]).all()


def test_a_warning_only_campaign_changes_nothing(make_scenario):
    """With every flagged customer held out, nobody is treated: the market runs exactly as without a campaign
    (the firm's own policy stream is the only one the campaign draws from)."""
    plain = simulate(make_scenario(market__customers__population=1500), seed=4)
    warned = simulate(make_scenario(market__customers__population=1500,
                                    policy__campaigns=[_campaign(target={"holdout": 1.0})]), seed=4)
    pd.testing.assert_frame_equal(plain.tables["firms"], warned.tables["firms"])
    pd.testing.assert_frame_equal(plain.tables["defections"], warned.tables["defections"])
    assert warned.tables["warnings"]["flagged"].sum() > 0 and not warned.tables["warnings"]["treated"].any()


def test_threshold_value_tiers_budget_and_manager(make_scenario):
    campaign = _campaign(target={"top_share": None, "threshold": 0.5, "value_tiers": ["high"]}, budget=100.0,
                         offer={"manager": True})
    model = LoyaltyMarket(make_scenario(market__customers__population=2000, policy__campaigns=[campaign]), seed=5)
    model.run(30)
    scored = pd.concat([pd.DataFrame(r) for r in model.campaigns.warning_log])
    st = model.customers
    assert (st.value_tier[scored["customer"]] == 2).all()
    assert (scored["flagged"] == (scored["score"] >= 0.5)).all()
    per_round = scored.groupby("step")["treated"].sum()
    assert per_round.max() <= 100.0 // (2.0 + 3.0) and per_round.sum() > 0
    treated = scored.loc[scored["treated"], "customer"].to_numpy()
    still = treated[st.current[treated] == 0]
    assert (st.manager[still] >= 0).all()  # a manager's call leaves a manager


def test_warning_quality_measures_against_a_hand_made_table(make_scenario):
    scenario = make_scenario(policy__campaigns=[_campaign(warning={"horizon": "4 weeks"})])
    # two rounds (steps 5 and 9), four customers each; horizon 4 steps
    scored = pd.DataFrame({
        "step": [5] * 4 + [9] * 4, "customer": [0, 1, 2, 3] * 2, "firm": ["Focal"] * 8,
        "score": [3.0, 2.0, 1.0, 0.0, 3.0, 2.0, 1.0, 0.0],
        "flagged": [True, True, False, False, True, False, False, False],
        "treated": [False, True, False, False, False, False, False, False],
        "contact_cost": [0.0, 2.0, 0, 0, 0, 0, 0, 0], "offer_cost": [0.0, 3.0, 0, 0, 0, 0, 0, 0],
        "left_at": pd.array([7, None, 8, None, 12, None, None, 30], dtype="Int32"),
    })
    tables = {"warnings": scored}
    value = {m: outcomes.measure_value(m, "Focal", scenario, tables)
             for m in outcomes.measure_names("firm", section="retention")}
    assert value["retention_contacts"] == 1 and value["retention_cost"] == 5.0 and value["warning_flags"] == 3
    # untreated flagged (the holdout-like ones): rows 0 and 4, both left within 4 steps
    assert value["warning_precision"] == 1.0
    # left within the horizon: rows 0, 2, 4; flagged: rows 0 and 4
    assert value["warning_recall"] == pytest.approx(2 / 3)
    # base rate among untreated: rows 0,2,3,4,5,6,7 -> left 0,2,4 -> 3/7
    assert value["warning_lift"] == pytest.approx(1.0 / (3 / 7))
    assert value["warning_lead_weeks"] == pytest.approx((2 + 3) / 2)
    # untreated leavers score 3, 1, 3; untreated stayers 0, 2, 1, 0
    pos, neg = np.array([3.0, 1.0, 3.0]), np.array([0.0, 2.0, 1.0, 0.0])
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    assert value["warning_auc"] == pytest.approx(wins / (pos.size * neg.size))


def test_save_offers_keep_customers_over_seeds(make_scenario):
    """A deep save offer to the riskiest third lowers the firm's defections in every seed: the discount raises
    what staying is worth when a customer looks around."""
    for seed in (1, 2, 3):
        runs = {}
        for name, campaigns in (("none", []), ("save", [_campaign(target={"top_share": 0.3},
                                                                  offer={"discount": 0.5, "duration": "12 weeks"},
                                                                  recontact_after="4 weeks")])):
            model = LoyaltyMarket(make_scenario(market__customers__population=3000, policy__campaigns=campaigns),
                                  seed=seed).run(30)
            runs[name] = _focal(model)["defections"].sum()
        assert runs["save"] < runs["none"], (seed, runs)


@pytest.mark.parametrize(
    ("campaign", "message"),
    [(_campaign(target={"top_share": 0.1, "threshold": 1.0}), "exactly one of top_share"),
     ({"kind": "retention"}, "target: required key is missing"),
     (_campaign(target={"top_share": 0.0}), "target.top_share"),
     (_campaign(target={"value_tiers": ["gold"]}), "target.value_tiers[0]"),
     (_campaign(warning={"complaint": -1.0}), "warning.complaint"),
     (_campaign(budget=-5.0), "budget"),
     ({"kind": "win_back", "offer": {"manager": True}}, "a manager's call is a retention offer")],
)
def test_bad_retention_campaigns_get_clear_errors(scenario_data, campaign, message):
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(scenario_data(policy__campaigns=[campaign]))
    assert any(message in p and p.startswith("policy.campaigns[0]") for p in info.value.problems), \
        info.value.problems
