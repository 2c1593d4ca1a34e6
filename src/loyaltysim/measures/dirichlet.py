"""The NBD-Dirichlet model of repeat buying: fit it to a period's purchases and set its predictions beside them.

The Dirichlet (Goodhardt, Ehrenberg & Chatfield 1984; Ehrenberg 1988; Ehrenberg, Uncles & Goodhardt 2004) describes
how a category's buyers split their purchases among brands in a stationary market with four numbers and the brands'
shares:

* each customer's category purchases in a period are Poisson with a gamma-distributed mean: the NBD with mean M
  (purchases per customer, non-buyers included) and shape K;
* independently of how much it buys, each customer buys brand j with its own steady probability p_ij, and the vectors
  p_i follow a Dirichlet with parameters α_j = S m_j, m_j the brand's market share; S sets how alike customers are
  (its polarisation φ = 1 / (1 + S): near 0 everyone splits alike, near 1 each buyer is loyal to one brand).

So a customer's purchases of brand j given its n category purchases are beta-binomial(n, α_j, S − α_j), and every
brand-performance measure follows: penetration b_j = 1 − Σ_n P(n) P(r_j = 0 | n), purchases per buyer w_j = M m_j /
b_j, share of category requirements among its buyers SCR_j = M m_j / E[n · 1(r_j > 0)], brands bought per category
buyer Σ_j b_j / (1 − P(0)). Double jeopardy (small brands have fewer buyers who also buy them a little less often)
comes out of these formulas.

Estimation, two ways (:func:`fit_dirichlet`):

* ``"classic"``, as the Dirichlet is fitted in the literature (Goodhardt et al. 1984; Kearns' DIRICHLET program): M
  is the mean purchases per customer, K solves the NBD's zero class (the share of customers buying nothing in the
  period), m_j the observed shares, and S is chosen so that the predicted brand penetrations match the observed ones
  (least squares over the brands). The fit then reproduces penetrations closely, and what it predicts for purchase
  frequencies, SCR and brands per buyer is the benchmark;
* ``"ml"``: maximum likelihood, K from the NBD likelihood of the category counts and S from the Dirichlet-multinomial
  likelihood of each buyer's brand counts given its total (m_j fixed at the observed shares).

scipy does the work: ``scipy.special.gammaln`` for the likelihoods and beta-binomial zero classes,
``scipy.optimize`` for the one-dimensional searches, ``scipy.stats.nbinom`` for P(n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

LOG_RANGE = (-7.0, 9.0)  # the searches for K and S run over log K, log S in this range (1e-3 .. 8e3)
MEASURES = ("share", "penetration", "frequency", "scr")


@dataclass(frozen=True)
class DirichletFit:
    """A fitted NBD-Dirichlet: category mean M and shape K per customer in the period, S and the brands' shares."""

    mean: float  # M: category purchases per customer in the period (non-buyers included)
    k: float  # K: the NBD's gamma shape (inf: Poisson)
    s: float  # S: the Dirichlet's concentration
    shares: np.ndarray  # m_j: each brand's share of the category's purchases
    customers: int  # customers (households) in the panel, non-buyers included
    method: str

    @property
    def polarisation(self) -> float:
        """φ = 1 / (1 + S)."""
        return 1.0 / (1.0 + self.s)


def category_pmf(mean: float, k: float, tail: float = 1e-10) -> np.ndarray:
    """P(n) for n = 0, 1, ... of the NBD (a Poisson when K is infinite), up to where the rest is below ``tail``."""
    dist = stats.poisson(mean) if not np.isfinite(k) else stats.nbinom(k, k / (k + mean))
    top = int(max(dist.ppf(1.0 - tail), 1))
    return dist.pmf(np.arange(top + 1))


def zero_given_n(n: np.ndarray, alpha: np.ndarray, s: float) -> np.ndarray:
    """[brands, n] P(r_j = 0 | n category purchases): the beta-binomial(n, α_j, S − α_j) zero class."""
    a = np.asarray(alpha, dtype=np.float64)[:, None]
    return np.exp(special.gammaln(s) + special.gammaln(s - a + n[None, :])
                  - special.gammaln(s - a) - special.gammaln(s + n[None, :]))


def predict(fit: DirichletFit) -> tuple[pd.DataFrame, dict[str, float]]:
    """The Dirichlet's brand-performance measures: a frame with one row per brand (share, penetration, frequency:
    purchases per buyer, scr: share of category requirements among the brand's buyers), and category measures
    (penetration, purchases per buyer, brands bought per buyer)."""
    pn = category_pmf(fit.mean, fit.k)
    n = np.arange(pn.size, dtype=np.float64)
    alpha = fit.s * fit.shares
    p0 = zero_given_n(n, alpha, fit.s)
    penetration = 1.0 - p0 @ pn
    brand_purchases = fit.mean * fit.shares
    category_of_buyers = fit.mean - p0 @ (n * pn)  # E[n · 1(r_j > 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({"share": fit.shares, "penetration": penetration,
                              "frequency": brand_purchases / penetration, "scr": brand_purchases / category_of_buyers})
    buyers = 1.0 - pn[0]
    category = {"penetration": buyers, "frequency": fit.mean / buyers, "brands_per_buyer": penetration.sum() / buyers}
    return frame, category


def observe(counts: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """The same measures read off a panel: ``counts`` [customers, brands] of purchases in the period."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    bought = counts > 0
    brand_buyers = bought.sum(axis=0)
    purchases = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({"share": purchases / purchases.sum(), "penetration": brand_buyers / counts.shape[0],
                              "frequency": purchases / brand_buyers, "scr": purchases / (n @ bought)})
    buyers = n > 0
    category = {"penetration": float(buyers.mean()), "frequency": float(n[buyers].mean()) if buyers.any() else np.nan,
                "brands_per_buyer": float(bought[buyers].sum(axis=1).mean()) if buyers.any() else np.nan}
    return frame, category


def _search(objective, default: float) -> float:
    """exp of the minimiser of ``objective`` over log values in LOG_RANGE (``default`` if it fails)."""
    res = optimize.minimize_scalar(objective, bounds=LOG_RANGE, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x)) if res.success else default


def fit_nbd(totals: np.ndarray, method: str = "classic") -> tuple[float, float]:
    """(M, K) of the NBD of category purchases per customer: M the mean; K from the zero class (``classic``: P(0) =
    (1 + M/K)^-K, Ehrenberg 1959) or by maximum likelihood (``ml``); K = inf (a Poisson) when the counts are not
    overdispersed."""
    totals = np.asarray(totals, dtype=np.int64)
    mean = float(totals.mean())
    if mean == 0 or totals.var() <= mean:
        return mean, np.inf
    if method == "classic":
        zeros = float((totals == 0).mean())
        if zeros <= np.exp(-mean):  # no NBD has fewer non-buyers than the Poisson with the same mean
            return mean, np.inf
        return mean, _search(lambda lk: (np.exp(lk) * np.log1p(mean / np.exp(lk)) + np.log(zeros)) ** 2, np.inf)
    values, freq = np.unique(totals, return_counts=True)

    def minus_loglik(lk: float) -> float:
        k = np.exp(lk)
        return -float(freq @ (special.gammaln(values + k) - special.gammaln(k) + k * np.log(k / (k + mean))
                              + values * np.log(mean / (k + mean))))

    return mean, _search(minus_loglik, np.inf)


def fit_dirichlet(counts: np.ndarray, method: str = "classic") -> DirichletFit:
    """Fit the NBD-Dirichlet to ``counts`` [customers, brands], each customer's purchases of each brand in one period
    (customers who bought nothing included: they are the NBD's zero class). ``method``: ``classic`` or ``ml`` (see the
    module's docstring)."""
    if method not in ("classic", "ml"):
        raise ValueError(f"unknown method {method!r}; use 'classic' or 'ml'")
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[1] < 2 or counts.sum() == 0:
        raise ValueError("counts must be [customers, brands] with at least two brands and some purchases")
    totals = counts.sum(axis=1)
    mean, k = fit_nbd(totals, method)
    shares = counts.sum(axis=0) / counts.sum()
    if method == "classic":
        observed = (counts > 0).mean(axis=0)

        def gap(ls: float) -> float:
            fit = DirichletFit(mean, k, float(np.exp(ls)), shares, counts.shape[0], method)
            return float(((predict(fit)[0]["penetration"].to_numpy() - observed) ** 2).sum())

        s = _search(gap, np.nan)
    else:
        buyers = counts[totals > 1]  # one purchase says nothing about how a customer splits its purchases
        n = buyers.sum(axis=1)

        def minus_loglik(ls: float) -> float:
            s_ = np.exp(ls)
            a = s_ * shares
            return -float((special.gammaln(s_) - special.gammaln(s_ + n)).sum()
                          + (special.gammaln(buyers + a) - special.gammaln(a)).sum())

        s = _search(minus_loglik, np.nan)
    return DirichletFit(mean, k, s, shares, counts.shape[0], method)


def brand_table(counts: np.ndarray, names: list[str], method: str = "classic") -> tuple[pd.DataFrame, DirichletFit]:
    """Observed and predicted brand measures side by side (``<measure>`` and ``<measure>_dirichlet`` columns, one row
    per brand, then a row for the category with the brands bought per buyer), and the fit."""
    fit = fit_dirichlet(counts, method)
    obs, obs_cat = observe(counts)
    pred, pred_cat = predict(fit)
    table = pd.DataFrame({"brand": list(names)})
    for m in MEASURES:
        table[m] = obs[m].to_numpy()
        table[f"{m}_dirichlet"] = pred[m].to_numpy()
    category = {"brand": "(category)", "share": 1.0, "share_dirichlet": 1.0}
    for m in ("penetration", "frequency"):
        category[m], category[f"{m}_dirichlet"] = obs_cat[m], pred_cat[m]
    category["brands_per_buyer"], category["brands_per_buyer_dirichlet"] = (obs_cat["brands_per_buyer"],
                                                                             pred_cat["brands_per_buyer"])
    table = pd.concat([table, pd.DataFrame([category])], ignore_index=True)
    return table, fit


def sample(rng: np.random.Generator, customers: int, mean: float, k: float, s: float,
           shares: np.ndarray) -> np.ndarray:
    """[customers, brands] purchase counts drawn from the NBD-Dirichlet itself (for tests and teaching)."""
    shares = np.asarray(shares, dtype=np.float64)
    rate = rng.gamma(k, mean / k, customers)
    totals = rng.poisson(rate)
    p = rng.gamma(s * shares, 1.0, (customers, shares.size))
    p /= p.sum(axis=1, keepdims=True)
    return rng.multinomial(totals, p)
