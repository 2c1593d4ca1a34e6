"""Jones & Sasser, satisfied defectors and hostages: the findings experiments/jones_sasser.toml and its robustness
check must reproduce, and its figure.

Each check reads an experiment's tidy results (one row per run and outcome) and states, with numbers, whether
an effect holds. The tests are written from the findings, not from the model's output:

* **Jones & Sasser (1995)**, competitive market: the annual defection rate at score 4 is at least 3 times that at
  5, and the step in retention from 4 to 5 is larger than the whole rise from the lowest score to 4.
* **Satisfied defectors** (Reichheld 1993, 1996): 0.60-0.85 of defectors last scored 4 or 5, in the same
  competitive market, whose annual churn is 15-30%; measured on switches (exits from the market by a life event are
  apart) by the last answer about the firm left (``satisfied_switcher_share``).
* **Hostages**: with high switching costs retention is at least 0.6 even at the lowest scores, and the curve
  is flat there (within 0.1 of retention at 5): dissatisfied customers are held like satisfied ones.
* **Ablations** (markets of the same experiment): without attitudinal loyalty the jump at 5 disappears, without
  rival offers satisfied defectors fall below 0.60, and without switching costs the hostages are gone.
* **Robustness** (experiments/robustness_jones_sasser.toml): Jones & Sasser and the satisfied defectors hold at 80%
  or more of the points where the parameters are moved by +-25%.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loyaltysim.reporting.findings.common import levels, mean, robustness, style, values
from loyaltysim.reporting.report import interval, register_figure, register_findings


def defection_ratio(results: pd.DataFrame, **labels: str) -> float:
    """Defection within a year at score 4 over that at 5, from the mean retentions over replications (a ratio of
    means: per-run ratios of small numbers are noisy and biased upward)."""
    r4 = mean(results, "market.retention_by_score_4", **labels)
    r5 = mean(results, "market.retention_by_score_5", **labels)
    if r4 != r4 or r5 != r5:  # not measured: no ratio, and no check on it can hold
        return float("nan")
    return (1.0 - r4) / (1.0 - r5) if r5 < 1.0 else float("inf")


def jones_sasser_checks(results: pd.DataFrame, market: str = "competitive", hostage: str | None = "hostage",
                        labels: dict[str, str] | None = None) -> list[dict]:
    """The Jones & Sasser, satisfied-defector and churn tests in ``market``; hostages in ``hostage``."""
    labels = labels or {}
    at = {**labels, "market": market} if "market" in results.columns else labels
    ratio = defection_ratio(results, **at)
    step = mean(results, "market.retention_step_4_to_5", **at)
    rise = mean(results, "market.retention_rise_to_4", **at)
    satisfied = mean(results, "market.satisfied_switcher_share", **at)
    churn = mean(results, "market.annual_churn", **at)
    checks = [
        {"effect": "defection at score 4 is at least 3x that at 5", "holds": ratio >= 3.0,
         "evidence": f"ratio {ratio:.2f}"},
        {"effect": "the step from 4 to 5 exceeds the rise from the lowest score to 4", "holds": step > rise,
         "evidence": f"step {step:.3f}, rise {rise:.3f}"},
        {"effect": "0.60-0.85 of switchers were satisfied (last score about the firm left 4-5)",
         "holds": 0.60 <= satisfied <= 0.85, "evidence": f"share {satisfied:.3f}"},
        {"effect": "annual churn 15-30%", "holds": 0.15 <= churn <= 0.30, "evidence": f"churn {churn:.3f}"},
    ]
    if hostage is not None:
        holds, evidence = hostages(results, **{**labels, "market": hostage})
        checks.append({"effect": "hostages: retention at least 0.6 even at the lowest scores, and the curve flat "
                                 "(within 0.1 of retention at 5)", "holds": holds, "evidence": evidence})
    return checks


def hostages(results: pd.DataFrame, **labels: str) -> tuple[bool, str]:
    """Dissatisfied customers held like satisfied ones: retention at the lowest scores (the lower of 1 and 2) is
    at least 0.6 and within 0.1 of retention at 5."""
    lowest = min(mean(results, f"market.retention_by_score_{s}", **labels) for s in (1, 2))
    top = mean(results, "market.retention_by_score_5", **labels)
    return lowest >= 0.6 and top - lowest <= 0.1, f"retention at scores 1-2 (the lower) {lowest:.3f}, at 5 {top:.3f}"


@register_findings("jones_sasser")
def jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = jones_sasser_checks(results)
    markets = levels(results, "market")
    if "competitive, no attitudinal loyalty" in markets:
        at = {"market": "competitive, no attitudinal loyalty"}
        ratio = defection_ratio(results, **at)
        step = mean(results, "market.retention_step_4_to_5", **at)
        rise = mean(results, "market.retention_rise_to_4", **at)
        checks.append({"effect": "ablation, no attitudinal loyalty: the jump at 5 disappears",
                       "holds": ratio < 3.0 or step <= rise,
                       "evidence": f"ratio {ratio:.2f}, step {step:.3f}, rise {rise:.3f}"})
    if "competitive, no rival offers" in markets:
        share = mean(results, "market.satisfied_switcher_share", market="competitive, no rival offers")
        checks.append({"effect": "ablation, no rival offers: satisfied defectors fall below 0.60",
                       "holds": share < 0.60, "evidence": f"share {share:.3f}"})
    if "hostage, no switching costs" in markets:
        holds, evidence = hostages(results, market="hostage, no switching costs")
        checks.append({"effect": "ablation, hostage market without switching costs: the hostages are gone",
                       "holds": not holds, "evidence": evidence})
    return checks


@register_findings("robustness_jones_sasser")
def robustness_jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    def js(point):
        at = {"perturbation": point}
        ratio = defection_ratio(results, **at)
        step = mean(results, "market.retention_step_4_to_5", **at)
        rise = mean(results, "market.retention_rise_to_4", **at)
        return ratio >= 3.0 and step > rise, ""

    def satisfied(point):
        share = mean(results, "market.satisfied_switcher_share", perturbation=point)
        return 0.60 <= share <= 0.85, ""

    return robustness(results, {"Jones & Sasser (ratio >= 3, step > rise)": js,
                                 "satisfied defectors 0.60-0.85": satisfied})


# --- figures ------------------------------------------------------------------------------------------------


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
