"""Calibration check: model output against published magnitudes.

Targets (see the domain brief, section 5, and the sources below):

* **Annual churn** in a competitive contractual market: 15-30% of customers a year (Reichheld & Sasser 1990;
  mobile and internet providers lose 20-30%).
* **Most customers satisfied**: the share of 1-5 survey answers that are 4 or 5 is at least 60% (typical
  satisfaction surveys are skewed to the top boxes; Peterson & Wilson 1992).
* **Top-box answers**: the share of 1-5 answers that are 5 is 0.25-0.45. Ratings of satisfaction are skewed toward
  the top of the scale (Peterson & Wilson 1992), but how many customers tick the top box is a property of the
  instrument (its wording and scale), not of the market, so the band is a calibration target of the instrument
  rather than a published magnitude: score 5's cutpoint is set, independently of any behavioural threshold, so that
  about 35% of the baseline's answers are 5. The check prints the cutpoint that would give 35% in the market
  checked (:func:`top_box_cutpoint`, from the surveyed customers' true satisfaction and the answer noise).
* **Satisfied defectors**: 60-85% of defectors gave a last survey score of 4 or 5 (Reichheld 1993, 1996); measured on
  switches (a customer leaving for another firm or for none while still in the market; exits from the market by a
  life event are apart) by the last answer about the firm left (``satisfied_switcher_share``).
* **Repeat buying follows the NBD** (Ehrenberg 1959, 1988): the distribution of purchases per customer over a
  period, for the category and for each firm, is close to a negative binomial fitted by its mean and variance
  (largest gap between observed and fitted shares of 0, 1, 2, ... purchases at most 0.02 for the category and
  0.05 for a brand, where published fits are within a few percentage points).

* **A stationary market after the warm-up**: results should not depend on the horizon, so between the first and the
  last full year after the warm-up mean satisfaction moves by at most 0.003 (a seventh of the gap between two survey
  cutpoints), annual churn by at most 0.03 and no firm's mean share by more than 0.03 (reported when the horizon
  leaves at least two full years after the warm-up).

* **Brands' buyers follow the NBD-Dirichlet** (repertoire markets; Goodhardt, Ehrenberg & Chatfield 1984; Ehrenberg,
  Uncles & Goodhardt 2004): fitted to the purchases of the first year after the warm-up, each brand's observed
  penetration and share of category requirements are within 0.05 of the Dirichlet's predictions and its purchases per
  buyer within 15% (published fits are within a few points: Ehrenberg, Uncles & Goodhardt 2004).
* **Shoppers hold repertoires of a few stores, with a favourite** (repertoire markets): the fitted polarisation
  φ = 1 / (1 + S) is within 0.3-0.7. This band is a judgement, not a published norm: below 0.3 nearly every regular
  shopper of a three-store market uses every store in a year and no store is clearly its main one (the market the
  first behaviour pass produced, φ about 0.22), against the main-store loyalty studied by East, Harris, Willson &
  Lomax (1995); above 0.7 most shoppers would keep to one store, against the multiple-store patronage found in
  grocery panels (Kau & Ehrenberg 1984).

The check runs the scenario over several seeds and reports the mean and range of each measure. In a repertoire market
it also fits the NBD-Dirichlet (Goodhardt, Ehrenberg & Chatfield 1984; :mod:`loyaltysim.measures.dirichlet`) to the
purchases of a year after the warm-up and sets each brand's observed share, penetration, purchase frequency and share
of category requirements beside the Dirichlet's predictions, with the fitted polarisation: the benchmark a repertoire
market is compared with, judged by the two bands above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from loyaltysim.measures import dirichlet
from loyaltysim.measures.outcomes import measure_value
from loyaltysim.measures.summary import summarize
from loyaltysim.measures.tables import tabulate
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import LoyaltyScenario


@dataclass(frozen=True)
class Target:
    name: str
    low: float
    high: float
    source: str


CHURN = Target("annual churn", 0.15, 0.30, "Reichheld & Sasser 1990; 15-30% a year in competitive services")
TOP_BOX = Target("share of scores 4-5", 0.60, 1.0, "most customers satisfied; Peterson & Wilson 1992")
SCORE_5 = Target("share of scores 5", 0.25, 0.45,
                 "the instrument's calibration: about 35% top-box answers (a choice of the survey, not a finding)")
TOP_BOX_SHARE = 0.35  # the share of top-box answers score 5's cutpoint is calibrated to
SATISFIED_DEFECTORS = Target("satisfied defectors", 0.60, 0.85,
                             "Reichheld 1993/1996: 65-85% of defectors satisfied (about 0.60-0.85)")
NBD_GAP = Target("NBD fit gap", 0.0, 0.02, "Ehrenberg 1959: category purchases follow the NBD")
NBD_BRAND_GAP = Target("NBD fit gap, brand", 0.0, 0.05,
                       "Ehrenberg 1988: brand purchases follow the NBD within a few points")
DRIFT_SATISFACTION = Target("drift of mean satisfaction", -0.003, 0.003,
                            "stationary after the warm-up: last full year minus the first")
DRIFT_CHURN = Target("drift of annual churn", -0.03, 0.03,
                     "stationary after the warm-up: last full year minus the first")
DRIFT_SHARE = Target("largest drift of a firm's share", 0.0, 0.03,
                     "stationary after the warm-up: last full year against the first, largest over firms")
DIRICHLET_PENETRATION = Target("Dirichlet penetration gap", -0.05, 0.05,
                               "observed minus Dirichlet; Ehrenberg, Uncles & Goodhardt 2004: within a few points")
DIRICHLET_SCR = Target("Dirichlet SCR gap", -0.05, 0.05,
                       "observed minus Dirichlet; Ehrenberg, Uncles & Goodhardt 2004: within a few points")
DIRICHLET_FREQUENCY = Target("Dirichlet purchase frequency gap", -0.15, 0.15,
                             "observed / Dirichlet - 1; Ehrenberg, Uncles & Goodhardt 2004: close to predicted")
DIRICHLET_POLARISATION = Target("Dirichlet polarisation", 0.3, 0.7,
                                "a judgement: repertoires of a few stores with a favourite (Kau & Ehrenberg 1984)")


def drifts(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """How the market moved between the first and the last full year after the warm-up: mean satisfaction and
    annual churn (last minus first) and the largest change of a firm's mean share (absolute); empty when the horizon
    leaves fewer than two full years after the warm-up."""
    warm, steps = scenario.warmup_steps(), scenario.steps()
    year = max(1, round(365.25 / (7.0 if scenario.time.step == "week" else 1.0)))
    years = (steps - warm) // year
    if years < 2:
        return {}
    first, last = (warm, warm + year), (warm + (years - 1) * year, warm + years * year)

    def within(frame: pd.DataFrame, span: tuple[int, int]) -> pd.DataFrame:
        return frame[(frame["step"] > span[0]) & (frame["step"] <= span[1])]

    market, firms = tables["market"], tables["firms"]

    def churn(span: tuple[int, int]) -> float:
        rows = within(firms, span)
        customers = rows.groupby("step")["customers"].sum().mean()
        return float(rows["defections"].sum() / customers) if customers else np.nan

    shares = [within(firms, span).groupby("firm", sort=False)["share"].mean() for span in (first, last)]
    return {
        DRIFT_SATISFACTION.name: float(within(market, last)["mean_satisfaction"].mean()
                                       - within(market, first)["mean_satisfaction"].mean()),
        DRIFT_CHURN.name: churn(last) - churn(first),
        DRIFT_SHARE.name: float((shares[1] - shares[0]).abs().max()),
    }


def top_box_cutpoint(true_satisfaction: np.ndarray, noise: float, share: float = TOP_BOX_SHARE) -> float:
    """The cutpoint for score 5 at which a share ``share`` of answers would be 5: an answer is true satisfaction plus
    normal noise of sd ``noise``, so the expected top-box share at cutpoint c is the mean over the surveyed answers
    of P(noise > c - satisfaction); solved for c (NaN without answers)."""
    x = np.asarray(true_satisfaction, dtype=np.float64)
    if x.size == 0 or not 0.0 < share < 1.0:
        return float("nan")
    if noise <= 0:
        return float(np.quantile(x, 1.0 - share))

    def gap(c: float) -> float:
        return float(stats.norm.sf((c - x) / noise).mean() - share)

    span = 10.0 * noise + 1.0
    return float(optimize.brentq(gap, x.min() - span, x.max() + span, xtol=1e-9))


def nbd_gap(counts: np.ndarray, max_count: int = 6) -> float:
    """Largest absolute gap between observed shares of 0..max_count-1, >=max_count purchases and the NBD
    with the same mean and variance (a Poisson when the variance does not exceed the mean)."""
    counts = np.asarray(counts, dtype=np.int64)
    mean, var = counts.mean(), counts.var()
    support = np.arange(max_count)
    if var > mean > 0:
        k = mean**2 / (var - mean)
        dist = stats.nbinom(k, k / (k + mean))
    else:
        dist = stats.poisson(mean)
    fitted = np.append(dist.pmf(support), dist.sf(max_count - 1))
    observed = np.append(np.bincount(np.minimum(counts, max_count), minlength=max_count + 1)[:max_count],
                         (counts >= max_count).mean() * counts.size) / counts.size
    return float(np.abs(observed - fitted).max())


@dataclass(frozen=True)
class CalibrationCheck:
    """The measures against their targets and, in a repertoire market, the Dirichlet benchmark."""

    report: pd.DataFrame  # one row per measure: mean, min and max over seeds, the target band, whether it is met
    dirichlet: pd.DataFrame | None  # one row per brand (then the category): observed and predicted, mean over seeds
    fits: pd.DataFrame | None  # one row per seed: the fitted M, K, S and polarisation
    dirichlet_steps: int  # the length of the Dirichlet's period, in steps
    top_box_cutpoint: float = float("nan")  # score 5's cutpoint giving TOP_BOX_SHARE top-box answers (mean over seeds)
    dirichlet_skipped: str | None = None  # why a repertoire market has no Dirichlet benchmark (None: it has one)


def _one_run(scenario: LoyaltyScenario, seed: int, window: int, long_window: int,
             on_step: Callable[[], None] | None = None) -> tuple[dict[str, float], np.ndarray, list[str], float]:
    """One seed's measures, its purchases per customer and firm over ``long_window`` steps after the warm-up, and
    score 5's cutpoint that would give TOP_BOX_SHARE top-box answers in it (``on_step`` is called after each
    step)."""
    model = LoyaltyMarket(scenario, seed=seed)
    warm, steps = scenario.warmup_steps(), scenario.steps()
    n, n_firms = len(model.customers), len(model.firms)
    counts = np.zeros((n, n_firms), dtype=np.int64)
    year = np.zeros((n, n_firms), dtype=np.int64)
    for t in range(1, steps + 1):
        model.step()
        if on_step is not None:
            on_step()
        if warm < t <= warm + max(window, long_window):
            st = model.customers
            buyer = np.flatnonzero(st.step_firm >= 0)
            cells = (buyer, st.step_firm[buyer])
            if t <= warm + window:
                np.add.at(counts, cells, st.step_purchases[buyer])
            if t <= warm + long_window:
                np.add.at(year, cells, st.step_purchases[buyer])
    tables = tabulate(model)
    summary = summarize(scenario, tables)
    firms = tables["firms"][tables["firms"]["step"] > warm]
    answers = firms[[f"score_{s}" for s in range(1, 6)]].sum()
    top_two = float(answers[["score_4", "score_5"]].sum() / answers.sum()) if answers.sum() else np.nan
    top = float(answers["score_5"] / answers.sum()) if answers.sum() else np.nan
    surveyed = tables["surveys"]
    surveyed = surveyed.loc[surveyed["step"] > warm, "true_satisfaction"].to_numpy()
    customers = firms.groupby("step")["customers"].sum().mean()
    years = (steps - warm) * (7.0 if scenario.time.step == "week" else 1.0) / 365.25
    out = {
        "annual churn": summary["market"]["defections"] / customers / years if customers else np.nan,
        "share of scores 4-5": top_two,
        "share of scores 5": top,
        "satisfied defectors": measure_value("satisfied_switcher_share", None, scenario, tables, summary),
    }
    out.update(drifts(scenario, tables))
    if scenario.market.type == "repertoire":  # brand-level repeat buying is an NBD only where customers split
        out["NBD fit gap, category"] = nbd_gap(counts.sum(axis=1))
        for j, name in enumerate(model.firm_names):
            out[f"NBD fit gap, {name}"] = nbd_gap(counts[:, j])
    return out, year, model.firm_names, top_box_cutpoint(surveyed, scenario.market.survey.noise)


def _steps(scenario: LoyaltyScenario, weeks: int) -> int:
    """``weeks`` in steps, at least 1 and at most the steps reported after the warm-up."""
    window = max(1, round(weeks * 7 / (7 if scenario.time.step == "week" else 1)))
    return min(window, scenario.steps() - scenario.warmup_steps())


def calibration_report(scenario: LoyaltyScenario, seeds: list[int], window_weeks: int = 13) -> pd.DataFrame:
    """One row per measure: mean, min and max over seeds, the target band, and whether the mean is in it."""
    return calibration_check(scenario, seeds, window_weeks).report


def calibration_check(scenario: LoyaltyScenario, seeds: list[int], window_weeks: int = 13,
                      dirichlet_weeks: int = 52, on_step: Callable[[], None] | None = None) -> CalibrationCheck:
    """The calibration measures over ``seeds`` (NBD gaps over the first ``window_weeks`` after the warm-up) and, in a
    repertoire market, the NBD-Dirichlet fitted to each seed's purchases over the first ``dirichlet_weeks``
    (``on_step``: called after every step of every seed's run, for a progress display)."""
    window, long_window = _steps(scenario, window_weeks), _steps(scenario, dirichlet_weeks)
    repertoire = scenario.market.type == "repertoire"
    results = [_one_run(scenario, s, window, long_window if repertoire else 0, on_step) for s in seeds]
    runs = pd.DataFrame([r[0] for r in results])
    cutpoint = float(np.mean([r[3] for r in results]))
    report = _measures_report(scenario, runs)
    if not repertoire:
        return CalibrationCheck(report, None, None, long_window, cutpoint)
    if len(scenario.market.firms) < 2:
        return CalibrationCheck(report, None, None, long_window, cutpoint, DIRICHLET_ONE_FIRM)
    tables, fits = [], []
    for seed, (_, year, names, _) in zip(seeds, results, strict=True):
        table, fit = dirichlet.brand_table(year, names)
        tables.append(table)
        fits.append({"seed": seed, "M": fit.mean, "K": fit.k, "S": fit.s, "polarisation": fit.polarisation})
    order = list(tables[0]["brand"])
    mean_table = pd.concat(tables).groupby("brand", sort=False).mean().reindex(order).reset_index()
    gaps = pd.DataFrame([dirichlet_gaps(t, f["polarisation"]) for t, f in zip(tables, fits, strict=True)])
    report = pd.concat([report, dirichlet_report(gaps)], ignore_index=True)
    return CalibrationCheck(report, mean_table, pd.DataFrame(fits), long_window, cutpoint)


DIRICHLET_ONE_FIRM = ("NBD-Dirichlet not fitted: it describes how buyers split their purchases among two or more "
                      "brands, and this market has one firm (its category NBD fit is above)")


def dirichlet_gaps(table: pd.DataFrame, polarisation: float) -> dict[str, float]:
    """One seed's Dirichlet measures from its :func:`loyaltysim.measures.dirichlet.brand_table`: per brand, the
    observed minus the predicted penetration and SCR and the observed over the predicted purchases per buyer minus 1;
    and the fitted polarisation."""
    out: dict[str, float] = {}
    for row in table[table["brand"] != "(category)"].itertuples():
        out[f"{DIRICHLET_PENETRATION.name}, {row.brand}"] = row.penetration - row.penetration_dirichlet
        out[f"{DIRICHLET_SCR.name}, {row.brand}"] = row.scr - row.scr_dirichlet
        out[f"{DIRICHLET_FREQUENCY.name}, {row.brand}"] = row.frequency / row.frequency_dirichlet - 1.0
    out[DIRICHLET_POLARISATION.name] = polarisation
    return out


def dirichlet_report(gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per Dirichlet measure of ``gaps`` (one row per seed, :func:`dirichlet_gaps`) against its band, in the
    report's columns; a measure missing in a seed (a brand nobody bought: NaN) misses its band."""
    targets = (DIRICHLET_PENETRATION, DIRICHLET_SCR, DIRICHLET_FREQUENCY, DIRICHLET_POLARISATION)
    rows = []
    for col in gaps.columns:
        target = next(t for t in targets if col == t.name or col.startswith(f"{t.name}, "))
        mean = gaps[col].mean(skipna=False)
        rows.append({
            "measure": col, "mean": mean, "min": gaps[col].min(), "max": gaps[col].max(),
            "target": f"{target.low:g}-{target.high:g}", "ok": bool(target.low <= mean <= target.high),
            "source": target.source,
        })
    return pd.DataFrame(rows)


def _measures_report(scenario: LoyaltyScenario, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per measure of ``runs`` (one row per seed) against its target band."""
    rows = []
    for col in runs.columns:
        if col.startswith("NBD"):
            target = NBD_GAP if col.endswith("category") else NBD_BRAND_GAP
        else:
            target = {t.name: t for t in (CHURN, TOP_BOX, SCORE_5, SATISFIED_DEFECTORS, DRIFT_SATISFACTION, DRIFT_CHURN,
                                          DRIFT_SHARE)}[col]
        if col == "annual churn" and scenario.market.type != "contractual":
            target = None  # repertoire churn depends on the lapse definition: reported, not targeted
        mean = runs[col].mean()
        rows.append({
            "measure": col, "mean": mean, "min": runs[col].min(), "max": runs[col].max(),
            "target": "-" if target is None else f"{target.low:g}-{target.high:g}",
            "ok": None if target is None else bool(target.low <= mean <= target.high),
            "source": "" if target is None else target.source,
        })
    return pd.DataFrame(rows)
