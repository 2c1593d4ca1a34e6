"""The run summary computed on numpy arrays gives the numbers, bit for bit, of grouping and filtering the tables
with pandas (the reference below is the pandas form it replaced)."""

import json

import numpy as np
import pytest

from loyaltysim import load_scenario
from loyaltysim.experiments.run import simulate
from loyaltysim.measures.summary import nan_to_none, summarize
from loyaltysim.model.state import CAUSE_NAMES
from loyaltysim.scenario import scenario_from_dict
from loyaltysim.units import DAYS
from loyaltysim.version import PACKAGE_DIR

SCENARIOS = PACKAGE_DIR.parent.parent / "experiments" / "scenarios"


def reference(scenario, tables):
    warm = scenario.warmup_steps()
    steps = scenario.steps()
    step_years = DAYS[scenario.time.step] / DAYS["year"]
    years = (steps - warm) * step_years
    rate = scenario.economics.discount_rate
    per_year = rate.value * DAYS["year"] / DAYS[rate.unit]
    firms = tables["firms"][tables["firms"]["step"] > warm]
    dep = tables["defections"][tables["defections"]["step"] > warm]
    out = []
    for name, g in firms.groupby("firm", sort=False):
        discount = (1.0 + per_year) ** (-(g["step"].to_numpy() - warm) * step_years)
        d = dep[dep["firm"] == name]
        scored = d["last_score"].dropna()
        answers = g[[f"score_{s}" for s in range(1, 6)]].sum()
        asked = answers.sum()
        mean_customers = g["customers"].mean()
        out.append({
            "firm": name, "focal": name == scenario.policy.firm,
            "customers_end": int(g["customers"].iloc[-1]),
            "share_end": nan_to_none(g["share"].iloc[-1]),
            "share_mean": nan_to_none(g["share"].mean()),
            "annual_churn": nan_to_none(len(d) / mean_customers / years if mean_customers else float("nan")),
            "revenue": float(g["revenue"].sum()),
            "profit": float(g["profit"].sum()),
            "npv": float((g["profit"].to_numpy() * discount).sum()),
            "satisfaction_mean": nan_to_none(g["satisfaction"].mean()),
            "score_mean": nan_to_none(
                float((answers.to_numpy() * np.arange(1, 6)).sum() / asked) if asked else float("nan")),
            "nps_mean": nan_to_none(g["nps"].mean()),
            "satisfied_defector_share": nan_to_none(float((scored >= 4).mean()) if len(scored) else float("nan")),
        })
    scored = dep["last_score"].dropna()
    causes = dep["cause"].value_counts()
    return {
        "scenario": scenario.name, "steps": steps, "warmup_steps": warm, "step": scenario.time.step, "firms": out,
        "market": {
            "defections": len(dep),
            "satisfied_defector_share": nan_to_none(float((scored >= 4).mean()) if len(scored) else float("nan")),
            "defection_causes": {c: int(causes.get(c, 0)) for c in CAUSE_NAMES if c != "none"},
        },
    }


def _same(a, b):
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml"))[:6], ids=lambda p: p.stem)
def test_summary_is_the_pandas_summary(path):
    data = load_scenario(path).to_dict()
    data["market"]["customers"]["population"] = 200
    scenario = scenario_from_dict(data)
    result = simulate(scenario, seed=3)
    _same(summarize(scenario, result.tables), reference(scenario, result.tables))


def test_summary_with_missing_values_and_no_defections(make_scenario):
    scenario = make_scenario(market__customers__population=60)
    tables = dict(simulate(scenario, seed=5).tables)
    firms = tables["firms"].copy()
    firms.loc[firms.index[::3], "share"] = np.nan
    firms.loc[firms.index[1::4], "satisfaction"] = np.nan
    firms["nps"] = np.nan
    tables["firms"] = firms
    _same(summarize(scenario, tables), reference(scenario, tables))
    tables["defections"] = tables["defections"].iloc[:0]
    _same(summarize(scenario, tables), reference(scenario, tables))
    tables["firms"] = firms.iloc[:0]
    _same(summarize(scenario, tables), reference(scenario, tables))
