"""Findings and figure of the programme-design experiment (experiments/programme_designs.toml).

Each design's effect is its paired difference against "no programme" (same market, same draws), with a 95%
interval. The checks state what marketing research reports of loyalty programmes (Sharp & Sharp 1997; Dowling &
Uncles 1997; Kopalle et al. 2012; the brief's numbers for breakage):

* **programme effects are modest**: no design moves the focal firm's share of wallet by more than 3 points;
* **and heterogeneous**: some designs return more than they cost while others lose money (incremental NPV whose
  95% interval lies above 0 for at least one design and below 0 for at least one);
* **copying erodes the first mover's gain** (the "everyone has one" equilibrium): the points programme's revenue
  gain is smaller when both rivals copy it (paired difference above 0), and one copying rival lies in between;
* **breakage** of the points designs lies in the commonly reported 10-35% of points;
* **a coalition brings its partners cross-shopping**: the partners' revenue rises (95% interval above 0).

The return on a design is its incremental profit over what it spent (programme cost plus the revenue it gave up to
member discounts, less fees collected), from the mean paired differences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.reporting.findings.common import above_zero, below_zero, mean, money_text, paired, style, thousands
from loyaltysim.reporting.report import interval, register_figure, register_findings

FACTOR = "programme"
REFERENCE = "no programme"
NPV = "focal.npv"
REVENUE = "focal.revenue"
WALLET = "focal.share_of_wallet_mean"
MODEST = 0.03  # the largest change in share of wallet still called modest
POINTS_DESIGNS = ("points", "coalition", "co-branded card")
COPIES = ("points", "points, one rival copies", "points, both rivals copy")
PARTNERS = ("firm[PetrolCo].revenue", "firm[StoreCo].revenue")


def _designs(results: pd.DataFrame) -> list[str]:
    if FACTOR not in results.columns:
        return []
    column = results[FACTOR]
    levels = column.cat.categories if hasattr(column, "cat") else dict.fromkeys(column)
    return [str(x) for x in levels if str(x) != REFERENCE]


def _points(values: np.ndarray) -> str:
    c = interval(values * 100.0)
    return f"{c['mean']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] points"


def programme_return(results: pd.DataFrame, design: str) -> float:
    """Incremental profit over what the design spent: programme cost plus member discounts, less fees."""
    gain = paired(results, "focal.profit", design, REFERENCE, factor=FACTOR)
    spent = (mean(results, "focal.programme_cost_total", **{FACTOR: design})
             + mean(results, "focal.member_discounts_total", **{FACTOR: design})
             - mean(results, "focal.programme_fees_total", **{FACTOR: design}))
    return float(gain.mean() / spent) if gain.size and spent > 0 else float("nan")


@register_findings("programme_designs")
def programme_findings(results: pd.DataFrame, experiment) -> list[dict]:
    designs = _designs(results)
    if not designs:
        return []
    checks = []
    wallet = {d: paired(results, WALLET, d, REFERENCE, factor=FACTOR) for d in designs}
    wallet = {d: v for d, v in wallet.items() if v.size}
    if wallet:
        largest = max(wallet, key=lambda d: abs(wallet[d].mean()))
        checks.append({"effect": "programme effects are modest: no design moves share of wallet by more than "
                                 f"{MODEST * 100:.0f} points",
                       "holds": all(abs(v.mean()) <= MODEST for v in wallet.values()),
                       "evidence": f"largest: {largest} {_points(wallet[largest])}"})
    npv = {d: paired(results, NPV, d, REFERENCE, factor=FACTOR) for d in designs}
    npv = {d: v for d, v in npv.items() if v.size}
    if npv:
        gains = [d for d, v in npv.items() if above_zero(v)]
        losses = [d for d, v in npv.items() if below_zero(v)]
        checks.append({"effect": "and heterogeneous: some designs pay, others lose money",
                       "holds": bool(gains and losses),
                       "evidence": "; ".join(f"{d} {money_text(v)} (return {programme_return(results, d):+.2f})"
                                             for d, v in npv.items())})
    if set(COPIES) <= set(designs):
        gains = [paired(results, REVENUE, d, REFERENCE, factor=FACTOR) for d in COPIES]
        eroded = paired(results, REVENUE, COPIES[0], COPIES[2], factor=FACTOR)
        means = [g.mean() for g in gains]
        checks.append({"effect": "copying erodes the first mover's gain",
                       "holds": above_zero(eroded) and means[0] >= means[1] >= means[2],
                       "evidence": "revenue gain " + ", ".join(f"{d}: {money_text(g)}" for d, g in zip(COPIES, gains,
                                                                                                       strict=True))
                                   + f"; alone minus both copying {money_text(eroded)}"})
    have = [d for d in POINTS_DESIGNS if d in designs]
    if have:
        rates = {d: mean(results, "focal.breakage_rate", **{FACTOR: d}) for d in have}
        checks.append({"effect": "breakage of points designs lies in the reported 10-35%",
                       "holds": all(0.10 <= r <= 0.35 for r in rates.values()),
                       "evidence": ", ".join(f"{d} {r:.3f}" for d, r in rates.items())})
    if "coalition" in designs:
        gains = {p: paired(results, p, "coalition", REFERENCE, factor=FACTOR) for p in PARTNERS}
        gains = {p: v for p, v in gains.items() if v.size}
        if gains:
            checks.append({"effect": "a coalition brings its partners cross-shopping",
                           "holds": all(above_zero(v) for v in gains.values()),
                           "evidence": "; ".join(f"{p.split('[')[1].split(']')[0]} revenue {money_text(v)}"
                                                 for p, v in gains.items())})
    return checks


@register_figure("programme_designs")
def programme_figure(results: pd.DataFrame, experiment, folder: Path) -> Path:
    """Three panels, one bar per design with its 95% interval: incremental NPV (with the probability of a loss),
    change in share of wallet, and change in the retention of the firm's customers."""
    plt, _ = style()
    designs = _designs(results)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    panels = ((NPV, 1e-3, f"NPV with the design minus without ({thousands(experiment)})", "Incremental value"),
              (WALLET, 100.0, "share of wallet, change (points)", "Share of wallet"),
              ("focal.cohort_retention", 100.0, "customers kept to the end, change (points)", "Retention"))
    for ax, (outcome, scale, ylabel, title) in zip(axes, panels, strict=True):
        for j, d in enumerate(designs):
            diff = paired(results, outcome, d, REFERENCE, factor=FACTOR) * scale
            if not diff.size:
                continue
            c = interval(diff)
            colour = "C2" if c["ci_low"] > 0 else ("C3" if c["ci_high"] < 0 else "C7")
            ax.barh(j, c["mean"], xerr=[[c["mean"] - c["ci_low"]], [c["ci_high"] - c["mean"]]], capsize=3,
                    color=colour)
            if outcome == NPV:
                ax.annotate(f"P(loss) {float((diff < 0).mean()):.2f}", (0, j), xytext=(4, -4),
                            textcoords="offset points", fontsize=7)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(designs)), designs if ax is axes[0] else [""] * len(designs), fontsize=9)
        ax.invert_yaxis()
        ax.set(xlabel=ylabel, title=title)
    fig.suptitle("Loyalty programme designs against no programme, same market and draws "
                 f"(mean and 95% CI over {experiment.replications} replications)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(folder) / "programme_designs.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
