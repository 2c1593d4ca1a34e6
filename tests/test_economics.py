"""Economics that scale with the market's size (``economics.reference_population``) and the currency label.

A market's overheads (fixed costs, marketing spend, investment budgets and attribute costs, programme launch costs,
campaign budgets) are totals for one market size. With a reference population they scale with the population
simulated, so that a small exploratory run and a run five times bigger give the same profit per customer within
sampling noise; without one they do not, and the small run's firms all lose money.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from loyaltysim import load_scenario, simulate
from loyaltysim.economics import SIZE_DEPENDENT, at_market_size, currency, size_factor
from loyaltysim.measures.outcomes import MEASURES, compute
from loyaltysim.scenario import ScenarioError, scenario_from_dict
from loyaltysim.units import parse_rate

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"
SMALL, BIG = 1000, 5000  # customers: the big run is five times the small one
# Profit per customer of the small run may differ from the big run's by this share of the big run's revenue per
# customer: for the whole market (measured at seed 1: 0.3%) and for each firm, whose share of 1,000 customers is
# noisier (measured: up to 4.3%, the focal firm's revenue per customer itself 11% lower in the small run).
MARKET_TOLERANCE, FIRM_TOLERANCE = 0.02, 0.10


def _baseline(**changes) -> dict:
    data = load_scenario(BASELINE).to_dict()
    data["time"]["horizon"], data["time"]["warmup"] = "52 weeks", "13 weeks"
    for path, value in changes.items():
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return data


def _with_every_amount(data: dict) -> dict:
    """``data`` with a programme, a campaign and an investment of the policy and of a rival, each with money."""
    data = copy.deepcopy(data)
    programme = {"kind": "points", "name": "Points", "launch_cost": 50000.0, "operating_cost": "2 per year"}
    campaign = {"kind": "win_back", "every": "4 weeks", "budget": 3000.0, "contact_cost": 5.0}
    investment = {"attribute": "perks", "budget": "40000 per year"}
    data["policy"].update(programmes=[programme], campaigns=[campaign], investments=[investment])
    rival = data["market"]["firms"][1]
    rival.update(programmes=[{**programme, "name": "Rival points"}], campaigns=[campaign], investments=[investment])
    return data


def _get(node, parts: list[str]) -> list:
    """Every value at a SIZE_DEPENDENT path (``[]``: each item of a list)."""
    if node is None:
        return []
    head, rest = parts[0], parts[1:]
    key = head.removesuffix("[]")
    value = node.get(key)
    if value is None:
        return []
    if head.endswith("[]"):
        return [v for item in value for v in _get(item, rest)]
    return _get(value, rest) if rest else [value]


def _amount(value) -> float:
    return parse_rate(value).value if isinstance(value, str) else float(value)


def test_without_a_reference_population_nothing_is_scaled():
    scenario = scenario_from_dict(_baseline(**{"market.customers.population": SMALL}))
    assert scenario.economics.reference_population is None
    assert size_factor(scenario) == 1.0
    assert at_market_size(scenario) is scenario


def test_at_the_reference_population_nothing_is_scaled():
    scenario = scenario_from_dict(_baseline(**{"economics.reference_population": 10000}))
    assert at_market_size(scenario) is scenario


def test_every_size_dependent_amount_scales_and_nothing_else_changes():
    data = _with_every_amount(_baseline(**{"market.customers.population": SMALL,
                                           "economics.reference_population": 10000}))
    declared = scenario_from_dict(data)
    scaled = at_market_size(declared)
    factor = SMALL / 10000
    assert size_factor(declared) == factor
    before, after = declared.to_dict(), scaled.to_dict()
    for path in SIZE_DEPENDENT:
        parts = path.split(".")
        old, new = _get(before, parts), _get(after, parts)
        assert old, f"the test scenario has no value at {path}"
        assert [_amount(v) for v in new] == pytest.approx([_amount(v) * factor for v in old], rel=1e-12), path
        assert [parse_rate(v).unit for v in new if isinstance(v, str)] == \
            [parse_rate(v).unit for v in old if isinstance(v, str)], path
        for where in (before, after):  # blank the scaled values: everything else must be equal
            _blank(where, parts)
    assert before == after


def _blank(node, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    key = head.removesuffix("[]")
    if node is None or node.get(key) is None:
        return
    if head.endswith("[]"):
        for item in node[key]:
            _blank(item, rest)
    elif rest:
        _blank(node[key], rest)
    else:
        node[key] = None


def test_the_model_books_the_scaled_amounts():
    """A programme's launch cost and a firm's fixed cost, as booked by the run, are the scaled amounts."""
    data = _with_every_amount(_baseline(**{"market.customers.population": 300,
                                           "economics.reference_population": 3000,
                                           "time.horizon": "8 weeks", "time.warmup": "2 weeks"}))
    result = simulate(scenario_from_dict(data), seed=1)
    firms = result.tables["firms"]
    focal = firms[firms["firm"] == "Focal"]
    weekly_fixed = parse_rate(data["market"]["firms"][0]["fixed_cost"]).per_step("week")
    assert focal["fixed_cost"].to_numpy() == pytest.approx(weekly_fixed / 10)
    programmes = result.tables["programmes"]
    assert programmes["launch_cost"].sum() == pytest.approx(2 * 50000.0 / 10)  # the focal firm's and the rival's
    assert result.scenario.economics.reference_population == 3000  # the run keeps the scenario as declared


def _per_customer(reference: int | None) -> dict[int, dict[str, float]]:
    """Profit and revenue per customer of the market, per firm and for the whole market, at SMALL and BIG."""
    out = {}
    for n in (SMALL, BIG):
        scenario = scenario_from_dict(_baseline(**{"market.customers.population": n,
                                                   "economics.reference_population": reference}))
        firms = simulate(scenario, seed=1).summary["firms"]
        row = {f"{f['firm']} profit": f["profit"] / n for f in firms}
        row |= {f"{f['firm']} revenue": f["revenue"] / n for f in firms}
        row["market profit"] = sum(f["profit"] for f in firms) / n
        row["market revenue"] = sum(f["revenue"] for f in firms) / n
        out[n] = row
    return out


def test_a_run_five_times_smaller_has_the_same_profit_per_customer_when_money_scales():
    """Baseline's costs are stated for its 10,000 customers: run at 1,000 and 5,000 with that reference, profit per
    customer agrees within MARKET_TOLERANCE of revenue per customer for the market and FIRM_TOLERANCE for each
    firm; without the reference, the small run's fixed costs and marketing per customer are five times the big
    run's, and its profit per customer is lower by more than half the revenue per customer (negative for every
    firm)."""
    whom = {"Focal": FIRM_TOLERANCE, "Rival A": FIRM_TOLERANCE, "Rival B": FIRM_TOLERANCE,
            "market": MARKET_TOLERANCE}
    scaled = _per_customer(10000)
    for who, tolerance in whom.items():
        small, big = scaled[SMALL][f"{who} profit"], scaled[BIG][f"{who} profit"]
        allowed = tolerance * scaled[BIG][f"{who} revenue"]
        assert abs(small - big) <= allowed, (who, small, big, allowed)
        assert small > 0 and big > 0, who
    unscaled = _per_customer(None)
    for who in whom:
        small, big = unscaled[SMALL][f"{who} profit"], unscaled[BIG][f"{who} profit"]
        assert big - small > 0.5 * unscaled[BIG][f"{who} revenue"], (who, small, big)
        assert small < 0, who


def test_per_customer_outcomes_divide_by_the_market_population():
    scenario = scenario_from_dict(_baseline(**{"market.customers.population": 300, "time.horizon": "8 weeks",
                                               "time.warmup": "2 weeks"}))
    result = simulate(scenario, seed=1)
    values = compute(["focal.profit", "focal.profit_per_customer", "focal.npv", "focal.npv_per_customer"],
                     scenario, result.tables, result.summary)
    assert values["focal.profit_per_customer"] == pytest.approx(values["focal.profit"] / 300)
    assert values["focal.npv_per_customer"] == pytest.approx(values["focal.npv"] / 300)
    assert not math.isnan(values["focal.npv_per_customer"])


def test_the_currency_labels_money_and_only_money():
    scenario = scenario_from_dict(_baseline())
    assert currency(scenario) == "money"
    named = scenario_from_dict(_baseline(**{"economics.currency": "EUR"}))
    assert currency(named) == "EUR"
    assert MEASURES["npv"].described("EUR") == "NPV of profit at the end of the warm-up (EUR)"
    assert MEASURES["npv_per_customer"].described("EUR").endswith("(EUR per customer)")
    assert MEASURES["npv"].described() == MEASURES["npv"].description
    assert MEASURES["npv"].description == "NPV of profit at the end of the warm-up (money)"
    assert MEASURES["share_end"].described("EUR") == "market share at the end (fraction)"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("reference_population", 0, "greater than or equal to 1"),
    ("reference_population", 2.5, "valid integer"),
    ("currency", "", "at least 1 character"),
    ("currency", "euros (EUR)", "should match pattern"),
    ("currency", "a very long currency name", "at most 12 characters"),
])
def test_bad_economics_are_named(field, value, message):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(_baseline(**{f"economics.{field}": value}))
    assert f"economics.{field}" in str(err.value) and message in str(err.value), str(err.value)
