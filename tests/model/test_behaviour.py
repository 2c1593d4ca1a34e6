"""Customer and firm behaviour: unit tests of the rules added for the mechanisms of the domain brief, and
behavioural tests of events and policies over several seeds."""

from dataclasses import replace

import numpy as np
import pytest

from loyaltysim.model import classifications as cls
from loyaltysim.model import rules
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.state import ATTRACTIVE, MUST_BE, ONE_DIMENSIONAL, Cause

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def params(make_scenario):
    return LoyaltyMarket(make_scenario(market__customers__population=10), seed=0).params


# --- unit tests of the rules -------------------------------------------------------------------------------


def test_expectations_of_known_needs_rise_toward_experience_and_the_best_offer(params):
    p = replace(params, expect_alpha=0.5, latent_alpha=0.1, competitor_alpha=0.25)
    kano = np.array([MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE], dtype=np.int8)
    expectation = np.array([[0.5, 0.5, 0.5]])
    offered = np.array([[0.7, 0.7, 0.7]])
    best = np.array([0.9, 0.9, 0.9])
    out = rules.update_expectation(expectation, offered, np.array([True]), np.array([True]), best, kano, p)
    # known needs: halfway to 0.7 (0.6), then a quarter of the way to the best offer 0.9 (0.675)
    np.testing.assert_allclose(out[0, :2], [0.675, 0.675])
    # a latent need moves only toward what is experienced, slowly, and ignores the best offer
    np.testing.assert_allclose(out[0, 2], 0.52)


def test_expectations_never_fall_toward_a_worse_competitor_and_do_not_move_without_experience(params):
    p = replace(params, expect_alpha=0.5, competitor_alpha=0.5)
    kano = np.array([MUST_BE], dtype=np.int8)
    out = rules.update_expectation(np.array([[0.8]]), np.array([[0.2]]), np.array([False]), np.array([True]),
                                   np.array([0.3]), kano, p)
    np.testing.assert_allclose(out, [[0.8]])


def test_switching_cost_adds_procedural_financial_and_capped_relational_parts(params):
    p = replace(params, relational_per_step=0.01, relational_cap=0.3, manager_bond=0.4, club_bond=0.25)
    cost = rules.switching_cost(0.5, np.array([0.2, 0.0, 0.0, 0.0]), np.array([10, 100, 10, 0]),
                                np.array([False, False, True, False]), np.array([False, False, False, True]), p)
    np.testing.assert_allclose(cost, [0.5 + 0.2 + 0.1, 0.5 + 0.3, 0.5 + 0.1 + 0.4, 0.5 + 0.25])


def test_attitude_grows_when_delighted_falls_when_dissatisfied_fades_otherwise(params):
    p = replace(params, delight_level=0.02, attitude_gain=0.5, attitude_loss=0.5, attitude_decay=0.1)
    a = rules.update_attitude(np.array([0.4, 0.4, 0.4]), np.array([0.03, -0.1, 0.0]), np.array([-0.04] * 3), p)
    np.testing.assert_allclose(a, [0.7, 0.2, 0.36])


def test_service_failure_damage_silent_unresolved_and_recovered(params):
    p = replace(params, failure_severity=0.1, unresolved_factor=1.5, recovery_paradox=0.02)
    failed = np.array([False, True, True, True])
    complained = np.array([False, False, True, True])
    recovered = np.array([False, False, False, True])
    np.testing.assert_allclose(rules.experience_damage(failed, complained, recovered, p), [0.0, 0.1, 0.15, -0.02])


def test_defection_cause_precedence_covers_every_cause():
    f, t = np.array([False]), np.array([True])

    def cause(**on):
        args = dict(life_event=f, manager_left=f, breach=f, dissatisfied=f, recent_failure=f, price_rose=f,
                    shock_to_cheaper=f)
        args.update({k: t for k in on})
        return Cause(int(rules.defection_cause(**args)[0]))

    assert cause() is Cause.COMPETITOR_OFFER
    assert cause(dissatisfied=1) is Cause.NEEDS_NOT_MET
    assert cause(shock_to_cheaper=1) is Cause.MARKET_FLUCTUATION
    assert cause(price_rose=1, shock_to_cheaper=1) is Cause.PRICE_RISE
    assert cause(dissatisfied=1, recent_failure=1, price_rose=1) is Cause.SERVICE_FAILURE
    assert cause(recent_failure=1) is Cause.COMPETITOR_OFFER  # a failure alone does not push a satisfied customer
    assert cause(breach=1, dissatisfied=1, recent_failure=1) is Cause.INTEGRITY_BREACH
    assert cause(manager_left=1, breach=1) is Cause.MANAGER_LEFT
    assert cause(life_event=1, manager_left=1) is Cause.NATURAL_CHURN


def test_classifications_follow_their_definitions(make_scenario):
    model = LoyaltyMarket(make_scenario(market__customers__population=6), seed=0)
    st = model.customers
    d = replace(model.classifier.definitions, contractual=True, repeat_steps=26, attitude_high=0.5, delight_level=0.02,
                advocate_level=0.02)
    st.current[:] = [0, 0, 0, 0, -1, -1]
    st.previous[:] = [-1, -1, -1, -1, -1, 1]
    st.tenure[:] = [40, 40, 5, 40, 0, 0]
    st.relationship_purchases[:] = [50, 50, 1, 50, 0, 0]
    st.attitude[:] = [0.9, 0.1, 0.0, 0.0, 0.0, 0.0]
    st.threshold[:] = -0.04
    st.satisfaction[:, 0] = [0.05, 0.0, 0.0, -0.1, 0.0, 0.0]
    names = lambda kind, codes: [kind[c] for c in codes]  # noqa: E731
    assert names(cls.DICK_BASU, cls.dick_basu(st, d))[:4] == ["true", "spurious", "none", "spurious"]
    assert names(cls.JONES_SASSER, cls.jones_sasser(st, d))[:4] == ["apostle", "loyalist", "mercenary", "hostage"]
    assert names(cls.LADDER, cls.ladder_stage(st, d)) == ["advocate", "client", "first_time", "client", "prospect",
                                                          "lapsed"]


# --- behaviour of events and policies, over several seeds ----------------------------------------------------


def _defections(model, cause: Cause, after: int = 0) -> int:
    return int(sum((d["cause"][d["step"] > after] == cause).sum() for d in model.accounts.departures))


def _run(scenario, seed, steps=None):
    return LoyaltyMarket(scenario, seed=seed).run(steps)


def test_a_service_crisis_raises_service_cause_defections(make_scenario):
    crisis = {"kind": "service_crisis", "at": "6 weeks", "firm": "Focal", "duration": "12 weeks",
              "reliability": 0.3}
    calm = make_scenario(market__customers__population=1500)
    hit = make_scenario(market__customers__population=1500, market__events=[crisis])
    base = [_defections(_run(calm, s), Cause.SERVICE_FAILURE, after=5) for s in SEEDS]
    crisis_runs = [_run(hit, s) for s in SEEDS]
    with_crisis = [_defections(m, Cause.SERVICE_FAILURE, after=5) for m in crisis_runs]
    assert np.mean(with_crisis) > 2 * np.mean(base) + 5, (base, with_crisis)
    # reliability comes back when the crisis ends
    assert all(m.firms[0].reliability == calm.market.firms[0].reliability for m in crisis_runs)


def test_a_switching_cost_drop_raises_churn(make_scenario):
    drop = {"kind": "switching_cost_change", "at": "10 weeks", "switching_cost": 0.0}
    same = make_scenario(market__customers__population=1500)
    lower = make_scenario(market__customers__population=1500, market__events=[drop])
    before = [sum(d["step"].size for d in _run(same, s).accounts.departures[10:]) for s in SEEDS]
    after = [sum(d["step"].size for d in _run(lower, s).accounts.departures[10:]) for s in SEEDS]
    assert np.mean(after) > 1.3 * np.mean(before), (before, after)


def test_a_departing_manager_takes_customers_with_them(make_scenario):
    leaves = {"kind": "manager_leaves", "at": "6 weeks", "firm": "Focal", "manager": 0, "to": "Rival A"}
    scenario = make_scenario(market__customers__population=3000, market__firms__0__relationship_managers=2,
                             market__events=[leaves])
    for seed in SEEDS:
        model = _run(scenario, seed)
        lost = _defections(model, Cause.MANAGER_LEFT)
        assert lost > 0
        managed = [d for d in model.accounts.departures if (d["cause"] == Cause.MANAGER_LEFT).any()]
        dest = np.concatenate([d["destination"][d["cause"] == Cause.MANAGER_LEFT] for d in managed])
        assert (dest == 1).mean() > 0.5  # most follow the manager to Rival A


def test_an_integrity_breach_is_recorded_as_the_cause(make_scenario):
    breach = {"kind": "integrity_breach", "at": "6 weeks", "firm": "Rival A", "severity": 0.5}
    scenario = make_scenario(market__customers__population=1500, market__events=[breach])
    counts = [_defections(_run(scenario, s), Cause.INTEGRITY_BREACH) for s in SEEDS]
    assert min(counts) > 0
    assert _defections(_run(make_scenario(market__customers__population=1500), 1), Cause.INTEGRITY_BREACH) == 0


def test_an_income_shock_sends_customers_to_cheaper_firms_as_market_fluctuation(make_scenario):
    shock = {"kind": "income_shock", "at": "6 weeks", "duration": "12 weeks", "price_sensitivity": 4.0}
    scenario = make_scenario(market__customers__population=1500, market__events=[shock])
    for seed in SEEDS:
        model = _run(scenario, seed)
        rows = [d for d in model.accounts.departures if (d["cause"] == Cause.MARKET_FLUCTUATION).any()]
        assert rows
        frm = np.concatenate([d["firm"][d["cause"] == Cause.MARKET_FLUCTUATION] for d in rows])
        to = np.concatenate([d["destination"][d["cause"] == Cause.MARKET_FLUCTUATION] for d in rows])
        prices = np.array([f.price for f in model.firms])
        assert (prices[to] < prices[frm]).all()


def test_an_entrant_has_no_customers_before_entry_and_wins_some_after(make_scenario):
    entry = {"kind": "entry", "at": "10 weeks", "firm": "Rival B"}
    scenario = make_scenario(market__customers__population=1500, market__events=[entry])
    for seed in SEEDS:
        model = LoyaltyMarket(scenario, seed=seed)
        for _ in range(9):
            model.step()
            assert model.firms[2].metrics["customers"] == 0
            assert model.firms[2].metrics["profit"] == 0.0
        model.run(15)
        assert model.firms[2].metrics["customers"] > 15


def test_a_rival_matches_a_price_cut_after_its_delay(make_scenario):
    cut = {"kind": "price_change", "at": "5 weeks", "firm": "Focal", "price": 25.0}
    scenario = make_scenario(market__customers__population=200, market__events=[cut],
                             market__firms__1__reaction={"delay": "4 weeks", "match_price": True, "min_margin": 0.0})
    model = LoyaltyMarket(scenario, seed=1)
    prices = []
    for _ in range(12):
        model.step()
        prices.append(model.firms[1].price)
    assert prices[7] == 28.0 and prices[8] == 25.0  # seen at step 5, matched at step 9
    assert model.firms[1].price_rise_step < 0  # a cut is not a rise


def test_investment_raises_the_attribute_at_its_cost_and_books_the_spend(make_scenario):
    budget = 4 * 7 / (365.25 / 12)  # money per week of "4 per month"
    scenario = make_scenario(
        market__customers__population=200,
        market__attributes__2__cost_per_unit=100.0,
        policy__investments=[{"attribute": "perks", "budget": "4 per month", "start": "2 weeks", "max_level": 0.4}],
    )
    model = LoyaltyMarket(scenario, seed=1)
    start = model.firms[0].levels[2]
    model.run(2)
    assert model.firms[0].levels[2] == start and model.firms[0].books["investment_cost"] == 0.0
    model.step()
    assert model.firms[0].books["investment_cost"] == pytest.approx(budget)
    assert model.firms[0].levels[2] == pytest.approx(start + budget / 100.0)
    model.run(20)
    assert model.firms[0].levels[2] == pytest.approx(0.4)  # capped at max_level, spending stops
    assert model.firms[0].books["investment_cost"] == 0.0


def test_an_attractive_attribute_drifts_to_one_dimensional_then_must_be(make_scenario):
    scenario = make_scenario(
        market__customers__population=300,
        market__attributes__2__drift={"one_dimensional_at": 0.35, "must_be_at": 0.45},
        market__customers__latent_expectation_half_life="2 weeks",
        market__firms__0__attributes={"coverage": 0.7, "speed": 0.6, "perks": 0.9},
        market__firms__1__attributes={"coverage": 0.7, "speed": 0.55, "perks": 0.9},
        market__firms__2__attributes={"coverage": 0.75, "speed": 0.65, "perks": 0.9},
        market__customers__expectation_spread=0.0,
    )
    model = LoyaltyMarket(scenario, seed=1)
    model.customers.expectation[:, 2] = 0.2  # nobody expects perks yet
    seen = []
    for _ in range(20):
        model.step()
        seen.append(int(model.kano[2]))
    assert seen[0] == ATTRACTIVE and seen[-1] == MUST_BE
    assert ONE_DIMENSIONAL in seen
    assert seen == sorted(seen, reverse=True)  # never drifts back


def test_variety_seekers_split_their_wallet_in_a_repertoire_market(make_scenario):
    loyal = make_scenario(market__type="repertoire", market__customers__population=1000)
    varied = make_scenario(market__type="repertoire", market__customers__population=1000,
                           market__customers__variety_seeking={"mean": 0.4, "sd": 0.0, "min": 0.0, "max": 1.0})
    sow = [np.nanmean([f.metrics["share_of_wallet"] for f in _run(s, 1, 20).firms]) for s in (loyal, varied)]
    assert sow[0] > 0.95 and sow[1] < sow[0] - 0.15


def test_panel_snapshots_every_period(make_scenario):
    from loyaltysim.experiments.run import simulate

    scenario = make_scenario(market__customers__population=100, outputs__panel_every="5 weeks")
    result = simulate(scenario, seed=1)
    panel = result.tables["panel"]
    assert sorted(panel["step"].unique()) == [5, 10, 15, 20, 25, 30]
    assert (panel.groupby("step").size() == 100).all()
    purchases = panel[[c for c in panel.columns if c.startswith("purchases_")]].sum(axis=1)
    total = result.tables["firms"]["purchases"].sum()
    assert purchases.sum() == pytest.approx(total)  # every purchase in exactly one snapshot
    assert set(panel["ladder"].cat.categories) == set(cls.LADDER)
    assert "panel" not in simulate(make_scenario(market__customers__population=50), seed=1).tables


def test_firm_counts_of_classes_add_up_to_its_customers(make_scenario):
    model = _run(make_scenario(market__customers__population=800), 2, 20)
    for f in model.firms:
        m = f.metrics
        assert sum(m[c] for c in ("db_none", "db_spurious", "db_latent", "db_true")) == m["customers"]
        assert sum(m[f"js_{c}"] for c in cls.JONES_SASSER) == m["customers"]
        assert sum(m[c] for c in ("stage_first_time", "stage_repeat", "stage_client", "stage_advocate")) == \
            m["customers"]


def test_customers_group_by_their_loyalty_classes_through_mesa(make_scenario):
    from loyaltysim.model.agents import Customer

    model = _run(make_scenario(market__customers__population=300), 1, 10)
    agents = model.agents_by_type[Customer]
    by_stage = agents.groupby("ladder_stage").count()
    codes = model.classify_codes("ladder")
    assert by_stage == {cls.LADDER[c]: int((codes == c).sum()) for c in np.unique(codes)}
    apostles = agents.select(lambda c: c.jones_sasser == "apostle")
    assert all(c.satisfaction >= model.params.delight_level and c.attitude >= 0.5 for c in apostles)
    assert {c.value_tier for c in agents} == {"low", "medium", "high"}


def test_overlapping_service_crises_nest_and_end(make_scenario):
    crises = [
        {"kind": "service_crisis", "at": "3 weeks", "firm": "Focal", "duration": "10 weeks", "reliability": 0.5},
        {"kind": "service_crisis", "at": "5 weeks", "firm": "Focal", "duration": "3 weeks", "reliability": 0.7},
    ]
    model = LoyaltyMarket(make_scenario(market__customers__population=50, market__events=crises), seed=1)
    seen = []
    for _ in range(14):
        model.step()
        seen.append(model.firms[0].reliability)
    base = model.firms[0].base_reliability
    assert seen == [base] * 2 + [0.5] * 2 + [0.7] * 3 + [0.5] * 5 + [base] * 2


def test_a_free_attribute_is_raised_at_once_without_cost(make_scenario):
    scenario = make_scenario(
        market__customers__population=50, market__attributes__1__cost_per_unit=0.0,
        policy__investments=[{"attribute": "speed", "budget": "0 per month", "max_level": 0.9}],
    )
    model = LoyaltyMarket(scenario, seed=1)
    model.step()
    assert model.firms[0].levels[1] == 0.9 and model.firms[0].books["investment_cost"] == 0.0


def test_matching_a_price_never_raises_it(make_scenario):
    # Rival A's margin floor (unit cost 17 x 1.5 = 25.5) is above Focal's cut to 20 but below its own price 28
    cut = {"kind": "price_change", "at": "1 week", "firm": "Focal", "price": 20.0}
    floor = make_scenario(market__customers__population=50, market__events=[cut],
                          market__firms__1__reaction={"delay": "1 week", "match_price": True, "min_margin": 0.5})
    model = LoyaltyMarket(floor, seed=1).run(4)
    assert model.firms[1].price == 25.5
    high = make_scenario(market__customers__population=50, market__events=[cut],
                         market__firms__1__reaction={"delay": "1 week", "match_price": True, "min_margin": 1.0})
    model = LoyaltyMarket(high, seed=1).run(4)
    assert model.firms[1].price == 28.0  # the floor 34 is above its price: no "match" upward
    assert model.firms[1].price_rise_step < 0


def test_customers_coming_back_into_the_market_are_prospects(make_scenario):
    scenario = make_scenario(market__type="repertoire", market__customers__population=2000,
                             market__customers__natural_churn="50% per year",
                             market__customers__reentry="90% per year")
    model = LoyaltyMarket(scenario, seed=3).run(20)
    st = model.customers
    codes = model.classify_codes("ladder")
    prospects = codes == cls.LADDER.index("prospect")
    assert prospects.any()
    assert (st.current[prospects] == -1).all() and (st.previous[prospects] == -1).all()
    lapsed = codes == cls.LADDER.index("lapsed")
    assert (st.previous[lapsed] >= 0).all()


def test_perceived_quality_stays_between_zero_and_one(make_scenario):
    scenario = make_scenario(market__customers__population=1000, market__customers__recovery_paradox=0.5,
                             market__customers__failure_severity=2.0, market__firms__0__reliability=0.5)
    model = LoyaltyMarket(scenario, seed=2).run(30)
    assert model.customers.perceived.min() >= 0.0 and model.customers.perceived.max() <= 1.0


def test_dissatisfied_customers_complain_more_often(make_scenario):
    scenario = make_scenario(market__customers__population=3000, market__firms__0__reliability=0.7,
                             market__firms__1__reliability=0.7, market__firms__2__reliability=0.7)
    model = LoyaltyMarket(scenario, seed=4)
    model.run(5)
    rates = {True: [0, 0], False: [0, 0]}
    for _ in range(15):
        st = model.customers
        has = st.current >= 0
        sat = np.where(has, st.satisfaction[np.arange(len(st)), np.where(has, st.current, 0)], 0.0)
        dissatisfied = has & (sat < st.threshold)
        model.step()
        for flag in (True, False):
            failed = st.step_failed & (dissatisfied == flag) & (st.step_firm == st.current)
            rates[flag][0] += int((st.step_complained & failed).sum())
            rates[flag][1] += int(failed.sum())
    high, low = rates[True][0] / rates[True][1], rates[False][0] / rates[False][1]
    assert rates[True][1] > 200 and rates[False][1] > 200
    assert high == pytest.approx(0.8, abs=0.06) and low == pytest.approx(0.5, abs=0.06)


def test_rivals_copy_each_kano_class_after_its_own_lag(make_scenario):
    # Focal raises its must-be, one-dimensional and attractive attributes in week 5; Rival A copies the must-be one
    # 2 weeks later, the one-dimensional one 6 weeks later and the attractive one never (Rival A starts above
    # every rival's level, so there is nothing to copy before)
    raise_all = [{"kind": "attribute_change", "at": "5 weeks", "firm": "Focal", "attribute": a, "level": 0.95}
                 for a in ("coverage", "speed", "perks")]
    lags = {"must_be": "2 weeks", "one_dimensional": "6 weeks", "attractive": "never"}
    scenario = make_scenario(market__customers__population=200, market__events=raise_all,
                             market__firms__1__reaction={"match_price": False, "match_attributes": True,
                                                         "lags": lags},
                             market__firms__1__attributes={"coverage": 0.8, "speed": 0.8, "perks": 0.8})
    assert [a.kano for a in scenario.market.attributes] == ["must_be", "one_dimensional", "attractive"]
    model = LoyaltyMarket(scenario, seed=1)
    start = np.array([0.8, 0.8, 0.8])
    levels = []
    for _ in range(16):
        model.step()
        levels.append(model.firms[1].levels.copy())
    coverage, speed, perks = np.array(levels).T
    assert coverage[5] == start[0] and coverage[6] == 0.95  # seen at step 5, copied at step 7
    assert speed[9] == start[1] and speed[10] == 0.95  # copied at step 11
    assert (perks == start[2]).all()  # never
    assert model.firms[1].books["investment_cost"] == 0.0  # this step's; the copies were paid when made


def test_lags_must_name_every_class_and_replace_the_watched_attributes(make_scenario):
    from loyaltysim.scenario import ScenarioError

    base = {"match_attributes": True, "lags": {"must_be": "26 weeks", "one_dimensional": "never"}}
    with pytest.raises(ScenarioError, match="missing attractive"):
        make_scenario(market__firms__1__reaction=base)
    with pytest.raises(ScenarioError, match="either attributes or lags"):
        make_scenario(market__firms__1__reaction={**base, "lags": {**base["lags"], "attractive": "never"},
                                                  "attributes": ["coverage"]})
    with pytest.raises(ScenarioError, match="match_attributes = true"):
        make_scenario(market__firms__1__reaction={"lags": {"must_be": "1 week", "one_dimensional": "never",
                                                           "attractive": "never"}})
