"""The value of win-back campaigns: the findings experiments/winback.toml must reproduce, their ablations, and
its figure.

Each check compares two campaigns on the same market and draws (the same replication), so every number is a
paired difference with a 95% t-interval over the replications. The effects, from the win-back literature
(Griffin & Lowenstein 2001; Stauss & Friege 1999; Thomas, Blattberg & Fox 2004; Tokman, Davis & Lemon 2007):

* **a cheaper offer wins back more customers**: the win-back rate rises with the depth of the discount;
* **win-back falls with time since lapse**: the same offer to the same leavers wins back fewer when it comes later;
* **customers who left over service are harder to win back than those who left over price** (with a discount);
* **a targeted campaign returns more than it costs, while an untargeted one can lose money**: the campaign's
  incremental NPV (campaign minus no campaign, paired; its 95% interval) is above 0 when it contacts only the
  most valuable leavers, and below 0 when it contacts them all (a campaign can show a positive gross "return on
  regain" and still lose against doing nothing).

**The cost of a regain** (experiments/winback_cost.toml): the credit given to each customer who comes back is booked
when the customer returns and changes nothing customers do, so at each cost a campaign wins back the same customers
and its incremental NPV falls linearly with the cost. The *break-even credit* is where it crosses 0: per
replication the intercept a and slope -b of the incremental NPV against the credit, and the break-even a / b from
their means (a ratio of means, with a paired bootstrap interval over replications). Checks: the credit changes no
customer's behaviour (the win-back rate is the same at every credit, run by run); an untargeted campaign loses money
at the shipped credit of 400 (its break-even's interval lies below); and targeting by value raises the credit a
regain can carry (the difference of the two break-evens, its interval above 0).

**Regions** (experiments/winback_region.toml): at every point of a sampled design crossed with no campaign, the
untargeted and the targeted campaign, each campaign's incremental NPV (paired by replication) against 0, and the
region where the untargeted one loses money and the targeted one pays (:mod:`loyaltysim.reporting.regions`).

The ablation experiment (experiments/winback_ablation.toml) removes each effect's mechanism and checks that the
effect is gone: the same paired difference is *equivalent* to 0 within a stated smallest effect of interest, by two
one-sided tests at 5% (its 90% interval inside the margin), with the comparison's power reported. An interval that
merely includes 0 is not evidence of absence (it rewards noisy comparisons). The margins (:data:`MARGINS`): 0.02 of
win-back rate (two contacted leavers in a hundred; the full model's effects are 0.03 to 0.17) and 0.05 of return on
regain (the full model's targeting effect is about 0.34).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.reporting import regions
from loyaltysim.reporting.findings.common import (
    above_zero,
    below_zero,
    gone,
    interval_text,
    levels,
    levels_present,
    mean,
    money_text,
    paired,
    statistic_interval,
    style,
    thousands,
    values,
)
from loyaltysim.reporting.regions import Region
from loyaltysim.reporting.report import interval, register_figure, register_findings

FACTOR = "campaign"
RATE = "focal.winback_rate"
NPV = "focal.npv"
ROI = "focal.return_on_regain"
DISCOUNTS = ("discount 10%", "discount 30%", "discount 50%")
TIMING = ("discount 30%", "lapsed 14-21 weeks", "lapsed 27-34 weeks", "lapsed 40-47 weeks")
TIMING_WEEKS = (1, 14, 27, 40)  # first week of each timing window
CAUSES = ("price leavers", "service leavers")


@register_findings("winback")
def winback_findings(results: pd.DataFrame, experiment) -> list[dict]:
    """The four win-back effects, each as paired differences between campaigns."""
    have = levels_present(results, FACTOR)
    checks = []
    if set(DISCOUNTS) <= have:
        deeper = paired(results, RATE, "discount 50%", "discount 10%", FACTOR)
        step_up = paired(results, RATE, "discount 30%", "discount 10%", FACTOR)
        rates = ", ".join(f"{d} {mean(results, RATE, campaign=d):.3f}" for d in DISCOUNTS)
        checks.append({"effect": "a cheaper offer wins back more customers",
                       "holds": above_zero(deeper) and above_zero(step_up),
                       "evidence": f"win-back rate 50% minus 10% off: {interval_text(deeper)}; 30% minus 10%: "
                                   f"{interval_text(step_up)} (rates: {rates})"})
    if set(TIMING) <= have:
        later = paired(results, RATE, "discount 30%", "lapsed 40-47 weeks", FACTOR)
        rates = [mean(results, RATE, campaign=t) for t in TIMING]
        checks.append({"effect": "win-back falls with time since lapse",
                       "holds": above_zero(later) and bool(np.all(np.diff(rates) < 0.01)),
                       "evidence": f"rate at 1-8 weeks minus 40-47 weeks: {interval_text(later)}; rates by time "
                                   "since lapse " + ", ".join(f"{w}+ weeks {r:.3f}" for w, r in zip(TIMING_WEEKS, rates,
                                                                                         strict=True))})
    if {f"{c} (discount)" for c in CAUSES} <= have:
        gap = paired(results, RATE, "price leavers (discount)", "service leavers (discount)", FACTOR)
        evidence = f"win-back rate, price minus service leavers, with a discount: {interval_text(gap)}"
        if {f"{c} (upgrade)" for c in CAUSES} <= have:
            upgrade = paired(results, RATE, "price leavers (upgrade)", "service leavers (upgrade)", FACTOR)
            evidence += f"; with a service upgrade: {interval_text(upgrade)}"
        checks.append({"effect": "customers who left over service are harder to win back than those who left over "
                                 "price", "holds": above_zero(gap), "evidence": evidence})
    if {"targeted by value", "discount 30%", "no campaign"} <= have:
        targeted = paired(results, NPV, "targeted by value", "no campaign", FACTOR)
        untargeted = paired(results, NPV, "discount 30%", "no campaign", FACTOR)
        edge = paired(results, ROI, "targeted by value", "discount 30%", FACTOR)
        loss = float((untargeted < 0).mean()) if untargeted.size else float("nan")
        gross = mean(results, ROI, campaign="discount 30%")
        checks.append({"effect": "a targeted campaign returns more than it costs",
                       "holds": above_zero(targeted) and above_zero(edge),
                       "evidence": f"incremental NPV against no campaign {money_text(targeted)}; return on regain "
                                   f"targeted minus untargeted {interval_text(edge)}"})
        checks.append({"effect": "an untargeted campaign can lose money",
                       "holds": below_zero(untargeted),
                       "evidence": f"incremental NPV against no campaign {money_text(untargeted)}, P(loss) {loss:.2f}; "
                                   f"yet its gross return on regain is {gross:+.2f}"})
    return checks


ABLATIONS = {
    # effect, mechanism removed, the two arms whose paired difference is the effect, outcome
    "a cheaper offer wins back more": ("no price sensitivity", "discount 50%", "discount 10%", RATE),
    "win-back falls with time since lapse": ("settled elsewhere", "lapsed 1-8 weeks", "lapsed 40-47 weeks", RATE),
    "service leavers are harder to win back than price leavers": (
        "failures leave no mark on beliefs", "price leavers", "service leavers", RATE),
    "targeting by value returns more": ("homogeneous spending", "targeted by value", "untargeted", ROI),
}


MARGINS = {RATE: 0.02, ROI: 0.05}  # the smallest effect of interest of each outcome the ablations compare


SHIPPED_CREDIT = 400.0  # experiments/scenarios/winback.toml's credit per regained customer


def _credit_lines(results: pd.DataFrame, arm: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per replication, the intercept a and slope -b of the arm's incremental NPV (against "no campaign") over the
    credits of its levels ("<arm>, credit <amount>"), and those levels."""
    names = [lv for lv in levels(results, FACTOR) if lv.startswith(f"{arm}, credit ")]
    credits = np.array([float(lv.rsplit(" ", 1)[1]) for lv in names])
    gains = np.array([paired(results, NPV, lv, "no campaign", factor=FACTOR) for lv in names])  # credit x rep
    slope, intercept = np.polyfit(credits, gains, 1)  # one line per replication (a column of gains)
    return intercept, -slope, names


def _break_even(a: np.ndarray, b: np.ndarray) -> float:
    """The credit at which the mean line crosses 0: mean intercept over mean slope (NaN without regains)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(np.mean(a)) / np.float64(np.mean(b)))


@register_findings("winback_cost")
def winback_cost_findings(results: pd.DataFrame, experiment) -> list[dict]:
    checks = []
    lines = {}
    for arm in ("untargeted", "targeted"):
        a, b, names = _credit_lines(results, arm)
        lines[arm] = (a, b)
        rows = results[results["outcome"] == RATE]
        rates = (rows.assign(level=rows[FACTOR].astype(str))
                 .pivot_table(index="replication", columns="level", values="value", aggfunc="first")
                 .reindex(columns=names).dropna())  # replications with a win-back rate at every credit
        spread = float((rates.max(axis=1) - rates.min(axis=1)).max()) if not rates.empty else float("nan")
        checks.append({"effect": f"{arm}: the credit changes no customer's behaviour", "holds": spread == 0.0,
                       "evidence": f"largest difference in win-back rate between credits in a replication: "
                                   f"{spread:.3g} ({len(names)} credits, {len(rates)} replications with a rate "
                                   "at every credit)"})
        even = statistic_interval([a, b], _break_even)
        regains = interval(b)
        text = (f"break-even credit {even['value']:,.0f} [{even['ci_low']:,.0f}, {even['ci_high']:,.0f}] per "
                f"regained customer; incremental NPV {money_text(a)} at a credit of 0, falling by "
                f"{regains['mean']:,.1f} per unit of credit (the discounted regains a run)")
        if arm == "untargeted":
            checks.append({"effect": f"an untargeted campaign loses money at the shipped credit of "
                                     f"{SHIPPED_CREDIT:,.0f}", "holds": even["ci_high"] < SHIPPED_CREDIT,
                           "evidence": text})
        else:
            checks.append({"effect": f"a targeted campaign pays at the shipped credit of {SHIPPED_CREDIT:,.0f}",
                           "holds": even["ci_low"] > SHIPPED_CREDIT, "evidence": text})
    (au, bu), (at, bt) = lines["untargeted"], lines["targeted"]
    gap = statistic_interval([au, bu, at, bt], lambda au, bu, at, bt: _break_even(at, bt) - _break_even(au, bu))
    checks.append({"effect": "targeting by value raises the credit a regain can carry",
                   "holds": gap["ci_low"] > 0,
                   "evidence": f"break-even credit, targeted minus untargeted: {gap['value']:+,.0f} "
                               f"[{gap['ci_low']:+,.0f}, {gap['ci_high']:+,.0f}]"})
    return checks


def _campaign_region(results: pd.DataFrame, experiment, arm: str, finding: str, claim: str,
                     loses: bool) -> Region:
    """At each sampled point the arm's incremental NPV (arm minus no campaign, paired by replication) and its
    verdict: the claim holds where the interval lies below 0 (``loses``) or above it; and PRIM's region."""
    def statistic(point: pd.DataFrame) -> dict:
        gain = interval(paired(point, NPV, arm, "no campaign", factor=FACTOR))
        rate = interval(values(point, RATE, **{FACTOR: arm}))
        return {"mean": gain["mean"], "ci_low": gain["ci_low"], "ci_high": gain["ci_high"],
                "winback_rate": rate["mean"],
                "verdict": regions.verdict(gain["ci_low"], gain["ci_high"], 0.0, above=not loses)}

    points, sampled = regions.by_point(results, experiment, statistic)
    return regions.describe(points, finding, claim,
                            f"the {arm} campaign's incremental NPV (campaign minus no campaign, paired by "
                            "replication)", sampled)


@register_findings("winback_untargeted_region")
def winback_untargeted_region(results: pd.DataFrame, experiment) -> Region:
    return _campaign_region(results, experiment, "untargeted", "winback_untargeted_region",
                            "a win-back campaign to every recent leaver loses money against no campaign", loses=True)


@register_findings("winback_targeted_region")
def winback_targeted_region(results: pd.DataFrame, experiment) -> Region:
    return _campaign_region(results, experiment, "targeted", "winback_targeted_region",
                            "the same campaign only to the leavers whose first lifetime earned the most (600 or "
                            "more) returns more than it costs", loses=False)


@register_findings("winback_ablation")
def winback_ablation_findings(results: pd.DataFrame, experiment) -> list[dict]:
    """Each effect, with its mechanism removed, is gone: its paired difference is equivalent to 0 within the
    outcome's margin (two one-sided tests; :func:`~loyaltysim.reporting.findings.common.gone`)."""
    have = levels_present(results, "arm")
    checks = []
    for effect, (mechanism, a, b, outcome) in ABLATIONS.items():
        first, second = f"{mechanism}: {a}", f"{mechanism}: {b}"
        if not {first, second} <= have:
            continue
        diff = paired(results, outcome, first, second, factor="arm")
        holds, evidence = gone(diff, MARGINS[outcome])
        checks.append({"effect": f"{mechanism}: '{effect}' disappears", "holds": holds,
                       "evidence": f"{a} minus {b} ({outcome}): {evidence}"})
    return checks


@register_figure("winback")
def winback_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Four panels: win-back rate by discount depth, by time since lapse, by defection cause and offer; and the
    incremental NPV of an untargeted and a targeted campaign."""
    plt, _ = style()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    have = levels_present(results, FACTOR)

    def bars(ax, levels, outcome, labels, colours, scale=1.0):
        levels = [lv for lv in levels if lv in have]
        cis = [interval(values(results, outcome, campaign=lv)) for lv in levels]
        means = [c["mean"] * scale for c in cis]
        errors = [(c["mean"] - c["ci_low"]) * scale for c in cis]
        ax.bar(range(len(levels)), means, yerr=errors, capsize=4, color=colours[:len(levels)])
        ax.set_xticks(range(len(levels)), [labels.get(lv, lv) for lv in levels], fontsize=8)

    bars(axes[0], DISCOUNTS, RATE, {d: d.removeprefix("discount ") + " off" for d in DISCOUNTS}, ["C0"] * 3)
    axes[0].set(ylabel="share of contacted who came back", title="Deeper discount, more come back")
    bars(axes[1], TIMING, RATE, dict(zip(TIMING, ("1-8", "14-21", "27-34", "40-47"), strict=True)), ["C1"] * 4)
    axes[1].set(xlabel="weeks since the customer left", ylabel="share of contacted who came back",
                title="Later offers win back fewer")
    causes = [f"{c} ({o})" for o in ("discount", "upgrade") for c in CAUSES]
    bars(axes[2], causes, RATE, {c: c.replace(" leavers ", "\n") for c in causes}, ["C2", "C3", "C2", "C3"])
    axes[2].set(ylabel="share of contacted who came back", title="Left over price (green) or service (red)")
    arms = ["discount 30%", "targeted by value"]
    for j, arm in enumerate(arms):
        diff = paired(results, NPV, arm, "no campaign", FACTOR) / 1000.0
        if diff.size:
            c = interval(diff)
            axes[3].bar(j, c["mean"], yerr=c["mean"] - c["ci_low"], capsize=4, color="C4" if c["mean"] > 0 else "C7")
            axes[3].scatter(np.full(diff.size, j) + 0.15, diff, s=8, color="k", alpha=0.5)
    axes[3].axhline(0, color="k", lw=0.8)
    axes[3].set_xticks(range(len(arms)), ["every leaver", "most valuable\nleavers"], fontsize=8)
    axes[3].set(ylabel=f"NPV with campaign minus without ({thousands(experiment)})",
                title="Incremental value of the campaign")
    fig.suptitle(f"The value of win-back campaigns (mean and 95% CI over {experiment.replications} replications)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(folder) / "winback.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
