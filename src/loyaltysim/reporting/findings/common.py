"""What the findings modules share: reading the tidy results, paired differences, intervals as text, the plot style
and the robustness check.

The tidy results have one row per run and outcome: the factors' labels, ``design``, ``replication``, ``outcome``
and ``value``. Selections name factor labels as keyword arguments, e.g. ``mean(results, outcome, budget="0")``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loyaltysim.measures.intervals import interval


def values(results: pd.DataFrame, outcome: str, **labels: str) -> np.ndarray:
    """The values of ``outcome`` in the runs with the given factor labels (NaNs dropped)."""
    rows = results[results["outcome"] == outcome]
    for factor, label in labels.items():
        rows = rows[rows[factor].astype(str) == label]
    return rows["value"].dropna().to_numpy()


def mean(results: pd.DataFrame, outcome: str, **labels: str) -> float:
    """The mean of :func:`values` (NaN without any)."""
    found = values(results, outcome, **labels)
    return float(found.mean()) if found.size else float("nan")


def by_replication(results: pd.DataFrame, outcomes: list[str], **labels: str) -> pd.DataFrame:
    """The ``outcomes`` of the runs with the given labels, one row per replication and one column per outcome
    (replications missing one of them dropped): paired values for a statistic of several outcomes."""
    rows = results[results["outcome"].isin(outcomes)]
    for factor, label in labels.items():
        rows = rows[rows[factor].astype(str) == label]
    wide = rows.pivot_table(index="replication", columns="outcome", values="value", aggfunc="first")
    return wide.reindex(columns=outcomes).dropna()


def statistic_interval(columns: list[np.ndarray], statistic: Callable[..., float], seed: int = 0) -> dict:
    """A statistic of paired columns (e.g. a ratio of means) with its 95% bootstrap interval over replications
    (scipy.stats.bootstrap, BCa, 9,999 resamples with a fixed seed, so a report gives the same interval every time):
    ``value``, ``ci_low``, ``ci_high`` (NaN with fewer than three replications)."""
    from scipy import stats

    value = float(statistic(*columns))
    if len(columns[0]) < 3:
        return {"value": value, "ci_low": float("nan"), "ci_high": float("nan")}
    ci = stats.bootstrap(tuple(columns), statistic, paired=True, vectorized=False, n_resamples=9999,
                         confidence_level=0.95, rng=np.random.default_rng(seed)).confidence_interval
    return {"value": value, "ci_low": float(ci.low), "ci_high": float(ci.high)}


def levels(results: pd.DataFrame, factor: str) -> list[str]:
    """A factor's labels in level order (categories as the experiment declares them, else in order of appearance)."""
    column = results[factor]
    return [str(x) for x in (column.cat.categories if hasattr(column, "cat") else dict.fromkeys(column))]


def levels_present(results: pd.DataFrame, factor: str) -> set[str]:
    """The labels of ``factor`` that some run has (empty if the results have no such factor)."""
    return set(results[factor].astype(str)) if factor in results.columns else set()


def paired(results: pd.DataFrame, outcome: str, a: str, b: str, factor: str) -> np.ndarray:
    """Per-replication ``outcome`` at level ``a`` minus at level ``b`` of ``factor`` (replications with both)."""
    rows = results[results["outcome"] == outcome]
    wide = rows.assign(level=rows[factor].astype(str)).pivot_table(index="replication", columns="level",
                                                                    values="value", aggfunc="first")
    if a not in wide.columns or b not in wide.columns:
        return np.array([])
    return (wide[a] - wide[b]).dropna().to_numpy()


def above_zero(diffs: np.ndarray) -> bool:
    """The 95% interval of the mean lies above 0 (at least two values)."""
    return bool(diffs.size >= 2 and interval(diffs)["ci_low"] > 0)


def below_zero(diffs: np.ndarray) -> bool:
    """The 95% interval of the mean lies below 0 (at least two values)."""
    return bool(diffs.size >= 2 and interval(diffs)["ci_high"] < 0)


def gone(diffs: np.ndarray, margin: float) -> tuple[bool, str]:
    """Whether an effect is gone: its paired differences are equivalent to 0 within +-``margin`` (the smallest
    effect of interest) by two one-sided tests at 5% (:func:`loyaltysim.measures.intervals.equivalence`), and the
    evidence: mean, 90% interval, the margin, the TOST p-value and the comparison's power."""
    from loyaltysim.measures.intervals import equivalence

    e = equivalence(diffs, margin)
    return e["equivalent"], (f"{e['mean']:+.3f}, 90% interval [{e['low']:+.3f}, {e['high']:+.3f}] against "
                             f"+-{margin:g} (TOST p = {e['p']:.3g}; power {e['power']:.2f})")


def interval_text(diffs: np.ndarray) -> str:
    """Mean and 95% interval, signed, three decimals: ``+0.123 [+0.100, +0.146]``."""
    c = interval(diffs)
    return f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"


def money_text(diffs: np.ndarray) -> str:
    """Mean and 95% interval of amounts of money, signed whole numbers: ``+15,918 [+13,043, +18,792]``."""
    c = interval(diffs)
    return f"{c['mean']:+,.0f} [{c['ci_low']:+,.0f}, {c['ci_high']:+,.0f}]"


def thousands(experiment) -> str:
    """How an axis of money in thousands says so: "thousands", or "thousands of EUR" when the experiment's scenario
    names its currency."""
    currency = experiment.base.economics.currency
    return f"thousands of {currency}" if currency else "thousands"


def drop_crowded_labels(fig, labels: list) -> None:
    """Hide each of ``labels`` (annotations, most important first) that would cover one kept before it, once the
    figure is laid out: points close together keep the label of the first."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    kept = []
    for label in labels:
        box = label.get_window_extent(renderer).padded(2.0)
        if any(box.overlaps(other) for other in kept):
            label.set_visible(False)
        else:
            kept.append(box)


def style():
    """pyplot and seaborn, set up for the findings' figures (Agg backend, white grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def robustness(results: pd.DataFrame, effects: dict[str, Callable[[str], tuple[bool, str]]]) -> list[dict]:
    """For each effect, whether it holds at 80% or more of the perturbed points (levels of the factor
    ``perturbation`` other than ``base``); ``effects`` maps an effect to its test at one level."""
    points = [p for p in levels(results, "perturbation") if p != "base"]
    checks = []
    for effect, test in effects.items():
        held = []
        for point in ["base", *points]:
            ok, _ = test(point)
            if point != "base":
                held.append(ok)
            else:
                base_ok = ok
        share = sum(held) / len(held) if held else float("nan")
        failed = [p for p, ok in zip(points, held, strict=True) if not ok]
        checks.append({"effect": f"{effect}: holds at >= 80% of the +-25% points", "holds": share >= 0.8,
                       "evidence": f"{sum(held)} of {len(held)} points; base {'holds' if base_ok else 'fails'}"
                                   + (f"; fails at {', '.join(failed)}" if failed else "")})
    return checks
