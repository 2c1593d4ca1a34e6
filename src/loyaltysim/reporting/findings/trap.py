"""The satisfaction trap: the findings experiments/satisfaction_trap.toml, its ablation and its robustness check
must reproduce, and its figure.

Each check reads an experiment's tidy results (one row per run and outcome) and states, with numbers, whether
an effect holds. The tests are written from the findings, not from the model's output:

* **Satisfaction trap** (the textbook's definition): with the same budget at the same cost per unit, investing in
  a basic attribute raises basic satisfaction, but the focal firm's cohort loyalty (retention and attitude) rises
  at most to the measured average-loyalty level (the paired gap to "Average" never exceeds +0.02 in retention or
  +0.05 in attitude: its 95% interval stays below) and flattens (the gain from the middle to the highest budget is
  smaller than from none to the lowest); investing in a latent attribute lifts both above that level (the 95%
  interval of the gap lies above 0) at the highest budget.
* **Ablation** (experiments/satisfaction_trap_ablation.toml): the trap holds in the full model and disappears
  when each of its mechanisms is removed.
* **Robustness** (experiments/robustness_trap.toml): the trap holds at 80% or more of the points where the
  parameters are moved by +-25%.
* **Imitation** (experiments/trap_imitation.toml): a boundary map, not a pass or fail. For each setting of the
  rivals' lags (how long after a better level they copy a basic and a latent attribute), the trap *holds* (as in
  the ablation: basic investment's retention gap to Average has its 95% interval's upper bound within +0.02 while
  latent investment's lies above 0), *flips* (latent investment leaves the focal firm below the average level,
  its interval under 0, or basic investment lifts it above the average beyond the tolerance, its interval over
  +0.02) or is *unclear* (neither). Where the results have a budget of 0, the evidence also gives what each
  investment changed (the gap at the highest budget minus the gap without investing, paired by replication).
* **Region** (experiments/trap_region.toml): the same verdict at every point of a sampled design crossed with the
  two strategies ("flips" counted as "fails"), and the region where it holds (:mod:`loyaltysim.reporting.regions`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loyaltysim.experiments.registry import ATTITUDE_GAP, RETENTION_GAP
from loyaltysim.reporting import regions
from loyaltysim.reporting.findings.common import (
    drop_crowded_labels,
    levels,
    mean,
    paired,
    robustness,
    style,
    values,
)
from loyaltysim.reporting.regions import Region
from loyaltysim.reporting.report import interval, register_figure, register_findings

BASIC_TOLERANCE = {RETENTION_GAP: 0.02, ATTITUDE_GAP: 0.05}


def trap_checks(results: pd.DataFrame, budgets: list[str], labels: dict[str, str] | None = None) -> list[dict]:
    """The satisfaction-trap tests over the budgets (lowest first; the first is no investment)."""
    labels = labels or {}
    checks = []
    top, middle, low, zero = budgets[-1], budgets[len(budgets) // 2], budgets[1], budgets[0]
    basic = {**labels, "strategy": "basic"}
    latent = {**labels, "strategy": "latent"}
    rise = mean(results, "focal.satisfaction_basic_mean", **basic, budget=top) - mean(
        results, "focal.satisfaction_basic_mean", **basic, budget=zero)
    checks.append({"effect": "basic investment raises basic satisfaction", "holds": rise > 0,
                   "evidence": f"basic satisfaction {rise:+.4f} from budget {zero} to {top}"})
    for outcome in (RETENTION_GAP, ATTITUDE_GAP):
        what = "retention" if outcome == RETENTION_GAP else "attitude"
        highs = [interval(values(results, outcome, **basic, budget=b))["ci_high"] for b in budgets]
        below = all(h <= BASIC_TOLERANCE[outcome] for h in highs)
        checks.append({"effect": f"basic investment: {what} rises at most to the average level",
                       "holds": below,
                       "evidence": "upper 95% bound of the gap to Average by budget: "
                                   + ", ".join(f"{b} {h:+.3f}" for b, h in zip(budgets, highs, strict=True))
                                   + f" (tolerance +{BASIC_TOLERANCE[outcome]})"})
        first = mean(results, outcome, **basic, budget=low) - mean(results, outcome, **basic, budget=zero)
        last = mean(results, outcome, **basic, budget=top) - mean(results, outcome, **basic, budget=middle)
        checks.append({"effect": f"basic investment: {what} flattens", "holds": last < first,
                       "evidence": f"gain {zero}->{low}: {first:+.4f}; {middle}->{top}: {last:+.4f}"})
        ci = interval(values(results, outcome, **latent, budget=top))
        checks.append({"effect": f"latent investment lifts {what} above the average level",
                       "holds": ci["ci_low"] > 0,
                       "evidence": f"gap to Average at {top}: {ci['mean']:+.3f} "
                                   f"[{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]"})
    return checks


def _trap_holds(results: pd.DataFrame, **labels: str) -> tuple[bool, str]:
    """The trap at one point: basic investment keeps the focal firm's cohort retention within the tolerance of
    the average level while the same budget on the latent attribute lifts it above (95% intervals)."""
    basic = interval(values(results, RETENTION_GAP, **labels, strategy="basic"))
    latent = interval(values(results, RETENTION_GAP, **labels, strategy="latent"))
    holds = basic["ci_high"] <= BASIC_TOLERANCE[RETENTION_GAP] and latent["ci_low"] > 0
    return holds, (f"retention gap to Average: basic {basic['mean']:+.3f} [{basic['ci_low']:+.3f}, "
                   f"{basic['ci_high']:+.3f}], latent {latent['mean']:+.3f} [{latent['ci_low']:+.3f}, "
                   f"{latent['ci_high']:+.3f}]")


@register_findings("satisfaction_trap")
def satisfaction_trap_findings(results: pd.DataFrame, experiment) -> list[dict]:
    return trap_checks(results, levels(results, "budget"))


@register_findings("satisfaction_trap_ablation")
def trap_ablation_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = []
    for model in levels(results, "model"):
        holds, evidence = _trap_holds(results, model=model)
        effect = "the trap holds" if model == "full" else f"{model}: the trap disappears"
        checks.append({"effect": effect, "holds": holds if model == "full" else not holds, "evidence": evidence})
    return checks


@register_findings("robustness_trap")
def robustness_trap_findings(results: pd.DataFrame, experiment) -> list[dict]:
    return robustness(results, {"satisfaction trap": lambda p: _trap_holds(results, perturbation=p)})


def _top_budget(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The runs at the highest budget, and those at budget "0" (None when the results have no such level)."""
    if "budget" not in results.columns:
        return results, None
    budgets = levels(results, "budget")
    top = results[results["budget"].astype(str) == budgets[-1]]
    zero = results[results["budget"].astype(str) == "0"] if "0" in budgets[:-1] else None
    return top, zero


def _verdict(basic: dict, latent: dict) -> tuple[str, list[str]]:
    """"holds", "flips" or "unclear" from the intervals of the retention gap to Average after basic and after
    latent investment (see the module's docstring), and which side failed."""
    tolerance = BASIC_TOLERANCE[RETENTION_GAP]
    sides = []
    if latent["ci_high"] < 0:
        sides.append("latent investment leaves the focal firm below the average")
    if basic["ci_low"] > tolerance:
        sides.append("basic investment lifts it above the average")
    if basic["ci_high"] <= tolerance and latent["ci_low"] > 0:
        return "holds", sides
    return ("flips" if sides else "unclear"), sides


def imitation_verdict(results: pd.DataFrame, imitation: str) -> tuple[str, str]:
    """Whether the trap holds, flips or is unclear at one imitation setting (see the module's docstring), at the
    highest budget; and the evidence: both gaps to Average, which side failed, latent minus basic investment
    paired run by run and, where the results have a budget of 0, what each investment changed (the gap at the
    highest budget minus the gap without investment, paired run by run)."""
    setting = results[results["imitation"].astype(str) == imitation]
    top, zero = _top_budget(setting)
    basic = interval(values(top, RETENTION_GAP, strategy="basic"))
    latent = interval(values(top, RETENTION_GAP, strategy="latent"))
    verdict, sides = _verdict(basic, latent)
    choice = interval(paired(top, RETENTION_GAP, "latent", "basic", factor="strategy"))
    evidence = ("; ".join(sides) + ("; " if sides else "")
                + f"retention gap to Average: basic {basic['mean']:+.3f} [{basic['ci_low']:+.3f}, "
                f"{basic['ci_high']:+.3f}], latent {latent['mean']:+.3f} [{latent['ci_low']:+.3f}, "
                f"{latent['ci_high']:+.3f}]; latent minus basic, paired by replication, {choice['mean']:+.3f} "
                f"[{choice['ci_low']:+.3f}, {choice['ci_high']:+.3f}]")
    if zero is not None and not zero.empty:
        none = interval(values(zero, RETENTION_GAP, strategy="basic"))
        lifts = []
        for strategy in ("basic", "latent"):
            runs = setting[setting["strategy"].astype(str) == strategy]
            lift = interval(paired(runs, RETENTION_GAP, levels(results, "budget")[-1], "0", factor="budget"))
            lifts.append(f"{strategy} {lift['mean']:+.3f} [{lift['ci_low']:+.3f}, {lift['ci_high']:+.3f}]")
        evidence += (f"; without investment the gap is {none['mean']:+.3f} [{none['ci_low']:+.3f}, "
                     f"{none['ci_high']:+.3f}], so the investment changed it by {', '.join(lifts)}")
    return verdict, evidence


@register_findings("trap_imitation")
def trap_imitation_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = []
    for imitation in levels(results, "imitation"):
        verdict, evidence = imitation_verdict(results, imitation)
        checks.append({"effect": f"rivals copy {imitation}: the trap holds", "holds": verdict == "holds",
                       "evidence": f"{verdict}; {evidence}"})
    return checks


TRAP_CLAIM = ("the same budget lifts the focal firm's cohort retention at most to the average-loyalty level when spent "
              "on a basic attribute (coverage), and above it when spent on a latent one (perks)")


@register_findings("trap_region")
def trap_region_findings(results: pd.DataFrame, experiment) -> Region:
    """Where the trap holds over a sampled design crossed with the strategies (experiments/trap_region.toml): at
    each sampled point the verdict of :func:`_verdict` ("flips" counted as "fails"), and PRIM's region."""
    def statistic(point: pd.DataFrame) -> dict:
        basic = interval(values(point, RETENTION_GAP, strategy="basic"))
        latent = interval(values(point, RETENTION_GAP, strategy="latent"))
        verdict, sides = _verdict(basic, latent)
        choice = interval(paired(point, RETENTION_GAP, "latent", "basic", factor="strategy"))
        return {"mean": latent["mean"], "ci_low": latent["ci_low"], "ci_high": latent["ci_high"],
                "basic_mean": basic["mean"], "basic_ci_low": basic["ci_low"], "basic_ci_high": basic["ci_high"],
                "latent_minus_basic": choice["mean"],
                "verdict": "fails" if verdict == "flips" else verdict, "why": "; ".join(sides)}

    top, _ = _top_budget(results)
    points, sampled = regions.by_point(top, experiment, statistic)
    return regions.describe(points, "trap_region", TRAP_CLAIM,
                            "the retention gap to Average after latent investment (mean, ci) and after basic "
                            "investment (basic_mean, basic_ci): holds where basic's upper bound is within +0.02 and "
                            "latent's lower bound above 0, fails where latent's upper bound is below 0 or basic's "
                            "lower bound above +0.02", sampled)


# --- figures ------------------------------------------------------------------------------------------------


@register_figure("trap")
def trap_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Loyalty against basic satisfaction for both strategies; dashed, the average-loyalty level measured in
    the same runs (the Average firm's loyalty). Each focal point is labelled with its budget, unless the label
    would cover another (the no-investment and the highest budget are labelled first)."""
    from matplotlib.ticker import MaxNLocator

    plt, _ = style()
    budgets = levels(results, "budget")
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.6), layout="constrained")
    panels = [("focal.cohort_retention_annual", "firm[Average].cohort_retention_annual",
               "cohort retention per year", "Retention of the customers held when investment began"),
              ("focal.cohort_attitude", "firm[Average].cohort_attitude", "cohort attitudinal loyalty (0-1)",
               "Their attitudinal loyalty")]
    first = [budgets[0], budgets[-1], *budgets[1:-1]]  # the order in which budget labels are kept
    labels = {b: [] for b in first}
    for ax, (own, average, label, title) in zip(axes, panels, strict=True):
        for strategy, colour, marker in (("basic", "C0", "o"), ("latent", "C3", "s")):
            xs = [mean(results, "focal.satisfaction_basic_mean", strategy=strategy, budget=b) for b in budgets]
            focal = [interval(values(results, own, strategy=strategy, budget=b)) for b in budgets]
            level = [interval(values(results, average, strategy=strategy, budget=b)) for b in budgets]
            ax.errorbar(xs, [c["mean"] for c in focal], yerr=[c["mean"] - c["ci_low"] for c in focal],
                        color=colour, marker=marker, capsize=3, label=f"focal firm, {strategy} investment")
            ax.plot(xs, [c["mean"] for c in level], ls="--", color=colour, marker=marker, mfc="none", alpha=0.8,
                    label=f"average-loyalty level in the same runs ({strategy})")
            for x, c, b in zip(xs, focal, budgets, strict=True):
                labels[b].append(ax.annotate(b, (x, c["mean"]), textcoords="offset points", xytext=(5, -10),
                                             fontsize=8, color=colour))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set(xlabel="basic-expectation satisfaction of the focal firm's\ncustomers (0 = expectations met)",
               ylabel=label, title=title)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"The satisfaction trap: one budget (0 to {budgets[-1]} a year) on a basic or a latent attribute "
                 "(mean, 95% CI)")
    drop_crowded_labels(fig, [a for b in first for a in labels[b]])
    path = Path(folder) / "trap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _lags(imitation: str) -> tuple[str, str]:
    """("13w", "never") from an imitation label "basic 13w, latent never"."""
    basic, latent = (part.split()[-1] for part in imitation.split(", "))
    return basic, latent


@register_figure("trap_imitation")
def trap_imitation_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """The boundary map: for each pair of lags (rows: how soon rivals copy a better basic attribute; columns: a
    better latent one), the focal firm's cohort-retention gap to Average after basic and after latent investment
    (mean and 95% interval), and whether the trap holds, flips or is unclear there."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    plt, _ = style()
    settings = levels(results, "imitation")
    rows = list(dict.fromkeys(_lags(i)[0] for i in settings))
    cols = list(dict.fromkeys(_lags(i)[1] for i in settings))
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), layout="constrained")
    top, _ = _top_budget(results)
    gaps = {s: {i: interval(values(top, RETENTION_GAP, imitation=i, strategy=s)) for i in settings}
            for s in ("basic", "latent")}
    bound = max(abs(c["mean"]) for g in gaps.values() for c in g.values()) or 1.0
    for ax, strategy in zip(axes[:2], ("basic", "latent"), strict=True):
        grid = np.full((len(rows), len(cols)), np.nan)
        for i in settings:
            r, c = rows.index(_lags(i)[0]), cols.index(_lags(i)[1])
            ci = gaps[strategy][i]
            grid[r, c] = ci["mean"]
            dark = abs(ci["mean"]) > 0.6 * bound  # white text on the saturated cells
            ax.text(c, r, f"{ci['mean']:+.3f}\n[{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]", ha="center",
                    va="center", fontsize=8, color="white" if dark else "black")
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
        ax.set_title(f"after {strategy} investment")
        fig.colorbar(image, ax=ax, shrink=0.8, label="cohort retention gap to Average")
    verdicts = ("flips", "unclear", "holds")
    grid = np.full((len(rows), len(cols)), np.nan)
    for i in settings:
        verdict, _ = imitation_verdict(results, i)
        r, c = rows.index(_lags(i)[0]), cols.index(_lags(i)[1])
        grid[r, c] = verdicts.index(verdict)
        axes[2].text(c, r, verdict, ha="center", va="center", fontsize=10)
    axes[2].imshow(grid, cmap=ListedColormap(["#f4a582", "#f7f7f7", "#92c5de"]), vmin=-0.5, vmax=2.5)
    axes[2].set_title("the trap")
    for ax in axes:
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel="rivals copy a latent rise after",
               ylabel="rivals copy a basic rise after")
        ax.grid(False)  # the style's grid would cut through the cells
    budget = levels(results, "budget")[-1] if "budget" in results else ""
    fig.suptitle(f"Where the satisfaction trap holds: rivals' imitation lags (focal firm invests {budget} a year; "
                 "mean, 95% CI)")
    path = Path(folder) / "trap_imitation.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
