"""Jones & Sasser, satisfied defectors and hostages: the findings experiments/jones_sasser.toml and its robustness
check must reproduce, and its figure.

Each check reads an experiment's tidy results (one row per run and outcome) and states, with numbers, whether
an effect holds. The tests are written from the findings, not from the model's output:

Every claim is judged on its 95% interval over the replications, never on a point estimate: a bound "holds" only
if the interval clears it. The defection ratio is a ratio of mean retentions (per-run ratios of small numbers are
noisy and biased upward), with a bootstrap interval over replications; differences and shares have t-intervals.

* **Jones & Sasser (1995)**, competitive market: the annual defection rate at score 4 is at least 3 times that at
  5 (the ratio's interval above 3), and the step in retention from 4 to 5 is larger than the whole rise from the
  lowest score to 4 (the interval of step minus rise above 0).
* **Satisfied defectors** (Reichheld 1993, 1996): 0.60-0.85 of defectors last scored 4 or 5 (the interval inside),
  in the same competitive market, whose annual churn is 15-30% (the interval inside); measured on switches (exits
  from the market by a life event are apart) by the last answer about the firm left (``satisfied_switcher_share``).
* **Hostages**: with high switching costs retention is at least 0.6 even at the lowest scores, and the curve
  is flat there (within 0.1 of retention at 5): dissatisfied customers are held like satisfied ones (intervals of
  the lower of retention at 1 and 2, and of retention at 5 minus it).
* **Ablations** (markets of the same experiment): without attitudinal loyalty the jump at 5 disappears (the ratio's
  interval below 3, or step minus rise not above 0), without rival offers satisfied defectors fall below 0.60 (the
  interval below), and without switching costs the hostages are gone (either hostage bound clearly broken).
* **Robustness** (experiments/robustness_jones_sasser.toml): Jones & Sasser and the satisfied defectors hold at 80%
  or more of the points where the parameters are moved by +-25%.
* **Regions** (experiments/jones_sasser_region.toml): the ratio's interval against 3, and the satisfied share's
  against 0.60-0.85, at every point of a sampled design of the survey instrument and the customers' psychology, and
  the region where each holds (:mod:`loyaltysim.reporting.regions`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.reporting import regions
from loyaltysim.reporting.findings.common import (
    by_replication,
    levels,
    mean,
    robustness,
    statistic_interval,
    style,
    values,
)
from loyaltysim.reporting.regions import Region
from loyaltysim.reporting.report import interval, register_figure, register_findings

SCORES = [f"market.retention_by_score_{k}" for k in range(1, 6)]


def _ratio_of_means(r4: np.ndarray, r5: np.ndarray) -> float:
    """Defection within a year at score 4 over that at 5, from the mean retentions (a ratio of means: per-run ratios
    of small numbers are noisy and biased upward)."""
    top = float(np.mean(r5))
    return (1.0 - float(np.mean(r4))) / (1.0 - top) if top < 1.0 else float("inf")


def ratio_interval(results: pd.DataFrame, **labels: str) -> dict:
    """The defection ratio 4 : 5 (:func:`_ratio_of_means` over the replications) with its 95% bootstrap interval;
    NaN where it was not measured (no check on it can hold)."""
    wide = by_replication(results, ["market.retention_by_score_4", "market.retention_by_score_5"], **labels)
    if wide.empty:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    return statistic_interval([wide.iloc[:, 0].to_numpy(), wide.iloc[:, 1].to_numpy()], _ratio_of_means)


def step_minus_rise(results: pd.DataFrame, **labels: str) -> dict:
    """Per replication, the step in retention from 4 to 5 minus the rise from the lowest score to 4: its interval."""
    wide = by_replication(results, ["market.retention_step_4_to_5", "market.retention_rise_to_4"], **labels)
    return interval((wide.iloc[:, 0] - wide.iloc[:, 1]).to_numpy())


def within(c: dict, low: float, high: float) -> bool:
    """The interval ``c`` lies inside [low, high]."""
    return c["ci_low"] >= low and c["ci_high"] <= high


def _text(c: dict, key: str = "mean") -> str:
    return f"{c[key]:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"


def jones_sasser_checks(results: pd.DataFrame, market: str = "competitive", hostage: str | None = "hostage",
                        labels: dict[str, str] | None = None) -> list[dict]:
    """The Jones & Sasser, satisfied-defector and churn tests in ``market``; hostages in ``hostage``."""
    labels = labels or {}
    at = {**labels, "market": market} if "market" in results.columns else labels
    ratio = ratio_interval(results, **at)
    gap = step_minus_rise(results, **at)
    step = mean(results, "market.retention_step_4_to_5", **at)
    rise = mean(results, "market.retention_rise_to_4", **at)
    satisfied = interval(values(results, "market.satisfied_switcher_share", **at))
    churn = interval(values(results, "market.annual_churn", **at))
    checks = [
        {"effect": "defection at score 4 is at least 3x that at 5", "holds": ratio["ci_low"] >= 3.0,
         "evidence": f"ratio {_text(ratio, 'value')}"},
        {"effect": "the step from 4 to 5 exceeds the rise from the lowest score to 4", "holds": gap["ci_low"] > 0,
         "evidence": f"step {step:.3f}, rise {rise:.3f}; step minus rise {_text(gap)}"},
        {"effect": "0.60-0.85 of switchers were satisfied (last score about the firm left 4-5)",
         "holds": within(satisfied, 0.60, 0.85), "evidence": f"share {_text(satisfied)}"},
        {"effect": "annual churn 15-30%", "holds": within(churn, 0.15, 0.30),
         "evidence": f"churn {_text(churn)}"},
    ]
    if hostage is not None:
        holds, _, evidence = hostages(results, **{**labels, "market": hostage})
        checks.append({"effect": "hostages: retention at least 0.6 even at the lowest scores, and the curve flat "
                                 "(within 0.1 of retention at 5)", "holds": holds, "evidence": evidence})
    return checks


def hostages(results: pd.DataFrame, **labels: str) -> tuple[bool, bool, str]:
    """Dissatisfied customers held like satisfied ones: per replication, retention at the lowest scores (the lower
    of 1 and 2) and retention at 5 minus it. Returns (held: the first's interval at or above 0.6 and the second's at
    or below 0.1; gone: the first's interval below 0.6 or the second's above 0.1; the evidence)."""
    wide = by_replication(results, [SCORES[0], SCORES[1], SCORES[4]], **labels)
    lowest = interval(np.minimum(wide.iloc[:, 0], wide.iloc[:, 1]).to_numpy())
    gap = interval((wide.iloc[:, 2] - np.minimum(wide.iloc[:, 0], wide.iloc[:, 1])).to_numpy())
    held = lowest["ci_low"] >= 0.6 and gap["ci_high"] <= 0.1
    gone = lowest["ci_high"] < 0.6 or gap["ci_low"] > 0.1
    return held, gone, (f"retention at scores 1-2 (the lower) {_text(lowest)}, at 5 minus it {_text(gap)}")


@register_findings("jones_sasser")
def jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = jones_sasser_checks(results)
    markets = levels(results, "market")
    if "competitive, no attitudinal loyalty" in markets:
        at = {"market": "competitive, no attitudinal loyalty"}
        ratio = ratio_interval(results, **at)
        gap = step_minus_rise(results, **at)
        checks.append({"effect": "ablation, no attitudinal loyalty: the jump at 5 disappears",
                       "holds": ratio["ci_high"] < 3.0 or gap["ci_high"] <= 0,
                       "evidence": f"ratio {_text(ratio, 'value')}, step minus rise {_text(gap)}"})
    if "competitive, no rival offers" in markets:
        share = interval(values(results, "market.satisfied_switcher_share", market="competitive, no rival offers"))
        checks.append({"effect": "ablation, no rival offers: satisfied defectors fall below 0.60",
                       "holds": share["ci_high"] < 0.60, "evidence": f"share {_text(share)}"})
    if "hostage, no switching costs" in markets:
        _, gone, evidence = hostages(results, market="hostage, no switching costs")
        checks.append({"effect": "ablation, hostage market without switching costs: the hostages are gone",
                       "holds": gone, "evidence": evidence})
    return checks


@register_findings("robustness_jones_sasser")
def robustness_jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    def js(point):
        at = {"perturbation": point}
        return ratio_interval(results, **at)["ci_low"] >= 3.0 and step_minus_rise(results, **at)["ci_low"] > 0, ""

    def satisfied(point):
        share = interval(values(results, "market.satisfied_switcher_share", perturbation=point))
        return within(share, 0.60, 0.85), ""

    return robustness(results, {"Jones & Sasser (ratio >= 3, step > rise)": js,
                                 "satisfied defectors 0.60-0.85": satisfied})


# --- figures ------------------------------------------------------------------------------------------------


@register_findings("jones_sasser_region")
def jones_sasser_region(results: pd.DataFrame, experiment) -> Region:
    """Where customers who scored 4 defect at least three times as often as those who scored 5: the ratio of mean
    retentions' bootstrap interval at each sampled point against 3."""
    def statistic(point: pd.DataFrame) -> dict:
        ratio = ratio_interval(point)
        return {"mean": ratio["value"], "ci_low": ratio["ci_low"], "ci_high": ratio["ci_high"],
                "retention_4": mean(point, SCORES[3]), "retention_5": mean(point, SCORES[4]),
                "verdict": regions.verdict(ratio["ci_low"], ratio["ci_high"], 3.0)}

    points, sampled = regions.by_point(results, experiment, statistic)
    return regions.describe(points, "jones_sasser_region", "customers who scored 4 defect within a year at least "
                            "three times as often as those who scored 5 (Jones & Sasser's jump at the top box)",
                            "the defection ratio 4 : 5 (a ratio of mean retentions; bootstrap interval over the "
                            "point's replications) against 3", sampled)


@register_findings("satisfied_defectors_region")
def satisfied_defectors_region(results: pd.DataFrame, experiment) -> Region:
    """Where 60-85% of switchers last said they were satisfied with the firm they left (Reichheld): the share's t
    interval inside the band holds, wholly outside it fails."""
    def statistic(point: pd.DataFrame) -> dict:
        share = interval(values(point, "market.satisfied_switcher_share"))
        inside = within(share, 0.60, 0.85)
        outside = share["ci_high"] < 0.60 or share["ci_low"] > 0.85
        return {"mean": share["mean"], "ci_low": share["ci_low"], "ci_high": share["ci_high"],
                "annual_churn": mean(point, "market.annual_churn"),
                "verdict": "holds" if inside else "fails" if outside else "unclear"}

    points, sampled = regions.by_point(results, experiment, statistic)
    return regions.describe(points, "satisfied_defectors_region", "60-85% of the customers who switched last said "
                            "they were satisfied (4 or 5) with the firm they left (Reichheld)",
                            "the share of switchers whose last answer about the firm they left was 4 or 5, against "
                            "the band 0.60-0.85", sampled)


@register_figure("jones_sasser")
def jones_sasser_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Retention a year after the survey against the score, one curve per market."""
    plt, _ = style()
    fig, ax = plt.subplots(figsize=(8, 5))
    markets = list(dict.fromkeys(results["market"].astype(str)))
    for k, market in enumerate(markets):
        means, lows, highs = [], [], []
        for s in range(1, 6):
            ci = interval(values(results, f"market.retention_by_score_{s}", market=market))
            means.append(ci["mean"])
            lows.append(ci["ci_low"])
            highs.append(ci["ci_high"])
        line = "-" if "no " not in market else ":"
        ax.plot(range(1, 6), means, line, marker="o", color=f"C{k}", label=market)
        ax.fill_between(range(1, 6), lows, highs, color=f"C{k}", alpha=0.15, lw=0)
    ax.set(xticks=range(1, 6), xlabel="satisfaction score in the survey (1-5)",
           ylabel="still a customer 52 weeks later", ylim=(0, 1.02),
           title="Retention by satisfaction score (Jones & Sasser), mean and 95% CI")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(folder) / "jones_sasser.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
