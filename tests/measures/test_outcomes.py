"""The outcomes catalogue: names, hand-computed values on canned tables, and a real run."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes, value


@pytest.fixture(scope="module")
def scenario(make_scenario):
    # 30 weekly steps, 4 of warm-up; horizon long enough for nothing: retention by score needs a year after
    return make_scenario(market__customers__population=400)


def test_names_are_checked_with_a_message_naming_what_is_allowed():
    outcomes.check_name("focal.cohort_retention")
    outcomes.check_name("firm[Rival A].attitude_mean")
    outcomes.check_name("market.retention_by_score_5")
    outcomes.check_name("focal.npv - firm[Rival A].npv")
    for bad in ("focal.bogus", "market.npv", "firm[].npv", "nobody.npv", "focal.npv - market.bogus"):
        with pytest.raises(outcomes.OutcomeError, match="use focal"):
            outcomes.check_name(bad)
    with pytest.raises(outcomes.OutcomeError, match="unknown firm 'Nobody'"):
        outcomes.check_name("firm[Nobody].npv", firms=["Focal", "Rival A"])


def _canned(scenario):
    """Tables of a made-up run: 6 customers, two firms."""
    customers = pd.DataFrame({
        "customer": range(6),
        "firm_after_warmup": ["Focal", "Focal", "Focal", "Focal", "Rival A", None],
        "firm": ["Focal", "Focal", "Rival A", None, "Rival A", "Focal"],
        "attitude": [0.5, 0.1, 0.9, 0.0, 0.3, 0.7],
    })
    year = 52
    warm = scenario.warmup_steps()
    surveys = pd.DataFrame({
        "step": [warm + 1] * 6 + [warm - 1],
        "customer": [0, 1, 2, 3, 4, 5, 0],
        "firm": ["Focal", "Focal", "Focal", "Focal", "Rival A", "Focal", "Focal"],
        "score": [5, 5, 4, 4, 4, 2, 1],
    })
    defections = pd.DataFrame({
        "customer": [2, 3, 4],
        "firm": ["Focal", "Focal", "Rival A"],
        "step": [warm + 10, warm + 1 + year + 1, warm + 1],  # inside the year; after it; the same step (not after)
        "cause": ["competitor_offer", "competitor_offer", "price_rise"],
    })
    return {"customers": customers, "surveys": surveys, "defections": defections}


def test_cohort_loyalty_counts_only_the_firms_customers_at_the_end_of_the_warm_up(scenario):
    tables = _canned(scenario)
    values = outcomes.compute(["focal.cohort_retention", "focal.cohort_attitude", "firm[Rival A].cohort_retention"],
                              scenario, tables, {})
    assert values["focal.cohort_retention"] == 0.5  # customers 0 and 1 of 0..3 stayed; customer 5 joined later
    assert values["focal.cohort_attitude"] == pytest.approx((0.5 + 0.1 + 0 + 0) / 4)  # leavers count as 0
    assert values["firm[Rival A].cohort_retention"] == 1.0


def test_retention_by_score_follows_each_answer_for_a_year(make_scenario):
    scenario = make_scenario(market__customers__population=10, time__horizon="120 weeks")
    curve = outcomes.retention_by_score(scenario, _canned(scenario))
    assert curve.loc[5, "retention"] == 1.0 and curve.loc[5, "answers"] == 2
    assert curve.loc[4, "retention"] == pytest.approx(2 / 3)  # customer 2 left within the year
    assert curve.loc[2, "retention"] == 1.0
    assert math.isnan(curve.loc[1, "retention"])  # the only 1 was given during the warm-up
    assert math.isnan(curve.loc[3, "retention"])


def test_retention_by_score_leaves_out_customers_who_left_the_market_by_a_life_event(make_scenario):
    """Jones & Sasser is about switching: an answer whose customer left the market by a life event within the year
    neither stayed nor switched, and is not counted; one who switched first and then left the market switched."""
    scenario = make_scenario(market__customers__population=10, time__horizon="120 weeks")
    tables = _canned(scenario)
    warm = scenario.warmup_steps()
    tables["defections"] = pd.DataFrame({
        "customer": [2, 0, 1, 1],
        "firm": ["Focal", "Focal", "Focal", "Rival A"],
        "step": [warm + 10, warm + 20, warm + 5, warm + 30],
        "cause": ["natural_churn", "natural_churn", "competitor_offer", "natural_churn"],
    })
    curve = outcomes.retention_by_score(scenario, tables)
    assert curve.loc[4, "answers"] == 2 and curve.loc[4, "retention"] == 1.0  # customer 2 left the market: apart
    assert curve.loc[5, "answers"] == 1 and curve.loc[5, "retention"] == 0.0  # customer 1 switched; 0 left: apart
    tables["defections"]["cause"] = "competitor_offer"  # the same departures as switches count against retention
    curve = outcomes.retention_by_score(scenario, tables)
    assert curve.loc[4, "answers"] == 3 and curve.loc[4, "retention"] == pytest.approx(2 / 3)  # customer 2 left
    assert curve.loc[5, "answers"] == 2 and curve.loc[5, "retention"] == 0.0


def test_outcomes_of_a_real_run_agree_with_its_tables(scenario):
    result = simulate(scenario, seed=3)
    names = ["focal.share_end", "focal.attitude_mean", "focal.investment_cost_total", "market.annual_churn",
             "focal.cohort_retention", "focal.npv - firm[Rival B].npv", "focal.defections_total"]
    values = outcomes.compute(names, scenario, result.tables, result.summary)
    firms = result.tables["firms"]
    focal = firms[(firms["firm"] == "Focal") & (firms["step"] > scenario.warmup_steps())]
    assert values["focal.share_end"] == pytest.approx(focal["share"].iloc[-1])
    assert values["focal.attitude_mean"] == pytest.approx(focal["attitude"].mean())
    assert values["focal.investment_cost_total"] == 0.0
    assert values["focal.defections_total"] == focal["defections"].sum()
    npv = {f["firm"]: f["npv"] for f in result.summary["firms"]}
    assert values["focal.npv - firm[Rival B].npv"] == pytest.approx(npv["Focal"] - npv["Rival B"])
    customers = result.tables["customers"]
    cohort = customers[customers["firm_after_warmup"] == "Focal"]
    assert values["focal.cohort_retention"] == pytest.approx(np.mean(cohort["firm"] == "Focal"))
    assert 0 < values["market.annual_churn"] < 2


# ------------------------------------------------------------------------------------------ the declarations


def _catalogue_names() -> set[str]:
    """The names written between double backticks in the module docstring's catalogue (``x_1`` .. ``x_5`` expanded)."""
    doc = outcomes.__doc__
    catalogue = doc[doc.index("* firm measures"):doc.index("A firm that ran no campaign")]
    for first, last in re.findall(r"``([a-z_]+_\d)`` \.\. ``([a-z_]+_\d)``", catalogue):
        stem = first.rsplit("_", 1)[0]
        catalogue += " ".join(f"``{stem}_{i}``" for i in range(int(first[-1]), int(last[-1]) + 1))
    return set(re.findall(r"``([a-z0-9_]+)``", catalogue))


# names in the catalogue that are not measures: tables, columns and parameters it mentions
NOT_MEASURES = {"acquisition_cost", "categories", "horizon", "programmes", "segments", "settlement", "warnings"}


def test_the_catalogue_names_every_declared_measure_and_nothing_else():
    named = _catalogue_names()
    assert set(outcomes.MEASURES) - named == set(), "declared but not in the module docstring's catalogue"
    assert named - set(outcomes.MEASURES) == NOT_MEASURES


def test_a_declaration_gives_name_label_unit_kinds_and_function():
    m = outcomes.MEASURES["cohort_retention"]
    assert (m.name, m.section, m.kinds) == ("cohort_retention", "cohort", ("firm",))
    assert m.description == "warm-up cohort still with the firm at the end (fraction)"
    assert outcomes.MEASURES["revenue"].kinds == ("firm", "party")
    assert outcomes.MEASURES["annual_churn"].kinds == ("firm", "market")
    assert outcomes.MEASURES["retention_by_score_3"].kinds == ("market",)
    assert outcomes.MEASURES["cost_per_regain"].description == "cost per regain"  # no label yet: the name in words
    assert outcomes.describe_measure("not_declared") == "not declared"
    assert all(m.kinds for m in outcomes.MEASURES.values())


def test_names_are_checked_against_the_declarations():
    for name, m in outcomes.MEASURES.items():
        for who, kind in (("focal", "firm"), ("firm[Rival A]", "firm"), ("market", "market")):
            if m.function(kind) is not None:
                outcomes.check_name(f"{who}.{name}")
            else:
                with pytest.raises(outcomes.OutcomeError, match="unknown outcome"):
                    outcomes.check_name(f"{who}.{name}")
    assert outcomes.measure_names("party") == ("share_mean", "revenue", "profit", "programme_cost_total",
                                               "programme_fees_total", "member_discounts_total")
    assert outcomes.parse_name("firm[Rival A].npv") == outcomes.OutcomeName("firm", "Rival A", "npv")
    assert outcomes.parse_name("focal.npv") == outcomes.OutcomeName("focal", None, "npv")
    assert outcomes.parse_name("focal npv") is None


def test_a_party_is_measured_only_by_its_declared_measures(scenario):
    with pytest.raises(outcomes.OutcomeError, match=r"not measured for 'StoreCo'.*use one of share_mean, revenue"):
        outcomes.measure_value("npv", "StoreCo", scenario, {}, {})


def _contacts(contact_cost: float, offer_cost: float) -> pd.DataFrame:
    return pd.DataFrame({"firm": ["Focal", "Focal"], "accepted": [True, False],
                         "contact_cost": [contact_cost, contact_cost], "offer_cost": [offer_cost, offer_cost],
                         "second_value": [30.0, None], "second_revenue": [50.0, None], "second_steps": [4.0, None],
                         "second_ended": [True, False]})


def test_return_on_regain_is_one_function_whose_undefined_case_each_caller_chooses(scenario):
    assert value.return_on_regain(150.0, 100.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="campaign cost must be positive"):
        value.return_on_regain(1.0, 0.0)  # analysing a campaign: nothing spent is an error
    assert math.isnan(value.return_on_regain(1.0, 0.0, without_cost="nan"))
    roi = "focal.return_on_regain"
    # a run's outcome: 2 contacts x 5 + 1 accepted offer x 10 = 20 spent, 30 regained
    assert outcomes.compute([roi], scenario, {"contacts": _contacts(5.0, 10.0)}, {})[roi] == pytest.approx(0.5)
    assert math.isnan(outcomes.compute([roi], scenario, {"contacts": _contacts(0.0, 0.0)}, {})[roi])  # free
    absent = outcomes.compute([roi, "focal.winback_cost"], scenario, {}, {})  # no campaign
    assert math.isnan(absent[roi]) and absent["focal.winback_cost"] == 0.0


def test_the_median_lifetime_counts_lifetimes_still_running_as_censored():
    # ended after 2, 4 and 6 steps; two still running at 3 and 10: Kaplan-Meier survival 0.8 after 2, 0.533 after 4,
    # 0.267 after 6 -> the median is 6, where the mean of the lengths (5) would cut the running ones short
    length = np.array([2.0, 4.0, 6.0, 3.0, 10.0])
    ended = np.array([True, True, True, False, False])
    assert outcomes.median_lifetime(length, ended) == 6.0
    assert outcomes.median_lifetime(length, np.array([True, False, False, False, False])) != outcomes.median_lifetime(
        length, np.ones(5, bool))
    assert math.isnan(outcomes.median_lifetime(length, np.zeros(5, bool)))  # all still running: not reached
    assert math.isnan(outcomes.median_lifetime(np.array([]), np.array([], bool)))


def test_satisfied_switchers_are_judged_by_their_answer_about_the_firm_left_and_exits_do_not_count(scenario):
    warm = scenario.warmup_steps()
    defections = pd.DataFrame({
        "step": [warm + 1, warm + 2, warm + 3, warm + 4, warm],
        "firm": ["Focal", "Focal", "Rival A", "Focal", "Focal"],
        "cause": ["competitor_offer", "needs_not_met", "competitor_offer", "natural_churn", "competitor_offer"],
        "score_about_left": pd.array([5, 2, pd.NA, 5, 5], dtype="Int8"),  # the last one is in the warm-up
    })
    tables = {"defections": defections}
    got = outcomes.compute(["focal.satisfied_switcher_share", "market.satisfied_switcher_share"], scenario, tables,
                           {})
    assert got == {"focal.satisfied_switcher_share": 0.5, "market.satisfied_switcher_share": 0.5}


def test_a_firms_purchase_rate_and_score_distribution_are_read_off_its_records(scenario):
    names = ["focal.purchase_rate_annual", "market.purchase_rate_annual",
             *(f"market.score_share_{s}" for s in range(1, 6)), *(f"focal.score_share_{s}" for s in range(1, 6))]
    runs = {}
    for label, rate in (("weekly", "1 per week"), ("twice", "2 per week")):
        result = simulate(scenario.with_changes({"market.customers.purchase_rate.mean": rate}), seed=3)
        runs[label] = outcomes.compute(names, result.scenario, result.tables, result.summary)
        surveys = result.tables["surveys"]
        after = surveys[(surveys["step"] > scenario.warmup_steps()) & (surveys["firm"] == "Focal")]
        assert runs[label]["focal.score_share_5"] == pytest.approx((after["score"] == 5).mean())
    # gamma-distributed rates with mean 1 a week: about 52 occasions a customer-year, twice that at twice the rate
    assert runs["weekly"]["market.purchase_rate_annual"] == pytest.approx(52.2, rel=0.1)
    assert runs["twice"]["market.purchase_rate_annual"] == pytest.approx(
        2 * runs["weekly"]["market.purchase_rate_annual"], rel=0.1)
    for run in runs.values():
        assert sum(run[f"market.score_share_{s}"] for s in range(1, 6)) == pytest.approx(1.0)
        assert sum(run[f"focal.score_share_{s}"] for s in range(1, 6)) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ churn by segment

SEGMENTS = [{"name": "light", "share": 0.6, "price_sensitivity": {"mean": 0.5, "sd": 0.2, "min": 0.0}},
            {"name": "keen", "share": 0.4, "price_sensitivity": {"mean": 3.0, "sd": 0.5, "min": 0.0}}]


def test_churn_by_segment_is_each_segments_share_of_the_firms_churn(make_scenario):
    scenario = make_scenario(market__customers__population=600, market__customers__segments=SEGMENTS)
    result = simulate(scenario, seed=5)
    counts = result.tables["segments"]
    firms = result.tables["firms"]
    # the exposure: every firm's customers at every step, split by segment
    total = counts.groupby(["step", "firm"], observed=True)["customers"].sum()
    assert total.to_dict() == firms.set_index(["step", "firm"])["customers"].to_dict()
    names = [f"{who}.annual_churn{tail}" for who in ("focal", "firm[Rival A]", "market")
             for tail in ("", "[segment=light]", "[segment=keen]")]
    values = outcomes.compute(names, scenario, result.tables, result.summary)
    warm = scenario.warmup_steps()
    reported = counts[counts["step"] > warm]
    for who, firm in (("focal", "Focal"), ("firm[Rival A]", "Rival A"), ("market", None)):
        mine = reported if firm is None else reported[reported["firm"] == firm]
        exposure = {s: mine[mine["segment"] == s].groupby("step")["customers"].sum().mean() for s in ("light", "keen")}
        # churn is defections over exposure: the segments' defections add up to the firm's
        weighted = sum(values[f"{who}.annual_churn[segment={s}]"] * exposure[s] for s in exposure)
        assert weighted == pytest.approx(values[f"{who}.annual_churn"] * sum(exposure.values()), rel=1e-9)
        assert values[f"{who}.annual_churn[segment=light]"] != values[f"{who}.annual_churn[segment=keen]"]
    # by hand for one firm and segment
    dep = result.tables["defections"]
    dep = dep[(dep["step"] > warm) & (dep["firm"] == "Focal")]
    keen = set(result.tables["customers"].query("segment == 'keen'")["customer"])
    years = (scenario.steps() - warm) * 7 / 365.25
    by_hand = dep["customer"].isin(keen).sum() / exposure_of(reported, "Focal", "keen") / years
    assert values["focal.annual_churn[segment=keen]"] == pytest.approx(by_hand, rel=1e-12)


def exposure_of(counts, firm, segment):
    mine = counts[(counts["firm"] == firm) & (counts["segment"] == segment)]
    return mine["customers"].mean()


def test_a_market_of_one_segment_keeps_no_segments_table_and_names_are_checked(scenario):
    result = simulate(scenario, seed=3)
    assert "segments" not in result.tables
    outcomes.check_name("focal.annual_churn[segment=keen]")  # the measure may be split; the market is not known
    with pytest.raises(outcomes.OutcomeError, match="declares no segments"):
        outcomes.check_name("focal.annual_churn[segment=keen]", segments=[])
    with pytest.raises(outcomes.OutcomeError, match=r"unknown segment 'kean'; known: \['light', 'keen'\]"):
        outcomes.check_name("market.annual_churn[segment=kean]", segments=["light", "keen"])
    with pytest.raises(outcomes.OutcomeError, match="not measured by segment; measures by segment: annual_churn"):
        outcomes.check_name("focal.npv[segment=keen]")
    with pytest.raises(outcomes.OutcomeError, match="declares no segments"):
        outcomes.compute(["focal.annual_churn[segment=keen]"], scenario, result.tables, result.summary)
