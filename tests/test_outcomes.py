"""The outcomes catalogue: names, hand-computed values on canned tables, and a real run."""

import math

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes


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
