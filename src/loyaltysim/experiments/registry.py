"""The figures and findings an experiment file may name (``figures = [...]``, ``findings = [...]``).

They are declared here, in the experiments layer, so that an experiment file is checked without importing the
reports: the reporting layer implements each declared name (``loyaltysim.reporting.report.register_figure`` and
``register_findings``) and a test checks that the names implemented and the names declared are the same. A
declaration also says what its function reads: the factors (columns of the results, whose levels it looks for) and
the outcomes; a test checks that the shipped experiments naming it have them.

Figures and findings added outside the package are declared when they are registered (or with
:func:`declare`), so an experiment file can name them once their module has been imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["figure", "findings"]

RETENTION_GAP = "focal.cohort_retention_annual - firm[Average].cohort_retention_annual"
ATTITUDE_GAP = "focal.cohort_attitude - firm[Average].cohort_attitude"
_BY_SCORE = tuple(f"market.retention_by_score_{s}" for s in range(1, 6))


@dataclass(frozen=True)
class Declared:
    """A figure or findings check an experiment file may name, and what it reads from the results."""

    name: str
    description: str
    factors: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()


FIGURES: dict[str, Declared] = {d.name: d for d in (
    Declared("trap", "cohort loyalty against basic satisfaction, basic and latent investment, with the "
             "average-loyalty level", ("strategy", "budget"),
             ("focal.satisfaction_basic_mean", "focal.cohort_retention_annual", "firm[Average].cohort_retention_annual",
              "focal.cohort_attitude", "firm[Average].cohort_attitude")),
    Declared("jones_sasser", "retention a year after the survey by score, one curve per market", ("market",),
             _BY_SCORE),
    Declared("winback", "win-back rate by discount, time since lapse and defection cause; incremental NPV",
             ("campaign",), ("focal.winback_rate", "focal.npv")),
    Declared("programme_designs", "each programme design against none: NPV, share of wallet, retention",
             ("programme",), ("focal.npv", "focal.share_of_wallet_mean", "focal.cohort_retention")),
    Declared("trap_imitation", "the trap's boundary map over rivals' imitation lags: retention gaps and verdicts",
             ("strategy", "imitation"), (RETENTION_GAP,)),
)}
"""The figures the package draws, by name."""

FINDINGS: dict[str, Declared] = {d.name: d for d in (
    Declared("satisfaction_trap", "the satisfaction trap: basic investment does not lift loyalty above the average "
             "level, latent investment does", ("strategy", "budget"),
             ("focal.satisfaction_basic_mean", RETENTION_GAP, ATTITUDE_GAP)),
    Declared("satisfaction_trap_ablation", "the trap holds in the full model and disappears without each mechanism",
             ("model", "strategy"), (RETENTION_GAP,)),
    Declared("robustness_trap", "the trap at the +-25% perturbations of the parameters", ("perturbation", "strategy"),
             (RETENTION_GAP,)),
    Declared("trap_imitation", "where the trap holds, flips or is unclear across rivals' imitation lags",
             ("strategy", "imitation"), (RETENTION_GAP,)),
    Declared("trap_region", "where the trap holds over a sampled design crossed with the strategies (PRIM's box)",
             ("strategy",), (RETENTION_GAP,)),
    Declared("jones_sasser", "Jones & Sasser, satisfied defectors, churn and hostages; the ablations' markets",
             ("market",), (*_BY_SCORE, "market.retention_step_4_to_5", "market.retention_rise_to_4",
                           "market.satisfied_switcher_share", "market.annual_churn")),
    Declared("jones_sasser_region", "where the defection ratio 4 : 5 reaches 3 (sampled design, PRIM)", (),
             ("market.retention_by_score_4", "market.retention_by_score_5")),
    Declared("satisfied_defectors_region", "where 60-85% of switchers were satisfied (sampled design, PRIM)", (),
             ("market.satisfied_switcher_share", "market.annual_churn")),
    Declared("robustness_jones_sasser", "Jones & Sasser and satisfied defectors at the +-25% perturbations",
             ("perturbation",), ("market.retention_by_score_4", "market.retention_by_score_5",
                                 "market.retention_step_4_to_5", "market.retention_rise_to_4",
                                 "market.satisfied_switcher_share")),
    Declared("winback", "the value of win-back campaigns: discount, timing, defection cause, targeting",
             ("campaign",), ("focal.winback_rate", "focal.npv", "focal.return_on_regain")),
    Declared("winback_cost", "the break-even credit per regained customer, untargeted and targeted", ("campaign",),
             ("focal.winback_rate", "focal.npv")),
    Declared("winback_untargeted_region", "where an untargeted win-back campaign loses money (sampled design, PRIM)",
             ("campaign",), ("focal.npv", "focal.winback_rate")),
    Declared("winback_targeted_region", "where a targeted win-back campaign pays (sampled design, PRIM)",
             ("campaign",), ("focal.npv", "focal.winback_rate")),
    Declared("winback_ablation", "each win-back effect disappears without its mechanism", ("arm",),
             ("focal.winback_rate", "focal.return_on_regain")),
    Declared("programme_designs", "loyalty programme effects: modest, heterogeneous, eroded by copies; breakage; "
             "coalition partners", ("programme",),
             ("focal.npv", "focal.revenue", "focal.profit", "focal.share_of_wallet_mean", "focal.programme_cost_total",
              "focal.member_discounts_total", "focal.programme_fees_total", "focal.breakage_rate",
              "firm[PetrolCo].revenue", "firm[StoreCo].revenue")),
)}
"""The findings checks the package makes, by name."""

SHIPPED = {"figure": frozenset(FIGURES), "findings": frozenset(FINDINGS)}
"""The names declared by the package itself (the rest were declared by code outside it)."""


def declared(kind: Kind) -> dict[str, Declared]:
    """The figures or the findings an experiment file may name."""
    return FIGURES if kind == "figure" else FINDINGS


def declare(kind: Kind, name: str, description: str = "", factors: tuple[str, ...] = (),
            outcomes: tuple[str, ...] = ()) -> Declared:
    """Declare a figure or findings check made outside the package (a name already declared is kept)."""
    table = declared(kind)
    return table.setdefault(name, Declared(name, description, tuple(factors), tuple(outcomes)))


def withdraw(kind: Kind, name: str) -> None:
    """Take back a declaration made with :func:`declare` (the package's own stay)."""
    if name not in SHIPPED[kind]:
        declared(kind).pop(name, None)
