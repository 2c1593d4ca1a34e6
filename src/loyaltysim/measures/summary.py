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


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy()


def _sum(values: np.ndarray) -> Any:
    """``Series.sum()`` of a numpy-typed column: NaN left out (summed as 0), in the column's type."""
    if values.dtype.kind == "f":
        values = np.where(np.isnan(values), 0.0, values)
    return values.sum()


def _mean(values: np.ndarray) -> Any:
    """``Series.mean()`` of a numpy-typed column: the sum of its values that are not NaN over their count, the sum
    and the division in float64 (pandas' own steps, so the same bits); NaN with no value."""
    if values.dtype.kind == "f":
        missing = np.isnan(values)
        count = np.float64(values.size - missing.sum())
        the_sum = np.where(missing, 0.0, values).sum(dtype=values.dtype)
    else:
        count = np.float64(values.size)
        the_sum = values.sum(dtype=np.float64)
    return the_sum / count if count > 0 else np.nan


def _share_at_least_4(scores: np.ndarray) -> float:
    """The share of the answered scores (not NaN) that are 4 or 5; NaN with none."""
    answered = scores[~np.isnan(scores)]
    return float(np.count_nonzero(answered >= 4) / answered.size) if answered.size else float("nan")


def _counts(values: pd.Series, kept: np.ndarray) -> dict[Any, int]:
    """How often each value occurs among the ``kept`` rows (a categorical's every category, 0 if absent)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()[kept]
        counts = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories))
        return dict(zip(values.cat.categories, counts.tolist(), strict=True))
    return values[kept].value_counts().to_dict()


def summarize(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Outcomes per firm over the reported period (after the warm-up).

    Annual churn is defections per customer-year: defections over the period divided by mean customers and
    by the period's length in years. NPV discounts each step's profit to the end of the warm-up.

    Computed on the columns' numpy arrays, with the reductions pandas makes (:func:`_sum`, :func:`_mean`): the same
    numbers as grouping and filtering the tables, at a fraction of the cost for a short run's small tables.
    """
    warm = scenario.warmup_steps()
    steps = scenario.steps()
    step_years = DAYS[scenario.time.step] / DAYS["year"]
    years = (steps - warm) * step_years
    rate = scenario.economics.discount_rate
    per_year = rate.value * DAYS["year"] / DAYS[rate.unit]
    firms, dep = tables["firms"], tables["defections"]
    kept = _column(firms, "step") > warm  # the reported period's rows
    dep_kept = _column(dep, "step") > warm
    focal = scenario.policy.firm
    out = []

    def column(name: str) -> np.ndarray:
        return _column(firms, name)[kept]

    # the groups of groupby("firm", sort=False): in order of first appearance, a missing firm left out
    groups, group_names = pd.factorize(firms["firm"].to_numpy(dtype=object)[kept], sort=False)
    step, customers, share, revenue, profit = (column(c) for c in ("step", "customers", "share", "revenue", "profit"))
    satisfaction, nps = column("satisfaction"), column("nps")
    scores = np.column_stack([column(f"score_{s}") for s in range(1, 6)])
    dep_firm = dep["firm"].to_numpy(dtype=object)[dep_kept]
    last_score = dep["last_score"].to_numpy(dtype=np.float64, na_value=np.nan)[dep_kept]
    for code, name in enumerate(group_names):
        rows = np.flatnonzero(groups == code)
        discount = (1.0 + per_year) ** (-(step[rows] - warm) * step_years)
        d = dep_firm == name
        answers = scores[rows].sum(axis=0)
        asked = answers.sum()
        mean_customers = _mean(customers[rows])
        out.append({
            "firm": name,
            "focal": name == focal,
            "customers_end": int(customers[rows[-1]]),
            "share_end": nan_to_none(share[rows[-1]]),
            "share_mean": nan_to_none(_mean(share[rows])),
            "annual_churn": nan_to_none(int(d.sum()) / mean_customers / years if mean_customers else float("nan")),
            "revenue": float(_sum(revenue[rows])),
            "profit": float(_sum(profit[rows])),
            "npv": float((profit[rows] * discount).sum()),
            "satisfaction_mean": nan_to_none(_mean(satisfaction[rows])),
            "score_mean": nan_to_none(
                float((answers * np.arange(1, 6)).sum() / asked) if asked else float("nan")),
            "nps_mean": nan_to_none(_mean(nps[rows])),
            "satisfied_defector_share": nan_to_none(_share_at_least_4(last_score[d])),
        })
    causes = _counts(dep["cause"], dep_kept)
    return {
        "scenario": scenario.name,
        "steps": steps,
        "warmup_steps": warm,
        "step": scenario.time.step,
        "firms": out,
        "market": {
            "defections": int(dep_kept.sum()),
            "satisfied_defector_share": nan_to_none(_share_at_least_4(last_score)),
            "defection_causes": {c: int(causes.get(c, 0)) for c in CAUSE_NAMES if c != "none"},
        },
    }
