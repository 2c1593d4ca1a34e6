"""Validation of the published findings at a small size over several seeds, and the findings checks themselves.

Tolerances are the brief's bands widened by half (satisfied defectors 0.60-0.85 -> 0.5375-0.9125; hostage
retention 0.6 -> 0.5; the trap's +0.02 -> +0.03). Where a published finding no longer holds (Jones & Sasser's jump
with the baselines' survey instrument; churn within 15-30% in the competitive market, which has the baseline's
customers and churns 35% a year), the test records what holds instead. Each
validation test also runs a market where its effect should be absent and shows the same check failing there: the
hostages without switching costs, the jump without attitudinal loyalty, the trap when rivals copy every attribute.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.reporting.findings import trap as findings
from loyaltysim.reporting.report import FINDINGS, findings_text, load_figures
from loyaltysim.scenario import load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "experiments" / "scenarios"
SEEDS = range(4)
JS = ["market.retention_by_score_1", "market.retention_by_score_2", "market.retention_by_score_3",
      "market.retention_by_score_4", "market.retention_by_score_5", "market.retention_step_4_to_5",
      "market.retention_rise_to_4", "market.satisfied_switcher_share", "market.annual_churn"]


def _run(name: str, outcome_names: list[str], population: int, seed: int, **paths) -> dict[str, float]:
    data = load_scenario(SCENARIOS / name).to_dict()
    data["market"]["customers"]["population"] = population
    for path, value in paths.items():
        target = data
        *head, last = path.split("__")
        for part in head:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    scenario = scenario_from_dict(data)
    result = simulate(scenario, seed=7, spawn_key=(seed,))
    return outcomes.compute(outcome_names, scenario, result.tables, result.summary)


def _mean(runs: list[dict], name: str) -> float:
    return float(np.nanmean([r[name] for r in runs]))


@pytest.fixture(scope="module")
def competitive():
    return [_run("competitive.toml", JS, 3000, s) for s in SEEDS]


def _defection_ratio(runs: list[dict]) -> float:
    r4, r5 = _mean(runs, "market.retention_by_score_4"), _mean(runs, "market.retention_by_score_5")
    return (1 - r4) / (1 - r5)


NARROW = {"market__survey__noise": 0.008, "market__survey__cutpoints": [-0.075, -0.055, -0.03, 0.02]}


@pytest.fixture(scope="module")
def narrow():
    """The competitive market surveyed with the old instrument: a narrow, precise top box at the delight level."""
    return [_run("competitive.toml", JS, 3000, s, **NARROW) for s in SEEDS]


def test_jones_sasser_jump_appears_only_with_a_narrow_top_box(competitive, narrow):
    """What holds since the second behaviour pass (docs/findings.md, section 2): with the baselines' survey
    instrument customers who scored 4 defect less than twice as often as those who scored 5 (1.77 in the experiment;
    the brief's jump asks for at least 3), while the same market surveyed with the old instrument (answer noise 0.008,
    score 5's cutpoint at the delight level 0.02) shows a jump."""
    assert 1.1 <= _defection_ratio(competitive) <= 2.5
    assert _defection_ratio(narrow) >= 3.0


def test_satisfied_defectors_and_churn_in_the_same_market(competitive):
    assert 0.5375 <= _mean(competitive, "market.satisfied_switcher_share") <= 0.9125
    # 0.354 in the experiment: a volatile market, above the brief's 15-30% band (docs/findings.md, section 2)
    assert 0.30 <= _mean(competitive, "market.annual_churn") <= 0.45


def _held_hostage(runs: list[dict]) -> bool:
    """Dissatisfied customers held like satisfied ones: retention at the lowest scores (the lower of 1 and 2) at
    least 0.5 and within 0.1 of retention at 5 (the curve is flat)."""
    lowest = min(_mean(runs, f"market.retention_by_score_{s}") for s in (1, 2))
    return lowest >= 0.5 and _mean(runs, "market.retention_by_score_5") - lowest <= 0.1


def test_hostages_with_high_switching_costs_and_none_without():
    """The check passes with high switching costs and fails with none (retention at the lowest scores stays above
    0.5 without switching costs too, so the level alone could not tell them apart: the flatness does)."""
    held = [_run("competitive.toml", JS, 3000, s, market__customers__switching_cost=3.0) for s in SEEDS]
    free = [_run("competitive.toml", JS, 3000, s, market__customers__switching_cost=0.0,
                 market__customers__relational_cost="0 per year", market__customers__manager_bond=0.0)
            for s in SEEDS]
    assert _held_hostage(held)
    assert not _held_hostage(free)


def test_without_attitudinal_loyalty_the_jump_at_five_disappears(narrow):
    """The same jump check fails where the jump should be absent: with the same narrow instrument but no attitudinal
    loyalty, the ratio falls below 3 and the step from 4 to 5 to less than half."""
    runs = [_run("competitive.toml", JS, 3000, s, market__customers__attitude_gain="1000 years", **NARROW)
            for s in SEEDS]
    assert _defection_ratio(runs) < 3.0
    assert _mean(runs, "market.retention_step_4_to_5") < 0.5 * _mean(narrow, "market.retention_step_4_to_5")


def _trap_gaps(seeds, **paths) -> dict[str, dict[str, float]]:
    """Mean retention and attitude gaps to Average after 100k a year on coverage (basic) and on perks (latent)."""
    names = [findings.RETENTION_GAP, findings.ATTITUDE_GAP]
    gaps = {}
    for attribute in ("coverage", "perks"):
        investment = [{"attribute": attribute, "budget": "100000 per year", "start": "52 weeks"}]
        runs = [_run("trap.toml", names, 2000, s, policy__investments=investment, **paths) for s in seeds]
        gaps[attribute] = {n: _mean(runs, n) for n in names}
    return gaps


def _trap_holds(gaps: dict[str, dict[str, float]]) -> bool:
    basic, latent = gaps["coverage"], gaps["perks"]
    return (basic[findings.RETENTION_GAP] <= 0.03  # basic: at most the average level
            and latent[findings.RETENTION_GAP] > 0  # latent: above it
            and latent[findings.ATTITUDE_GAP] > max(basic[findings.ATTITUDE_GAP], 0))


def test_the_satisfaction_trap_holds_and_fails_when_rivals_copy_the_latent_attribute_too():
    """The trap in the shipped market (rivals copy coverage and speed, never perks), and its absence where rivals
    copy every attribute after the same 26 weeks: latent investment then leaves the focal firm below the average
    level (about -0.03 in retention), so the check fails. Where rivals copy nothing, basic investment lifts retention
    about 0.01 above the shipped market's at this size, too little to tell apart here
    (experiments/trap_imitation.toml maps it at full size)."""
    assert _trap_holds(_trap_gaps(SEEDS))
    copy_all = {"delay": "26 weeks", "match_price": False, "match_attributes": True}
    gaps = _trap_gaps(SEEDS[:2], market__firms__2__reaction=copy_all, market__firms__3__reaction=copy_all)
    assert gaps["perks"][findings.RETENTION_GAP] < 0
    assert not _trap_holds(gaps)


# --- the checks on canned results -------------------------------------------------------------------------------


def _tidy(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["strategy", "budget", "replication", "outcome", "value"])


def test_trap_checks_read_the_numbers_they_report():
    rows = []
    for rep in range(5):
        noise = 0.001 * rep
        for b, basic_gap, latent_gap, sat, attitude in (("0", -0.05, -0.05, -0.02, -0.01),
                                                        ("40k", -0.01, 0.0, -0.005, 0.0),
                                                        ("70k", 0.0, 0.02, -0.002, 0.002),
                                                        ("100k", 0.005, 0.04, -0.001, 0.0025)):
            rows += [("basic", b, rep, findings.RETENTION_GAP, basic_gap + noise),
                     ("basic", b, rep, findings.ATTITUDE_GAP, attitude + noise),
                     ("basic", b, rep, "focal.satisfaction_basic_mean", sat),
                     ("latent", b, rep, findings.RETENTION_GAP, latent_gap + noise),
                     ("latent", b, rep, findings.ATTITUDE_GAP, 10 * latent_gap + noise),
                     ("latent", b, rep, "focal.satisfaction_basic_mean", -0.02)]
    checks = findings.trap_checks(_tidy(rows), ["0", "40k", "70k", "100k"])
    assert all(c["holds"] for c in checks), checks
    # the same numbers with basic investment overshooting the average: the trap no longer holds
    overshoot = [(s, b, r, o, v + 0.1 if (s, o) == ("basic", findings.RETENTION_GAP) and b == "100k" else v)
                 for s, b, r, o, v in rows]
    checks = findings.trap_checks(_tidy(overshoot), ["0", "40k", "70k", "100k"])
    assert not next(c for c in checks if "retention rises at most" in c["effect"])["holds"]


def test_findings_are_registered_and_checked_by_experiment_files(tmp_path):
    load_figures()
    assert {"satisfaction_trap", "jones_sasser", "robustness_trap", "robustness_jones_sasser",
            "satisfaction_trap_ablation"} <= set(FINDINGS)
    text = (Path(__file__).resolve().parents[1] / "data" / "tiny_experiment.toml").read_text()
    bad = tmp_path / "bad.toml"
    scenario = (SCENARIOS / "baseline.toml").as_posix()
    text = text.replace('scenario = "../../experiments/scenarios/baseline.toml"', f'scenario = "{scenario}"')
    bad.write_text(text.replace("risk = true\n", 'risk = true\nfindings = ["no_such_findings"]\n', 1))
    with pytest.raises(Exception, match="unknown findings 'no_such_findings'"):
        load_experiment(bad)


def test_findings_text_lists_every_check():
    rows = []
    for rep in range(3):
        for market, r in (("competitive", [0.7, 0.72, 0.75, 0.8, 0.95]), ("hostage", [0.94, 0.95, 0.95, 0.96, 0.97])):
            rows += [(market, rep, f"market.retention_by_score_{s}", r[s - 1]) for s in range(1, 6)]
            rows += [(market, rep, "market.retention_step_4_to_5", r[4] - r[3]),
                     (market, rep, "market.retention_rise_to_4", r[3] - r[0]),
                     (market, rep, "market.satisfied_switcher_share", 0.7),
                     (market, rep, "market.annual_churn", 0.2)]
    tidy = pd.DataFrame(rows, columns=["market", "replication", "outcome", "value"])

    text = findings_text(tidy, SimpleNamespace(name="canned", findings=["jones_sasser"]))
    assert "## jones_sasser: 5 of 5 hold" in text
    assert "ratio 4.00" in text


def _campaign_results(rates: dict[str, float], npv: dict[str, float], roi: dict[str, float]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for r in range(10):
        noise = rng.normal(0, 0.002)
        for label in sorted(rates.keys() | npv.keys()):  # sorted: set order follows the per-process hash seed
            for outcome, table in (("focal.winback_rate", rates), ("focal.npv", npv), ("focal.return_on_regain", roi)):
                if label in table:
                    rows.append({"campaign": label, "replication": r, "outcome": outcome,
                                 "value": table[label] * (1 + noise) + rng.normal(0, 1e-3)})
    return pd.DataFrame(rows)


def test_winback_checks_say_what_holds_and_what_does_not():
    from loyaltysim.reporting.findings import winback as fw

    rates = {"discount 10%": 0.09, "discount 30%": 0.18, "discount 50%": 0.32, "lapsed 14-21 weeks": 0.17,
             "lapsed 27-34 weeks": 0.15, "lapsed 40-47 weeks": 0.13, "price leavers (discount)": 0.21,
             "service leavers (discount)": 0.16, "targeted by value": 0.18}
    npv = {"no campaign": 1000.0, "discount 30%": 900.0, "targeted by value": 1100.0}
    roi = {"discount 30%": 0.3, "targeted by value": 1.0}
    held = {c["effect"]: c["holds"] for c in fw.winback_findings(_campaign_results(rates, npv, roi), None)}
    assert len(held) == 5 and all(held.values()), held
    # every effect reversed: each check must fail whatever the noise
    reversed_rates = {"discount 10%": 0.32, "discount 30%": 0.18, "discount 50%": 0.09, "lapsed 14-21 weeks": 0.20,
                      "lapsed 27-34 weeks": 0.22, "lapsed 40-47 weeks": 0.25, "price leavers (discount)": 0.16,
                      "service leavers (discount)": 0.21, "targeted by value": 0.18}
    reversed_npv = {"no campaign": 1000.0, "discount 30%": 1100.0, "targeted by value": 900.0}
    reversed_roi = {"discount 30%": 1.0, "targeted by value": 0.3}
    held = {c["effect"]: c["holds"]
            for c in fw.winback_findings(_campaign_results(reversed_rates, reversed_npv, reversed_roi), None)}
    assert len(held) == 5 and not any(held.values()), held


def test_winback_ablation_checks_hold_only_when_the_effect_is_gone():
    from loyaltysim.reporting.findings import winback as fw

    mechanism, a, b, outcome = fw.ABLATIONS["a cheaper offer wins back more"]
    rng = np.random.default_rng(1)

    def results(gap, noise=0.01, runs=20):
        return pd.DataFrame([{"arm": f"{mechanism}: {label}", "replication": r, "outcome": outcome,
                              "value": 0.2 + (gap if label == a else 0.0) + rng.normal(0, noise)}
                             for r in range(runs) for label in (a, b)])

    assert [c["holds"] for c in fw.winback_ablation_findings(results(0.0), None)] == [True]
    assert [c["holds"] for c in fw.winback_ablation_findings(results(0.05), None)] == [False]
    # a noisy comparison whose 95% interval includes 0 does not show the effect gone: it lacks the power
    noisy = results(0.0, noise=0.08, runs=5)
    check = fw.winback_ablation_findings(noisy, None)[0]
    diff = noisy[noisy["arm"].str.endswith(a)]["value"].to_numpy() - noisy[noisy["arm"].str.endswith(b)][
        "value"].to_numpy()
    from loyaltysim.measures.intervals import interval

    assert interval(diff)["ci_low"] <= 0 <= interval(diff)["ci_high"] and not check["holds"]
    assert "power 0." in check["evidence"] and "TOST p" in check["evidence"]


def test_the_imitation_map_tells_where_the_trap_holds_flips_or_is_unclear():
    # basic and latent retention gaps to Average at three imitation settings, five replications each
    cases = {"basic 26w, latent never": (0.0, 0.05), "basic 26w, latent 13w": (0.0, -0.05),
             "basic never, latent never": (0.06, 0.05), "basic 13w, latent 26w": (0.0, 0.004)}
    rows = []
    for imitation, (basic, latent) in cases.items():
        for rep in range(5):
            noise = 0.002 * (rep - 2)
            rows += [(imitation, "basic", rep, findings.RETENTION_GAP, basic + noise),
                     (imitation, "latent", rep, findings.RETENTION_GAP, latent + 4 * noise)]
    tidy = pd.DataFrame(rows, columns=["imitation", "strategy", "replication", "outcome", "value"])
    verdicts = {i: findings.imitation_verdict(tidy, i)[0] for i in cases}
    assert verdicts == {"basic 26w, latent never": "holds", "basic 26w, latent 13w": "flips",
                        "basic never, latent never": "flips", "basic 13w, latent 26w": "unclear"}
    checks = findings.trap_imitation_findings(tidy, None)
    assert {c["effect"]: c["holds"] for c in checks} == {f"rivals copy {i}: the trap holds": v == "holds"
                                                         for i, v in verdicts.items()}


def test_the_imitation_map_judges_the_top_budget_and_reports_what_investing_changed():
    """With a budget of 0 in the results, the verdict is the highest budget's and the evidence says how far each
    investment moved the gap from where the focal firm stands without investing (paired by replication)."""
    rows = []
    for rep in range(5):
        noise = 0.002 * (rep - 2)
        for strategy, gaps in (("basic", {"0": -0.04, "100k": -0.040}), ("latent", {"0": -0.04, "100k": 0.03})):
            for budget, gap in gaps.items():
                rows.append(("basic 26w, latent never", strategy, budget, rep, findings.RETENTION_GAP, gap + noise))
    tidy = pd.DataFrame(rows, columns=["imitation", "strategy", "budget", "replication", "outcome", "value"])
    tidy["budget"] = pd.Categorical(tidy["budget"], categories=["0", "100k"], ordered=True)
    verdict, evidence = findings.imitation_verdict(tidy, "basic 26w, latent never")
    assert verdict == "holds"  # basic -0.04 (within +0.02), latent +0.03 (above 0), at 100k
    assert "without investment the gap is -0.040" in evidence
    assert "basic +0.000 [+0.000, +0.000], latent +0.070 [+0.070, +0.070]" in evidence
    assert "latent minus basic, paired by replication, +0.070" in evidence


def test_jones_sasser_checks_are_judged_on_intervals_not_point_estimates():
    from loyaltysim.reporting.findings import jones_sasser as js

    def results(r4, r5_spread):
        # retention r4 at score 4 and 0.90 +- r5_spread at 5 (alternating, so the mean is 0.90 exactly)
        rows = []
        for rep in range(20):
            r5 = 0.90 + (r5_spread if rep % 2 else -r5_spread)
            for k, v in ((1, 0.5), (2, 0.52), (3, 0.55), (4, r4), (5, r5)):
                rows.append(("competitive", rep, f"market.retention_by_score_{k}", v))
            rows += [("competitive", rep, "market.retention_step_4_to_5", r5 - r4),
                     ("competitive", rep, "market.retention_rise_to_4", r4 - 0.5),
                     ("competitive", rep, "market.satisfied_switcher_share", 0.7),
                     ("competitive", rep, "market.annual_churn", 0.2)]
        return pd.DataFrame(rows, columns=["market", "replication", "outcome", "value"])

    at_bound = results(0.70, 0.03)  # a ratio of means of exactly 3: a point estimate "at least 3" would pass
    clear = results(0.60, 0.005)  # a ratio of 4, measured tightly
    ratio = js.ratio_interval(at_bound, market="competitive")
    assert ratio["value"] == pytest.approx(3.0) and ratio["ci_low"] < 3.0 < ratio["ci_high"]
    assert js.jones_sasser_checks(at_bound, hostage=None)[0]["holds"] is False
    assert js.ratio_interval(clear, market="competitive")["ci_low"] > 3.5
    assert js.jones_sasser_checks(clear, hostage=None)[0]["holds"] is True
