"""A run's summary: outcomes per firm over the reported period (after the warm-up), and the market's defections."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from loyaltysim.model.state import CAUSE_NAMES
from loyaltysim.scenario import LoyaltyScenario
from loyaltysim.units import DAYS


def nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Outcomes per firm over the reported period (after the warm-up).

    Annual churn is defections per customer-year: defections over the period divided by mean customers and
    by the period's length in years. NPV discounts each step's profit to the end of the warm-up.
    """
    warm = scenario.warmup_steps()
    steps = scenario.steps()
    step_years = DAYS[scenario.time.step] / DAYS["year"]
    years = (steps - warm) * step_years
    rate = scenario.economics.discount_rate
    per_year = rate.value * DAYS["year"] / DAYS[rate.unit]
    firms = tables["firms"][tables["firms"]["step"] > warm]
    dep = tables["defections"][tables["defections"]["step"] > warm]
    focal = scenario.policy.firm
    out = []
    for name, g in firms.groupby("firm", sort=False):
        discount = (1.0 + per_year) ** (-(g["step"].to_numpy() - warm) * step_years)
        d = dep[dep["firm"] == name]
        scored = d["last_score"].dropna()
        answers = g[[f"score_{s}" for s in range(1, 6)]].sum()
        asked = answers.sum()
        mean_customers = g["customers"].mean()
        out.append({
            "firm": name,
            "focal": name == focal,
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
            "satisfied_defector_share": nan_to_none(
                float((scored >= 4).mean()) if len(scored) else float("nan")),
        })
    scored = dep["last_score"].dropna()
    causes = dep["cause"].value_counts()
    return {
        "scenario": scenario.name,
        "steps": steps,
        "warmup_steps": warm,
        "step": scenario.time.step,
        "firms": out,
        "market": {
            "defections": len(dep),
            "satisfied_defector_share": nan_to_none(float((scored >= 4).mean()) if len(scored) else float("nan")),
            "defection_causes": {c: int(causes.get(c, 0)) for c in CAUSE_NAMES if c != "none"},
        },
    }
