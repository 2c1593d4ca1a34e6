"""Confidence intervals of a mean over runs: what every report, finding and decision states."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=1024)
def _t_quantile(q: float, df: int) -> float:
    """The t distribution's quantile (a report asks for the same few thousands of times)."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


def interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float]:
    """n (non-NaN values), mean, sd and the t-distribution confidence interval of the mean.

    With one value the sd and interval are NaN; with none, everything but n.
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    if n >= 2:
        sd = float(v.std(ddof=1))
        half = _t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    else:
        sd = half = math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def equivalence(values: Sequence[float] | np.ndarray, margin: float, alpha: float = 1.0 - CONFIDENCE) -> dict:
    """Whether the mean of ``values`` (paired differences) is equivalent to 0 within +-``margin`` (the smallest
    effect of interest): two one-sided t-tests (Schuirmann 1987), each at level ``alpha``, with scipy's one-sample
    t-test against -margin (alternative: greater) and +margin (alternative: less). Equivalent when both reject,
    that is when the 1 - 2 alpha interval of the mean lies inside (-margin, +margin).

    Also the *power* of the comparison: the chance the test would conclude equivalence if the true difference were
    0, with the observed spread and number of runs (the usual approximation 2 F(margin / se - t) - 1, F and t those
    of the t distribution with n - 1 degrees of freedom); a low power means "not shown equivalent" says little.
    Returns n, mean, the 1 - 2 alpha interval (``low``, ``high``), ``p`` (the larger one-sided p-value),
    ``equivalent`` and ``power``; fewer than two values give NaN and not equivalent."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n < 2:
        return {"n": n, "mean": float(v.mean()) if n else math.nan, "low": math.nan, "high": math.nan,
                "p": math.nan, "equivalent": False, "power": math.nan, "margin": margin}
    p = max(float(stats.ttest_1samp(v, -margin, alternative="greater").pvalue),
            float(stats.ttest_1samp(v, margin, alternative="less").pvalue))
    c = interval(v, 1.0 - 2.0 * alpha)
    critical = float(stats.t.ppf(1.0 - alpha, n - 1))
    se = c["sd"] / math.sqrt(n)
    power = max(0.0, 2.0 * float(stats.t.cdf(margin / se - critical, n - 1)) - 1.0) if se > 0 else 1.0
    return {"n": n, "mean": c["mean"], "low": c["ci_low"], "high": c["ci_high"], "p": p,
            "equivalent": bool(p < alpha), "power": power, "margin": margin}
