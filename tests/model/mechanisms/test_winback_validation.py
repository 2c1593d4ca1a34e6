"""Validation of the win-back effects at a small size over several seeds (experiments/winback.toml runs them at
full size with 95% intervals): the same design points, 4 replications of 4,000 customers, effects checked on the
means of paired differences with tolerances, and each ablation's mechanism removed."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.reporting.findings import winback as fw

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"
SIZE = {"population": 4000, "replications": 4}
OUTCOMES = ["focal.winback_rate", "focal.return_on_regain", "focal.npv", "focal.winback_contacts"]


def _one(args) -> list[dict]:
    factor, label, scenario, spawn_key, root = args
    result = simulate(scenario, seed=root, spawn_key=spawn_key)
    values = outcomes.compute(OUTCOMES, scenario, result.tables, result.summary)
    return [{factor: label, "replication": spawn_key[0], "outcome": k, "value": v} for k, v in values.items()]


def _results(name: str, factor: str, labels: list[str]) -> pd.DataFrame:
    exp = load_experiment(EXPERIMENTS / name, overrides=SIZE)
    tasks = [(factor, p.labels[factor], p.scenario, (r,), exp.root_seed)
             for p in exp.design if p.labels[factor] in labels for r in range(exp.replications)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = [row for part in pool.map(_one, tasks) for row in part]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def winback() -> pd.DataFrame:
    return _results("winback.toml", "campaign", [
        "no campaign", "discount 10%", "discount 30%", "discount 50%", "lapsed 40-47 weeks",
        "price leavers (discount)", "service leavers (discount)", "targeted by value"])


@pytest.fixture(scope="module")
def ablation() -> pd.DataFrame:
    effects = [fw.ABLATIONS[e] for e in STRONG]
    return _results("winback_ablation.toml", "arm", [f"{m}: {a}" for m, a, b, _ in effects]
                    + [f"{m}: {b}" for m, a, b, _ in effects])


def _mean(results, outcome, a, b, factor="campaign") -> float:
    return float(fw.paired(results, outcome, a, b, factor=factor).mean())


def test_a_cheaper_offer_wins_back_more(winback):
    assert _mean(winback, fw.RATE, "discount 50%", "discount 10%") > 0.10
    assert _mean(winback, fw.RATE, "discount 30%", "discount 10%") > 0.03


def test_win_back_falls_with_time_since_lapse(winback):
    assert _mean(winback, fw.RATE, "discount 30%", "lapsed 40-47 weeks") > 0.02


def test_service_leavers_are_harder_to_win_back_than_price_leavers(winback):
    assert _mean(winback, fw.RATE, "price leavers (discount)", "service leavers (discount)") > 0.01


def test_targeting_by_value_returns_more_and_an_untargeted_campaign_loses_money(winback):
    # whether the targeted campaign pays depends on the credit per regained customer (experiments/winback_cost.toml:
    # at the shipped 400 it does not); that targeting loses much less than contacting every leaver does not
    assert _mean(winback, fw.ROI, "targeted by value", "discount 30%") > 0.3
    assert _mean(winback, fw.NPV, "discount 30%", "no campaign") < 0
    assert _mean(winback, fw.NPV, "targeted by value", "discount 30%") > 0


# At this size the gap between price and service leavers (about 0.05 in win-back rate, from about 130 contacts of
# each kind per run) cannot be told from half of it; its ablation is checked at full size by the experiment, and
# here through the state it acts through (test_failures_lower_the_beliefs_of_service_leavers_only_through_...).
STRONG = [e for e in fw.ABLATIONS if e != "service leavers are harder to win back than price leavers"]


@pytest.mark.parametrize("effect", STRONG)
def test_each_effect_disappears_without_its_mechanism(ablation, winback, effect):
    mechanism, a, b, outcome = fw.ABLATIONS[effect]
    full = {"lapsed 1-8 weeks": "discount 30%", "lapsed 40-47 weeks": "lapsed 40-47 weeks",
            "price leavers": "price leavers (discount)", "service leavers": "service leavers (discount)",
            "untargeted": "discount 30%"}
    with_mechanism = _mean(winback, outcome, full.get(a, a), full.get(b, b))
    without = _mean(ablation, outcome, f"{mechanism}: {a}", f"{mechanism}: {b}", factor="arm")
    assert abs(without) < 0.5 * abs(with_mechanism), (with_mechanism, without)


def _belief_gap_at_contact(failure_belief: float, influence: float, seed: int) -> float:
    """Mean (belief in the focal firm - its true quality index) of service leavers minus that of price leavers,
    when the win-back campaign contacts them."""
    from loyaltysim.model.rules import quality_index
    from loyaltysim.model.state import Cause
    from loyaltysim.scenario import load_scenario, scenario_from_dict

    data = load_scenario(EXPERIMENTS / "scenarios" / "winback.toml").to_dict()
    data["market"]["customers"].update(population=4000, failure_belief=failure_belief)
    data["market"]["network"]["influence"] = influence
    model = LoyaltyMarket(scenario_from_dict(data), seed=seed)
    gaps = {Cause.PRICE_RISE: [], Cause.SERVICE_FAILURE: []}
    seen = 0
    while model.steps < 110:
        model.step()
        for entry in model.campaigns.contact_log[seen:]:
            st, who = model.customers, entry["customer"]
            levels = np.array([f.levels for f in model.firms])
            quality = quality_index(st.weights[who], levels, st.expectation[who], model.kano,
                                    model.params.loss_aversion)[:, 0]
            for cause, gap in gaps.items():
                mine = entry["cause"] == cause
                gap.extend(st.perceived[who[mine], 0] - quality[mine])
        seen = len(model.campaigns.contact_log)
    return float(np.mean(gaps[Cause.SERVICE_FAILURE]) - np.mean(gaps[Cause.PRICE_RISE]))


def test_failures_lower_the_beliefs_of_service_leavers_only_through_their_mark_on_beliefs():
    """Service leavers are harder to win back because they think less of the firm than its offer deserves: their
    own failures and their neighbours' warnings lowered their belief. Without that mark the belief gap is gone."""
    with_mark = np.mean([_belief_gap_at_contact(1.0, 0.05, seed) for seed in (1, 2, 3)])
    without = np.mean([_belief_gap_at_contact(0.0, 0.0, seed) for seed in (1, 2, 3)])
    assert with_mark < -0.01, with_mark  # about -0.016: x quality weight 4 = 0.06 of utility, a fifth of 30% off
    assert abs(without) < 0.25 * abs(with_mark), (with_mark, without)
