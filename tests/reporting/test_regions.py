"""Where a finding holds over a sampled design (loyaltysim.reporting.regions): verdicts on intervals, PRIM's box
against a region known in advance, and the findings that return a region, on canned results (no simulation)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.registry import RETENTION_GAP
from loyaltysim.reporting import regions
from loyaltysim.reporting.findings import jones_sasser as js
from loyaltysim.reporting.findings import trap
from loyaltysim.reporting.findings import winback as wb
from loyaltysim.reporting.report import findings_text


def _factor(name, low=0.0, high=1.0, unit=None):
    return SimpleNamespace(name=name, bounds=[low, high], unit=unit, sampled=True)


def test_verdicts_are_judged_on_the_interval_against_the_bound():
    assert regions.verdict(0.1, 0.3, 0.0) == "holds"
    assert regions.verdict(-0.3, -0.1, 0.0) == "fails"
    assert regions.verdict(-0.1, 0.1, 0.0) == "unclear"
    assert regions.verdict(-0.3, -0.1, 0.0, above=False) == "holds"
    assert regions.verdict(3.5, 4.0, 3.0) == "holds" and regions.verdict(2.0, 3.2, 3.0) == "unclear"
    assert regions.verdict(float("nan"), 1.0, 0.0) == "unclear"


def _known_region(n=200, seed=3):
    """Points uniform in [0, 1]^3; the finding holds where a > 0.6 and b < 0.5, whatever c."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.random((n, 3)), columns=["a", "b", "c"])
    holds = (x["a"] > 0.6) & (x["b"] < 0.5)
    return x.assign(verdict=np.where(holds, "holds", "fails"), mean=0.0, ci_low=0.0, ci_high=0.0)


def test_prim_finds_a_region_known_in_advance_and_leaves_the_irrelevant_factor_free():
    region = regions.describe(_known_region(), "toy", "a claim", "a statistic", [_factor(f) for f in "abc"])
    box = region.box.set_index("factor")
    assert set(region.restricted) == {"a", "b"}  # c is not restricted: the finding does not hinge on it
    assert box.loc["a", "low"] == pytest.approx(0.6, abs=0.05)
    assert box.loc["b", "high"] == pytest.approx(0.5, abs=0.05)
    assert region.density >= regions.MIN_DENSITY and region.coverage > 0.8
    text = regions.summary(region)
    assert "holds where a at least 0.5" in text or "holds where a at least 0.6" in text
    assert "b at most 0.4" in text or "b at most 0.5" in text
    assert "no restriction on c" in text
    # the marginal shares show the threshold: nothing holds in a's lower half
    shares = regions.marginal_shares(region).set_index("factor")
    assert shares.loc["a", "q1 holds"].startswith("0%") and shares.loc["a", "q2 holds"].startswith("0%")


def test_a_finding_that_holds_everywhere_or_nowhere_has_no_box_to_peel():
    points = _known_region(40)
    everywhere = regions.describe(points.assign(verdict="holds"), "toy", "c", "s", [_factor(f) for f in "abc"])
    assert everywhere.restricted == [] and everywhere.coverage == 1.0
    assert "every point" in regions.summary(everywhere)
    nowhere = regions.describe(points.assign(verdict="fails"), "toy", "c", "s", [_factor(f) for f in "abc"])
    assert nowhere.box.empty and "no point" in regions.summary(nowhere)


def _trap_results(n_points=48, reps=4, seed=5):
    """Canned trap_region results: the latent strategy's gap to Average is +0.04 where rivals copy perks late
    (latent_lag above 100 weeks) and -0.04 where they copy them early; basic investment's gap is about 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_points):
        lag, cost = 4 + 156 * rng.random(), rng.random()
        for rep in range(reps):
            noise = rng.normal(0, 0.004)
            latent = (0.04 if lag > 100 else -0.04) + noise
            for strategy, gap in (("basic", 0.0 + noise), ("latent", latent)):
                rows.append({"latent_lag": lag, "cost": cost, "strategy": strategy, "budget": "100k",
                             "design": 2 * i + (strategy == "latent"), "replication": rep,
                             "outcome": RETENTION_GAP, "value": gap})
    return pd.DataFrame(rows)


def test_the_trap_region_is_where_rivals_copy_the_latent_attribute_late(tmp_path):
    experiment = SimpleNamespace(name="canned", findings=["trap_region"], spec=SimpleNamespace(
        factors=[_factor("latent_lag", 4, 160, "weeks"), _factor("cost"),
                 SimpleNamespace(name="strategy", sampled=False), SimpleNamespace(name="budget", sampled=False)]))
    region = trap.trap_region_findings(_trap_results(), experiment)
    assert region.restricted == ["latent_lag"]
    assert region.box.set_index("factor").loc["latent_lag", "low"] > 90
    late = region.points["latent_lag"] > 100
    assert (region.points.loc[late, "verdict"] == "holds").all()
    assert (region.points.loc[~late, "verdict"] == "fails").all()
    text = findings_text(_trap_results(), experiment, tmp_path)
    assert "### Where trap_region holds" in text and "latent_lag at least" in text
    assert (tmp_path / "regions_trap_region.csv").exists()
    assert (tmp_path / "figures" / "region_trap_region.png").stat().st_size > 10_000


def test_win_back_regions_judge_the_campaigns_incremental_npv_paired_by_replication():
    rows = []
    rng = np.random.default_rng(8)
    for _ in range(40):
        credit = 600 * rng.random()
        for rep in range(4):
            base = 1_000_000 + 50_000 * rng.normal()  # large differences between replications, shared by the arms
            arms = {"no campaign": base, "untargeted": base + 12_000 - 114 * credit,
                    "targeted": base + 11_700 - 40 * credit + rng.normal(0, 300)}
            for arm, npv in arms.items():
                rows += [{"credit": credit, "campaign": arm, "replication": rep, "outcome": "focal.npv", "value": npv},
                         {"credit": credit, "campaign": arm, "replication": rep, "outcome": "focal.winback_rate",
                          "value": 0.1}]
    results = pd.DataFrame(rows)
    experiment = SimpleNamespace(spec=SimpleNamespace(factors=[_factor("credit", 0, 600),
                                                               SimpleNamespace(name="campaign", sampled=False)]))
    loses = wb.winback_untargeted_region(results, experiment)
    # break-even at 12,000 / 114 = 105: the untargeted campaign loses money above it
    assert loses.box.set_index("factor").loc["credit", "low"] == pytest.approx(105, abs=40)
    pays = wb.winback_targeted_region(results, experiment)
    assert pays.box.set_index("factor").loc["credit", "high"] == pytest.approx(292, abs=40)


def test_the_jones_sasser_region_reads_the_ratio_of_mean_retentions_at_each_point():
    rows = []
    rng = np.random.default_rng(2)
    for _ in range(12):
        cut = rng.random()
        r5 = 0.95 if cut > 0.5 else 0.85  # a narrow top box: those who score 5 stay
        for rep in range(6):
            for k, v in ((4, 0.80), (5, r5 + rng.normal(0, 0.005))):
                rows.append({"cutpoint_5": cut, "replication": rep, "outcome": f"market.retention_by_score_{k}",
                             "value": v})
    experiment = SimpleNamespace(spec=SimpleNamespace(factors=[_factor("cutpoint_5")]))
    region = js.jones_sasser_region(pd.DataFrame(rows), experiment)
    wide = region.points["cutpoint_5"] > 0.5
    assert (region.points.loc[wide, "verdict"] == "holds").all()  # ratio 0.20 / 0.05 = 4
    assert (region.points.loc[~wide, "verdict"] == "fails").all()  # ratio 0.20 / 0.15 = 1.3


def test_a_box_the_points_do_not_support_is_not_reported_as_a_region():
    """Where the finding holds at random (no factor matters), any limit PRIM peels to is dropped by its quasi-p value,
    and the summary says no limit is supported instead of naming a region."""
    rng = np.random.default_rng(11)
    x = pd.DataFrame(rng.random((64, 3)), columns=["a", "b", "c"])
    points = x.assign(verdict=np.where(rng.random(64) < 0.7, "holds", "fails"), mean=0.0, ci_low=0.0, ci_high=0.0)
    region = regions.describe(points, "noise", "c", "s", [_factor(f) for f in "abc"])
    assert region.restricted == []
    text = regions.summary(region)
    assert "holds where" not in text and text.startswith(f"{(points['verdict'] == 'holds').sum()} of 64 points hold")
