"""Global sensitivity analysis of a sampled design: which uncertain factors move each outcome, and how much.

The estimators read the report's tidy results (one row per run and outcome, one numeric column per factor) and
the design's :class:`~loyaltysim.experiments.design.Sampling`:

* ``saltelli``: first-order (S1) and total (ST) Sobol' indices, and second-order (S2) ones when the design
  sampled them, by ``SALib.analyze.sobol`` (Saltelli 2010's estimator of S1, Jansen's of ST);
* ``morris``: the elementary effects' mean absolute value mu*, their mean mu and standard deviation sigma, by
  ``SALib.analyze.morris`` (Campolongo et al. 2007);
* ``lhs`` and ``sobol``: standardized regression coefficients (SRC) of a linear fit of the outcome on the factors,
  with the fit's R^2. For independent uniform factors SRC^2 is the share of the outcome's variance the factor
  explains linearly; when R^2 is low (below about 0.7) the outcome is not linear in the factors and the SRC
  summarise little: the scatter figures show the shape. These designs are for exploration and meta-models.

**The value analysed** at a design point is the mean of the outcome over the point's replications (NaNs
dropped); an outcome with no value at some design point is not analysed (the estimators need every point).

**Arms.** A sampled design may cross its sampled points with the levels of labelled factors (its arms, e.g. a firm
investing in a basic attribute or a latent one): each combination of the arms' labels is analysed on its own, over
its points, one per sampled row in the sampling's order (``analyse``'s ``design``), so the indices are per outcome
and arm: what moves the outcome within that arm.

**Replication noise.** The model is stochastic: with R replications the mean at a point still carries noise of
variance ``v / R`` (``v``: the variance between replications, pooled over the design points). Its share of the
variance of the points' means over the design, the *noise share*, is reported per outcome. Noise acts like one
more factor nobody controls: a Sobol' S1 shrinks by that share, and the ST of a factor without any effect is about
the noise share rather than 0 (less when common random numbers make the noise alike across points); a Morris
factor without effect gets mu* about ``sqrt(2 v / R) sqrt(2 / pi) / delta`` from independent noise (the *noise
floor*, ``delta`` the Morris step as a share of the range; an upper bound on common random numbers, where a factor
that changes nothing in the runs gets exactly 0); regression's R^2 cannot exceed one minus the noise share. An
index is above noise when its confidence interval lies above those levels; otherwise add replications.

**Intervals** are bootstrap intervals at the report's confidence level, seeded by the design seed (the same
results give the same intervals): SALib's for S1, ST, S2 and mu* (``RESAMPLES`` resamples of the design's points;
the estimate plus and minus the normal quantile times the resamples' standard deviation), and a percentile
bootstrap over the design points for SRC (``scipy.stats.bootstrap``). sigma and mu have none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from loyaltysim.experiments.design import salib_problem

if TYPE_CHECKING:
    from loyaltysim.experiments.design import Sampling

RESAMPLES = 1000  # bootstrap resamples behind every interval
INDEX_COLUMNS = ("factor", "index", "estimate", "ci_low", "ci_high")
MAIN_INDEX = {"saltelli": "ST", "morris": "mu_star", "lhs": "SRC", "sobol": "SRC"}
"""The index each design's figure and tables sort factors by."""
METHOD = {
    "saltelli": "Sobol' indices (SALib: Saltelli's sample and estimators)",
    "morris": "Morris elementary effects (SALib)",
    "lhs": "standardized regression coefficients on a Latin hypercube sample",
    "sobol": "standardized regression coefficients on a scrambled Sobol' sequence",
}


@dataclass
class OutcomeSensitivity:
    """The sensitivity of one outcome: an index table (:data:`INDEX_COLUMNS`) and how far to trust it."""

    outcome: str
    kind: str
    indices: pd.DataFrame
    points: int  # design points analysed
    replications: int  # the most replications with a value at a point
    noise_share: float  # replication noise's share of the variance of the points' means (NaN with one replication)
    noise_floor: float = math.nan  # Morris: the mu* of a factor without effect, from noise alone
    r2: float = math.nan  # regression: R^2 of the linear fit
    note: str = ""  # why no index was computed, when none was
    arm: dict[str, str] = field(default_factory=dict)  # the arms' labels of the points analysed (none without arms)


def point_means(tidy: pd.DataFrame, outcome: str, points: int | Sequence[int]) -> tuple[np.ndarray, float, int]:
    """The outcome's mean over replications at each design point (design points ``0 .. points - 1``, or those
    listed, in that order; NaN where no replication has a value), the noise variance of such a mean (each point's
    variance between replications over its count of values, averaged over the points with two or more), and the
    most replications with a value at a point."""
    rows = tidy[tidy["outcome"] == outcome]
    wanted = range(points) if isinstance(points, int) else list(points)
    table = rows.pivot_table(index="design", columns="replication", values="value", aggfunc="first",
                             dropna=False).reindex(wanted)
    values = table.to_numpy(dtype=float)
    counts = (~np.isnan(values)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)
        two = counts >= 2
        variances = np.nanvar(values[two], axis=1, ddof=1) / counts[two] if two.any() else np.array([])
    noise = float(variances.mean()) if variances.size else math.nan
    return means, noise, int(counts.max(initial=0))


def _rows(names: Sequence[str], index: str, estimate: Sequence[float], half: Sequence[float] | None = None,
          low: Sequence[float] | None = None, high: Sequence[float] | None = None) -> list[dict]:
    """Index rows; the interval is the estimate plus and minus ``half``, or ``low`` to ``high``, or none."""
    rows = []
    for j, name in enumerate(names):
        e = float(estimate[j])
        if half is not None:
            lo, hi = e - float(half[j]), e + float(half[j])
        elif low is not None and high is not None:
            lo, hi = float(low[j]), float(high[j])
        else:
            lo = hi = math.nan
        rows.append({"factor": name, "index": index, "estimate": e, "ci_low": lo, "ci_high": hi})
    return rows


def sobol_indices(sampling: Sampling, y: np.ndarray, confidence: float) -> list[dict]:
    """S1 and ST per factor (and S2 per pair, named "a x b", when sampled), with SALib's bootstrap intervals."""
    from SALib.analyze import sobol

    res = sobol.analyze(salib_problem(sampling.names), y, calc_second_order=sampling.second_order,
                        num_resamples=RESAMPLES, conf_level=confidence, seed=sampling.seed)
    names = sampling.names
    rows = _rows(names, "S1", res["S1"], res["S1_conf"]) + _rows(names, "ST", res["ST"], res["ST_conf"])
    if sampling.second_order:
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        rows += _rows([f"{names[i]} x {names[j]}" for i, j in pairs], "S2", [res["S2"][i, j] for i, j in pairs],
                      [res["S2_conf"][i, j] for i, j in pairs])
    return rows


def morris_step(levels: int) -> float:
    """A Morris design's step as a share of a factor's range: levels / (2 (levels - 1)) (SALib's delta)."""
    return levels / (2 * (levels - 1))


def morris_indices(sampling: Sampling, y: np.ndarray, confidence: float) -> list[dict]:
    """mu* with SALib's bootstrap interval, sigma and mu per factor, from the unit coordinates of the points."""
    from SALib.analyze import morris

    assert sampling.levels is not None
    res = morris.analyze(salib_problem(sampling.names), sampling.unit, y, num_resamples=RESAMPLES,
                         conf_level=confidence, num_levels=sampling.levels, seed=sampling.seed)
    names = sampling.names
    return (_rows(names, "mu_star", res["mu_star"], res["mu_star_conf"]) + _rows(names, "sigma", res["sigma"])
            + _rows(names, "mu", res["mu"]))


def _standardized_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """SRC of a least-squares fit of standardized y on standardized x, and its R^2."""
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
        ys = (y - y.mean()) / y.std(ddof=1)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):  # a resample where a factor or y is constant
        return np.full(x.shape[1], np.nan), math.nan
    beta = np.linalg.lstsq(xs, ys, rcond=None)[0]
    residual = ys - xs @ beta
    return beta, float(1.0 - residual @ residual / (ys @ ys))


def regression_indices(x: np.ndarray, y: np.ndarray, names: Sequence[str], confidence: float,
                       seed: int) -> tuple[list[dict], float]:
    """SRC per factor with percentile bootstrap intervals over the design points, and the fit's R^2."""
    from scipy import stats

    src, r2 = _standardized_fit(x, y)
    boot = stats.bootstrap((np.arange(len(y)),), lambda idx: _standardized_fit(x[idx], y[idx])[0],
                           vectorized=False, n_resamples=RESAMPLES, confidence_level=confidence, method="percentile",
                           rng=np.random.default_rng(seed))
    ci = boot.confidence_interval
    return _rows(names, "SRC", src, low=ci.low, high=ci.high), r2


def analyse(tidy: pd.DataFrame, sampling: Sampling, outcome: str, confidence: float,
            design: Sequence[int] | None = None, arm: Mapping[str, str] | None = None) -> OutcomeSensitivity:
    """The sensitivity of one outcome of a sampled design (see the module's docstring for what is computed).

    ``design`` lists the design points analysed, one per row of ``sampling.unit`` in the rows' order (by default
    row i is design point i: a design without arms); with arms, the points of one combination of the arms' labels
    (:meth:`~loyaltysim.experiments.design.Experiment.arm_points`), which ``arm`` names in the result.
    """
    points = len(sampling.unit)
    design = range(points) if design is None else list(design)
    if len(design) != points:
        raise ValueError(f"{len(design)} design point(s) for the {points} rows of the sampling; give one per row")
    y, noise, reps = point_means(tidy, outcome, design)
    found = OutcomeSensitivity(outcome, sampling.kind, pd.DataFrame(columns=INDEX_COLUMNS), points, reps, math.nan,
                               arm=dict(arm or {}))
    missing = int(np.isnan(y).sum())
    if missing:
        found.note = (f"not analysed: {missing} of {points} design point(s) have no value (no run stored, or every "
                      "replication gave NaN); the estimators need every point")
        return found
    spread = float(np.var(y, ddof=1)) if points >= 2 else 0.0
    if not spread > 0:
        found.note = "not analysed: the outcome takes the same value at every design point"
        return found
    found.noise_share = noise / spread
    if sampling.kind == "saltelli":
        rows = sobol_indices(sampling, y, confidence)
    elif sampling.kind == "morris":
        rows = morris_indices(sampling, y, confidence)
        assert sampling.levels is not None
        found.noise_floor = math.sqrt(2 * noise) * math.sqrt(2 / math.pi) / morris_step(sampling.levels)
    else:
        if points <= len(sampling.factors) + 1:
            found.note = (f"not analysed: a linear fit of {len(sampling.factors)} factor(s) needs more than "
                          f"{len(sampling.factors) + 1} design points, the design has {points}")
            return found
        x = tidy.drop_duplicates("design").set_index("design").loc[list(design), sampling.names]
        rows, found.r2 = regression_indices(x.to_numpy(dtype=float), y, sampling.names, confidence, sampling.seed)
    found.indices = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return found


def sensitivity_table(results: Sequence[OutcomeSensitivity]) -> pd.DataFrame:
    """Every outcome's indices in one long table, with the points, replications and noise share behind them; with
    arms, a column per arm after the outcome (its label)."""
    arms = list(dict.fromkeys(a for r in results for a in r.arm))
    frames = [r.indices.assign(outcome=r.outcome, **{a: r.arm.get(a) for a in arms}, points=r.points,
                               replications=r.replications, noise_share=r.noise_share)
              for r in results if not r.indices.empty]
    columns = ["outcome", *arms, *INDEX_COLUMNS, "points", "replications", "noise_share"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
