"""Moments of a transaction log that a calibration fits: one named vector per log, the same code for an observed log
and a simulated one.

A calibration (:mod:`loyaltysim.experiments.fitting`) compares a firm's transaction log with the purchase log of
simulated runs through a few summary numbers, its *moments*. Each kind below gives one or more named numbers,
computed from the tidy frame of :mod:`loyaltysim.measures.transactions` (one transaction per customer and period,
time in weeks since the start of week 1) restricted to the *cohort*, the customers whose first transaction falls
before ``cohort_weeks``, and to the calibration window, the weeks 1..``weeks``:

* ``repeat_histogram``: the share of the cohort making 0, 1, ..., 6 and 7 or more repeat transactions in the window
  (names ``repeats_0`` ... ``repeats_7+``);
* ``cumulative_repeats``: repeat transactions per cohort customer since week 1, at the end of each week in
  ``tracking`` (names ``cumulative_w13`` ...): the tracking curve of Fader, Hardie & Lee (2005), per customer so
  that a cohort of any size compares;
* ``cohort_decay``: the share of the cohort making a repeat transaction in a week, averaged over blocks of
  ``decay_block`` weeks (names ``active_w1-13`` ...);
* ``interpurchase``: the mean time between a customer's consecutive transactions in the window, in weeks
  (``interpurchase_mean``);
* ``spend``: the mean value of a repeat transaction in the window (``spend_mean``), in the log's money (a simulated
  log's revenue: units x price less discounts);
* ``recency``: the mean time from a customer's last transaction to the end of the window, in weeks, among the
  customers with 1, 2-3 and 4 or more repeat transactions in it (``recency_x1``, ``recency_x2-3``,
  ``recency_x4+``). With the frequencies of ``repeat_histogram`` it is what the BG/NBD reads a customer base by
  (frequency and recency, Fader, Hardie & Lee 2005): a frequent buyer who has not bought for long has probably
  left, so these say how many of each frequency are still buying at the window's end, which the purchase counts
  alone do not tell apart from slower buying.

:func:`bootstrap` resamples the cohort's customers with replacement and returns the moments' covariance: the
sampling error of an observed log's moments, which weights a calibration's distance and enters its parameters'
standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from loyaltysim.measures import transactions as tr

KINDS = ("repeat_histogram", "cumulative_repeats", "cohort_decay", "interpurchase", "spend", "recency")
RECENCY_GROUPS = ((1, 1, "x1"), (2, 3, "x2-3"), (4, None, "x4+"))  # repeat transactions: first, last, name


@dataclass(frozen=True)
class Window:
    """Which transactions the moments read: the cohort (first transaction before ``cohort_weeks``), the calibration
    window (weeks 1..``weeks``), the weeks the cumulative repeats are read at and the cohort decay's block length."""

    weeks: int
    cohort_weeks: float
    tracking: tuple[int, ...]
    decay_block: int = 13

    def blocks(self) -> list[tuple[int, int]]:
        """The cohort decay's blocks of weeks (first, last), the last one shorter if ``weeks`` is not a multiple."""
        return [(a, min(a + self.decay_block - 1, self.weeks)) for a in range(1, self.weeks + 1, self.decay_block)]


def names(kinds: tuple[str, ...] | list[str], window: Window) -> list[str]:
    """The moments' names, in the order :func:`compute` returns them."""
    out: list[str] = []
    for kind in kinds:
        if kind == "repeat_histogram":
            out += [f"repeats_{label}" for label in tr.histogram_labels()]
        elif kind == "cumulative_repeats":
            out += [f"cumulative_w{w}" for w in window.tracking]
        elif kind == "cohort_decay":
            out += [f"active_w{a}-{b}" for a, b in window.blocks()]
        elif kind == "interpurchase":
            out.append("interpurchase_mean")
        elif kind == "spend":
            out.append("spend_mean")
        elif kind == "recency":
            out += [f"recency_{name}" for _, _, name in RECENCY_GROUPS]
        else:
            raise ValueError(f"unknown moment kind {kind!r}; use one of {', '.join(KINDS)}")
    return out


def compute(frame: pd.DataFrame, kinds: tuple[str, ...] | list[str], window: Window) -> pd.Series:
    """The named moments of a tidy frame (see the module's docstring). A cohort without a customer gives NaN."""
    cohort = tr.cohort(frame, window.cohort_weeks)
    inside = cohort[cohort["time"] < window.weeks]
    size = cohort["customer"].nunique()
    values: list[float] = []
    for kind in kinds:
        if kind == "repeat_histogram":
            counts = tr.repeat_histogram(inside, end=window.weeks).to_numpy(dtype=np.float64)
            values += list(counts / size) if size else [np.nan] * counts.size
        elif kind == "cumulative_repeats":
            cumulative = tr.weekly_repeats(inside, window.weeks)["cumulative"]
            values += [cumulative.loc[w] / size if size else np.nan for w in window.tracking]
        elif kind == "cohort_decay":
            decay = tr.cohort_decay(inside, window.weeks) if size else None
            values += [float(decay.loc[a:b].mean()) if decay is not None else np.nan for a, b in window.blocks()]
        elif kind == "interpurchase":
            gaps = tr.interpurchase_times(inside)
            values.append(float(gaps.mean()) if len(gaps) else np.nan)
        elif kind == "spend":
            amounts = tr.spend(inside, repeat_only=True)
            values.append(float(amounts.mean()) if len(amounts) else np.nan)
        elif kind == "recency":
            values += recency(inside, window.weeks)
        else:
            raise ValueError(f"unknown moment kind {kind!r}; use one of {', '.join(KINDS)}")
    return pd.Series(values, index=names(kinds, window), dtype=np.float64)


def recency(frame: pd.DataFrame, end: float) -> list[float]:
    """The mean weeks from the last transaction before ``end`` to ``end``, among the frame's customers with 1, 2-3
    and 4+ repeat transactions before it (:data:`RECENCY_GROUPS`; NaN for a group without a customer)."""
    window = frame[frame["time"] < end]
    g = window.groupby("customer", sort=False)["time"]
    repeats = g.size().to_numpy() - 1
    gap = end - g.max().to_numpy()
    out = []
    for first, last, _ in RECENCY_GROUPS:
        chosen = (repeats >= first) & (repeats <= (last if last is not None else repeats.max(initial=first)))
        out.append(float(gap[chosen].mean()) if chosen.any() else np.nan)
    return out


def bootstrap(frame: pd.DataFrame, kinds: tuple[str, ...] | list[str], window: Window, resamples: int,
              rng: np.random.Generator) -> pd.DataFrame:
    """The moments' covariance over ``resamples`` bootstrap resamples of the cohort's customers (drawn with
    replacement, each resampled customer keeping all its transactions under a new id)."""
    draws = resampled(frame, kinds, window, resamples, rng).to_numpy()
    moments = names(kinds, window)
    return pd.DataFrame(np.cov(draws, rowvar=False).reshape(len(moments), len(moments)),
                        index=moments, columns=moments)


def resampled(frame: pd.DataFrame, kinds: tuple[str, ...] | list[str], window: Window, resamples: int,
              rng: np.random.Generator) -> pd.DataFrame:
    """The moments of ``resamples`` bootstrap resamples of the cohort's customers, one row each (see
    :func:`bootstrap`)."""
    cohort = tr.cohort(frame, window.cohort_weeks)
    cohort = cohort[cohort["time"] < window.weeks]
    codes, customers = pd.factorize(cohort["customer"], sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(customers.size + 1))
    time = cohort["time"].to_numpy()[order]
    amount = cohort["amount"].to_numpy()[order]
    draws = []
    for _ in range(resamples):
        chosen = rng.integers(0, customers.size, customers.size)
        lengths = starts[chosen + 1] - starts[chosen]
        first = np.cumsum(lengths) - lengths  # where each resampled customer's rows begin in the sample
        rows = np.repeat(starts[chosen] - first, lengths) + np.arange(lengths.sum())
        sample = pd.DataFrame({"customer": np.repeat(np.arange(chosen.size), lengths), "time": time[rows],
                               "amount": amount[rows]})
        draws.append(compute(sample, kinds, window).to_numpy())
    return pd.DataFrame(np.array(draws).reshape(resamples, -1), columns=names(kinds, window))
