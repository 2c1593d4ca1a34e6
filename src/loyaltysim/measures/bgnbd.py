"""The BG/NBD model of repeat buying: fit it to customers' frequency, recency and age, and predict a cohort's
repeat transactions (the benchmark a calibrated simulation is set beside).

The Beta-Geometric/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2): 275-284) describes a non-contractual customer base:

* while active, a customer makes repeat transactions as a Poisson process with rate λ, and λ is gamma-distributed
  over customers with shape r and rate α;
* after each transaction it becomes inactive for good with probability p, and p is beta(a, b) over customers,
  independently of λ. Time is counted from each customer's first (trial) transaction, which is not a repeat.

Its likelihood for a customer with x repeat transactions, the last at t_x, observed up to age T (equation 6):

    L = B(a, b + x) / B(a, b) · Γ(r + x) α^r / Γ(r)
        · [ (α + T)^-(r + x) + 1(x > 0) · a / (b + x - 1) · (α + t_x)^-(r + x) ]

and its predictions, for a customer of age t:

* E[X(t)] = (a + b - 1) / (a - 1) · [1 - (α / (α + t))^r · 2F1(r, b; a + b - 1; t / (α + t))]   (equation 9);
* P(X(t) = x) = B(a, b + x) / B(a, b) · Γ(r + x) / (Γ(r) x!) · (α / (α + t))^r (t / (α + t))^x
  + 1(x > 0) · B(a + 1, b + x - 1) / B(a, b) · [1 - (α / (α + t))^r Σ_{j<x} Γ(r + j) / (Γ(r) j!) (t / (α + t))^j]
  (Fader, Hardie & Lee 2007, "Computing P(X(t) = x) for the BG/NBD model", note, brucehardie.com);
* E[Y(t) | x, t_x, T], the expected repeat transactions in the next t of a customer with that history
  (equation 10).

A cohort whose customers made their first transactions at different times (CDNOW's first-time buyers came over the
first 12 weeks of 1997) is predicted customer by customer: its expected repeat transactions by calendar week w are
Σ_i E[X(age_i(w))] (:func:`cohort_cumulative`), and its histogram of repeat transactions in a window Σ_i P(X(T_i) =
x) (:func:`expected_histogram`).

On the CDNOW sample of 2,357 customers (weeks 1-39) the paper reports r = 0.243, α = 4.414, a = 0.793, b = 2.426 and a
log-likelihood of -9582.4; :func:`fit_bgnbd` reproduces them (``tests/measures/test_bgnbd.py``).

scipy does the work: ``scipy.special`` (gammaln, betaln, hyp2f1) for the likelihood and predictions,
``scipy.optimize.minimize`` on the log parameters for the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from loyaltysim.measures import transactions as tr


@dataclass(frozen=True)
class BGNBDFit:
    """BG/NBD parameters, and the fit's log-likelihood and number of customers (NaN and 0 when set by hand)."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float = np.nan
    customers: int = 0

    @property
    def params(self) -> tuple[float, float, float, float]:
        return self.r, self.alpha, self.a, self.b


def loglik(params, x, t_x, T) -> np.ndarray:
    """Each customer's log-likelihood under the BG/NBD with ``params`` = (r, α, a, b) (equation 6 of Fader, Hardie
    & Lee 2005), computed on the log scale."""
    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + special.betaln(a, b + x) \
        - special.betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(alive, dropped)


def fit_bgnbd(x, t_x, T, start: tuple[float, float, float, float] | None = None) -> BGNBDFit:
    """Maximum-likelihood BG/NBD fitted to each customer's frequency ``x``, recency ``t_x`` and age ``T`` (weeks,
    as :func:`loyaltysim.measures.transactions.rfm` gives them). The search runs over the log parameters from
    ``start`` (default: r = 1, α = r / the mean repeat rate, a = b = 1), by L-BFGS-B, then Nelder-Mead from there
    if it did not converge; RuntimeError if neither did."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    if x.size == 0 or (x < 0).any() or (t_x < 0).any() or (t_x > T).any() or ((x == 0) & (t_x > 0)).any():
        raise ValueError("need customers with x >= 0 and 0 <= t_x <= T (t_x = 0 when x = 0)")
    if x.sum() == 0:
        raise ValueError("no customer made a repeat transaction: the BG/NBD cannot be fitted")
    # customers with the same history add the same term: fit on the distinct histories, weighted
    histories, weights = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    hx, ht, hT = histories.T
    if start is None:
        start = (1.0, float(T.sum() / x.sum()), 1.0, 1.0)

    def minus_loglik(log_params: np.ndarray) -> float:
        value = -float(weights @ loglik(np.exp(log_params), hx, ht, hT))
        return value if np.isfinite(value) else 1e300

    res = optimize.minimize(minus_loglik, np.log(start), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4,
                            options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 2000})
    if not res.success:
        res = optimize.minimize(minus_loglik, res.x, method="Nelder-Mead",
                                options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20_000})
        if not res.success:
            raise RuntimeError(f"the BG/NBD fit did not converge: {res.message}")
    r, alpha, a, b = np.exp(res.x)
    return BGNBDFit(float(r), float(alpha), float(a), float(b), -float(res.fun), int(x.size))


def expected_repeats(fit: BGNBDFit, t) -> np.ndarray:
    """E[X(t)]: the expected repeat transactions of a customer in the first ``t`` weeks after its first (equation
    9); 0 for t <= 0."""
    r, alpha, a, b = fit.params
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, None)
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, z))


def pmf(fit: BGNBDFit, t: float, top: int) -> np.ndarray:
    """P(X(t) = x) for x = 0..``top`` (Fader, Hardie & Lee's note of 2007)."""
    r, alpha, a, b = fit.params
    x = np.arange(top + 1, dtype=np.float64)
    log_nbd = special.gammaln(r + x) - special.gammaln(r) - special.gammaln(x + 1) + r * np.log(alpha / (alpha + t))
    if t > 0:
        log_nbd += x * np.log(t / (alpha + t))
    else:
        log_nbd[1:] = -np.inf
    nbd = np.exp(log_nbd)  # the NBD's P(x) of a customer who never drops out: its partial sums are the brackets
    below = np.concatenate([[0.0], np.cumsum(nbd)[:-1]])
    with np.errstate(invalid="ignore"):
        dropped = np.where(x > 0, np.exp(special.betaln(a + 1, b + x - 1) - special.betaln(a, b)), 0.0)
    return np.exp(special.betaln(a, b + x) - special.betaln(a, b)) * nbd + dropped * (1.0 - below)


def expected_histogram(fit: BGNBDFit, T, top: int = tr.HISTOGRAM_TOP) -> pd.Series:
    """The expected number of customers, of ages ``T`` (weeks) at the end of the window, with 0, 1, ..., top - 1 and
    ``top`` or more repeat transactions: Σ_i P(X(T_i) = x), labelled as
    :func:`loyaltysim.measures.transactions.repeat_histogram`."""
    ages, counts = np.unique(np.asarray(T, dtype=np.float64), return_counts=True)
    expected = np.zeros(top + 1)
    for age, n in zip(ages, counts, strict=True):
        p = pmf(fit, float(age), top - 1)
        expected += n * np.append(p, 1.0 - p.sum())
    return pd.Series(expected, index=tr.histogram_labels(top), name="customers")


def cohort_cumulative(fit: BGNBDFit, first, weeks: int, period: float = tr.DAY) -> pd.Series:
    """The cohort's expected repeat transactions since week 1, at the end of each week 1..``weeks``, for customers
    whose first transactions were at times ``first`` (weeks since the start of week 1, as in the tidy frame of
    :mod:`loyaltysim.measures.transactions`): Σ_i E[X(w - period - first_i)], the age at the start of the last
    period of week w (the age T of :func:`~loyaltysim.measures.transactions.rfm`). Indexed by week."""
    starts, counts = np.unique(np.asarray(first, dtype=np.float64), return_counts=True)
    week = np.arange(1, weeks + 1, dtype=np.float64)
    ages = week[:, None] - period - starts[None, :]
    return pd.Series(expected_repeats(fit, ages) @ counts, index=pd.RangeIndex(1, weeks + 1, name="week"),
                     name="cumulative")


def conditional_expected(fit: BGNBDFit, t: float, x, t_x, T) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: the expected repeat transactions in the next ``t`` weeks of customers with frequency
    ``x``, recency ``t_x`` and age ``T`` (equation 10)."""
    r, alpha, a, b = fit.params
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    growth = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                                         * special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t)))
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return growth / (1 + dropped)


def sample(rng: np.random.Generator, fit: BGNBDFit, T) -> pd.DataFrame:
    """Frequency, recency and age drawn from the BG/NBD itself for customers of ages ``T`` (for tests and
    teaching): λ ~ gamma(r, α), p ~ beta(a, b); the customer drops out after its D-th repeat transaction, D
    geometric(p), and makes min(N, D) of the N ~ Poisson(λT) transactions of its process, the last at the x-th of N
    uniform times on [0, T]."""
    T = np.asarray(T, dtype=np.float64)
    lam = rng.gamma(fit.r, 1.0 / fit.alpha, T.size)
    p = rng.beta(fit.a, fit.b, T.size)
    n = rng.poisson(lam * T)
    x = np.minimum(n, rng.geometric(p))
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n - x + 1), 0.0)
    return pd.DataFrame({"x": x, "t_x": t_x, "T": T})


@dataclass(frozen=True)
class Benchmark:
    """The BG/NBD fitted on a calibration window and set beside a cohort's transactions: the fit; the histogram of
    repeat transactions in the window (``observed`` and ``bgnbd`` counts, and their shares); the cumulative repeat
    transactions since week 1 by week (``observed``, ``bgnbd``, ``error``: bgnbd / observed - 1); the mean absolute
    percentage error of the cumulative over the weeks after the window."""

    fit: BGNBDFit
    histogram: pd.DataFrame
    tracking: pd.DataFrame
    holdout_mape: float

    @property
    def final_error(self) -> float:
        """bgnbd / observed - 1 of the cumulative repeat transactions at the last week."""
        return float(self.tracking["error"].iat[-1])


def benchmark(frame: pd.DataFrame, calibration_end: int, weeks: int, period: float = tr.DAY) -> Benchmark:
    """Fit the BG/NBD to a cohort's tidy transactions (:mod:`loyaltysim.measures.transactions`) in weeks
    1..``calibration_end`` and predict its histogram of repeat transactions there and its cumulative repeat
    transactions through week ``weeks``, beside what the cohort did."""
    summary = tr.rfm(frame, calibration_end, period)
    fit = fit_bgnbd(summary["x"], summary["t_x"], summary["T"])
    histogram = pd.DataFrame({"observed": tr.repeat_histogram(frame, 0.0, calibration_end),
                              "bgnbd": expected_histogram(fit, summary["T"])})
    histogram["observed_share"] = histogram["observed"] / len(summary)
    histogram["bgnbd_share"] = histogram["bgnbd"] / len(summary)
    first = frame.groupby("customer")["time"].min()
    tracking = pd.DataFrame({"observed": tr.weekly_repeats(frame, weeks)["cumulative"],
                             "bgnbd": cohort_cumulative(fit, first, weeks, period)})
    tracking["error"] = tracking["bgnbd"] / tracking["observed"] - 1
    holdout = tracking.loc[calibration_end + 1:, "error"].abs().mean()
    return Benchmark(fit, histogram, tracking, float(holdout))
