"""The published findings the model must reproduce: their figures and the tests that say whether they hold.

Each check reads an experiment's tidy results (one row per run and outcome) and states, with numbers, whether
an effect holds. The tests are written from the findings, not from the model's output:

* **Satisfaction trap** (the textbook's definition): with the same budget at the same cost per unit, investing in
  a basic attribute raises basic satisfaction, but the focal firm's cohort loyalty (retention and attitude) rises
  at most to the measured average-loyalty level (the paired gap to "Average" never exceeds +0.02 in retention or
  +0.05 in attitude: its 95% interval stays below) and flattens (the gain from the middle to the highest budget is
  smaller than from none to the lowest); investing in a latent attribute lifts both above that level (the 95%
  interval of the gap lies above 0) at the highest budget.
* **Jones & Sasser (1995)**, competitive market: the annual defection rate at score 4 is at least 3 times that at
  5, and the step in retention from 4 to 5 is larger than the whole rise from the lowest score to 4.
* **Satisfied defectors** (Reichheld 1993, 1996): 0.60-0.85 of defectors last scored 4 or 5, in the same
  competitive market, whose annual churn is 15-30%.
* **Hostages**: with high switching costs retention is at least 0.6 even at the lowest scores, and the curve
  is flat there (within 0.1 of retention at 5): dissatisfied customers are held like satisfied ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.reporting.report import interval, register_figure, register_findings

RETENTION_GAP = "focal.cohort_retention_annual - firm[Average].cohort_retention_annual"
ATTITUDE_GAP = "focal.cohort_attitude - firm[Average].cohort_attitude"
BASIC_TOLERANCE = {RETENTION_GAP: 0.02, ATTITUDE_GAP: 0.05}


def _values(results: pd.DataFrame, outcome: str, **labels: str) -> np.ndarray:
    rows = results[results["outcome"] == outcome]
    for factor, label in labels.items():
        rows = rows[rows[factor].astype(str) == label]
    return rows["value"].dropna().to_numpy()


def _mean(results: pd.DataFrame, outcome: str, **labels: str) -> float:
    values = _values(results, outcome, **labels)
    return float(values.mean()) if values.size else float("nan")


def trap_checks(results: pd.DataFrame, budgets: list[str], labels: dict[str, str] | None = None) -> list[dict]:
    """The satisfaction-trap tests over the budgets (lowest first; the first is no investment)."""
    labels = labels or {}
    checks = []
    top, middle, low, zero = budgets[-1], budgets[len(budgets) // 2], budgets[1], budgets[0]
    basic = {**labels, "strategy": "basic"}
    latent = {**labels, "strategy": "latent"}
    rise = _mean(results, "focal.satisfaction_basic_mean", **basic, budget=top) - _mean(
        results, "focal.satisfaction_basic_mean", **basic, budget=zero)
    checks.append({"effect": "basic investment raises basic satisfaction", "holds": rise > 0,
                   "evidence": f"basic satisfaction {rise:+.4f} from budget {zero} to {top}"})
    for outcome in (RETENTION_GAP, ATTITUDE_GAP):
        what = "retention" if outcome == RETENTION_GAP else "attitude"
        highs = [interval(_values(results, outcome, **basic, budget=b))["ci_high"] for b in budgets]
        below = all(h <= BASIC_TOLERANCE[outcome] for h in highs)
        checks.append({"effect": f"basic investment: {what} rises at most to the average level",
                       "holds": below,
                       "evidence": "upper 95% bound of the gap to Average by budget: "
                                   + ", ".join(f"{b} {h:+.3f}" for b, h in zip(budgets, highs, strict=True))
                                   + f" (tolerance +{BASIC_TOLERANCE[outcome]})"})
        first = _mean(results, outcome, **basic, budget=low) - _mean(results, outcome, **basic, budget=zero)
        last = _mean(results, outcome, **basic, budget=top) - _mean(results, outcome, **basic, budget=middle)
        checks.append({"effect": f"basic investment: {what} flattens", "holds": last < first,
                       "evidence": f"gain {zero}->{low}: {first:+.4f}; {middle}->{top}: {last:+.4f}"})
        ci = interval(_values(results, outcome, **latent, budget=top))
        checks.append({"effect": f"latent investment lifts {what} above the average level",
                       "holds": ci["ci_low"] > 0,
                       "evidence": f"gap to Average at {top}: {ci['mean']:+.3f} "
                                   f"[{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]"})
    return checks


def defection_ratio(results: pd.DataFrame, **labels: str) -> float:
    """Defection within a year at score 4 over that at 5, from the mean retentions over replications (a ratio of
    means: per-run ratios of small numbers are noisy and biased upward)."""
    r4 = _mean(results, "market.retention_by_score_4", **labels)
    r5 = _mean(results, "market.retention_by_score_5", **labels)
    return (1.0 - r4) / (1.0 - r5) if r5 < 1.0 else float("inf")


def jones_sasser_checks(results: pd.DataFrame, market: str = "competitive", hostage: str | None = "hostage",
                        labels: dict[str, str] | None = None) -> list[dict]:
    """The Jones & Sasser, satisfied-defector and churn tests in ``market``; hostages in ``hostage``."""
    labels = labels or {}
    at = {**labels, "market": market} if "market" in results.columns else labels
    ratio = defection_ratio(results, **at)
    step = _mean(results, "market.retention_step_4_to_5", **at)
    rise = _mean(results, "market.retention_rise_to_4", **at)
    satisfied = _mean(results, "market.satisfied_defector_share", **at)
    churn = _mean(results, "market.annual_churn", **at)
    checks = [
        {"effect": "defection at score 4 is at least 3x that at 5", "holds": ratio >= 3.0,
         "evidence": f"ratio {ratio:.2f}"},
        {"effect": "the step from 4 to 5 exceeds the rise from the lowest score to 4", "holds": step > rise,
         "evidence": f"step {step:.3f}, rise {rise:.3f}"},
        {"effect": "0.60-0.85 of defectors were satisfied (last score 4-5)", "holds": 0.60 <= satisfied <= 0.85,
         "evidence": f"share {satisfied:.3f}"},
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
    lowest = min(_mean(results, f"market.retention_by_score_{s}", **labels) for s in (1, 2))
    top = _mean(results, "market.retention_by_score_5", **labels)
    return lowest >= 0.6 and top - lowest <= 0.1, f"retention at scores 1-2 (the lower) {lowest:.3f}, at 5 {top:.3f}"


def _levels(results: pd.DataFrame, factor: str) -> list[str]:
    column = results[factor]
    return [str(x) for x in (column.cat.categories if hasattr(column, "cat") else dict.fromkeys(column))]


def _trap_holds(results: pd.DataFrame, **labels: str) -> tuple[bool, str]:
    """The trap at one point: basic investment keeps the focal firm's cohort retention within the tolerance of
    the average level while the same budget on the latent attribute lifts it above (95% intervals)."""
    basic = interval(_values(results, RETENTION_GAP, **labels, strategy="basic"))
    latent = interval(_values(results, RETENTION_GAP, **labels, strategy="latent"))
    holds = basic["ci_high"] <= BASIC_TOLERANCE[RETENTION_GAP] and latent["ci_low"] > 0
    return holds, (f"retention gap to Average: basic {basic['mean']:+.3f} [{basic['ci_low']:+.3f}, "
                   f"{basic['ci_high']:+.3f}], latent {latent['mean']:+.3f} [{latent['ci_low']:+.3f}, "
                   f"{latent['ci_high']:+.3f}]")


@register_findings("satisfaction_trap")
def satisfaction_trap_findings(results: pd.DataFrame, experiment) -> list[dict]:
    return trap_checks(results, _levels(results, "budget"))


@register_findings("satisfaction_trap_ablation")
def trap_ablation_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = []
    for model in _levels(results, "model"):
        holds, evidence = _trap_holds(results, model=model)
        effect = "the trap holds" if model == "full" else f"{model}: the trap disappears"
        checks.append({"effect": effect, "holds": holds if model == "full" else not holds, "evidence": evidence})
    return checks


@register_findings("jones_sasser")
def jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = jones_sasser_checks(results)
    markets = _levels(results, "market")
    if "competitive, no attitudinal loyalty" in markets:
        at = {"market": "competitive, no attitudinal loyalty"}
        ratio = defection_ratio(results, **at)
        step = _mean(results, "market.retention_step_4_to_5", **at)
        rise = _mean(results, "market.retention_rise_to_4", **at)
        checks.append({"effect": "ablation, no attitudinal loyalty: the jump at 5 disappears",
                       "holds": ratio < 3.0 or step <= rise,
                       "evidence": f"ratio {ratio:.2f}, step {step:.3f}, rise {rise:.3f}"})
    if "competitive, no rival offers" in markets:
        share = _mean(results, "market.satisfied_defector_share", market="competitive, no rival offers")
        checks.append({"effect": "ablation, no rival offers: satisfied defectors fall below 0.60",
                       "holds": share < 0.60, "evidence": f"share {share:.3f}"})
    if "hostage, no switching costs" in markets:
        holds, evidence = hostages(results, market="hostage, no switching costs")
        checks.append({"effect": "ablation, hostage market without switching costs: the hostages are gone",
                       "holds": not holds, "evidence": evidence})
    return checks


def _robustness(results: pd.DataFrame, effects: dict) -> list[dict]:
    points = [p for p in _levels(results, "perturbation") if p != "base"]
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


@register_findings("robustness_trap")
def robustness_trap_findings(results: pd.DataFrame, experiment) -> list[dict]:
    return _robustness(results, {"satisfaction trap": lambda p: _trap_holds(results, perturbation=p)})


@register_findings("robustness_jones_sasser")
def robustness_jones_sasser_findings(results: pd.DataFrame, experiment) -> list[dict]:
    def js(point):
        at = {"perturbation": point}
        ratio = defection_ratio(results, **at)
        step = _mean(results, "market.retention_step_4_to_5", **at)
        rise = _mean(results, "market.retention_rise_to_4", **at)
        return ratio >= 3.0 and step > rise, ""

    def satisfied(point):
        share = _mean(results, "market.satisfied_defector_share", perturbation=point)
        return 0.60 <= share <= 0.85, ""

    return _robustness(results, {"Jones & Sasser (ratio >= 3, step > rise)": js,
                                 "satisfied defectors 0.60-0.85": satisfied})


# --- figures ------------------------------------------------------------------------------------------------


def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


@register_figure("trap")
def trap_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Loyalty against basic satisfaction for both strategies; dashed, the average-loyalty level measured in
    the same runs (the Average firm's loyalty)."""
    plt, _ = _style()
    budgets = _levels(results, "budget")
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.2))
    panels = [("focal.cohort_retention_annual", "firm[Average].cohort_retention_annual",
               "cohort retention per year", "Retention of the customers held when investment began"),
              ("focal.cohort_attitude", "firm[Average].cohort_attitude", "cohort attitudinal loyalty (0-1)",
               "Their attitudinal loyalty")]
    for ax, (own, average, label, title) in zip(axes, panels, strict=True):
        for strategy, colour, marker in (("basic", "C0", "o"), ("latent", "C3", "s")):
            xs = [_mean(results, "focal.satisfaction_basic_mean", strategy=strategy, budget=b) for b in budgets]
            focal = [interval(_values(results, own, strategy=strategy, budget=b)) for b in budgets]
            level = [interval(_values(results, average, strategy=strategy, budget=b)) for b in budgets]
            ax.errorbar(xs, [c["mean"] for c in focal], yerr=[c["mean"] - c["ci_low"] for c in focal],
                        color=colour, marker=marker, capsize=3, label=f"focal firm, {strategy} investment")
            ax.plot(xs, [c["mean"] for c in level], ls="--", color=colour, marker=marker, mfc="none", alpha=0.8,
                    label=f"average-loyalty level in the same runs ({strategy})")
            for x, c, b in zip(xs, focal, budgets, strict=True):
                ax.annotate(b, (x, c["mean"]), textcoords="offset points", xytext=(5, -10), fontsize=8,
                            color=colour)
        ax.set(xlabel="basic-expectation satisfaction of the focal firm's customers (0 = met)", ylabel=label,
               title=title)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"The satisfaction trap: one budget (0 to {budgets[-1]} a year) on a basic or a latent attribute "
                 "(mean, 95% CI)")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    path = Path(folder) / "trap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@register_figure("jones_sasser")
def jones_sasser_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Retention a year after the survey against the score, one curve per market."""
    plt, _ = _style()
    fig, ax = plt.subplots(figsize=(8, 5))
    markets = list(dict.fromkeys(results["market"].astype(str)))
    for k, market in enumerate(markets):
        means, lows, highs = [], [], []
        for s in range(1, 6):
            ci = interval(_values(results, f"market.retention_by_score_{s}", market=market))
            means.append(ci["mean"])
            lows.append(ci["ci_low"])
            highs.append(ci["ci_high"])
        style = "-" if "no " not in market else ":"
        ax.plot(range(1, 6), means, style, marker="o", color=f"C{k}", label=market)
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
