"""Confidence intervals of a mean over runs: what every report, finding and decision states."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


def interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float]:
    """n (non-NaN values), mean, sd and the t-distribution confidence interval of the mean.

    With one value the sd and interval are NaN; with none, everything but n.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    if n >= 2:
        sd = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    else:
        sd = half = math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}
