"""Limited attention to marketing (model/mechanisms/attention.py): the rule, and its effect in a market."""

import copy

import numpy as np
import pytest

from loyaltysim import simulate
from loyaltysim.model.mechanisms.attention import noticed_reach
from loyaltysim.scenario import scenario_from_dict


def test_within_capacity_each_firm_is_noticed_with_its_reach():
    reach = np.array([0.1, 0.2, 0.05])
    assert noticed_reach(reach, np.array([True, True, True]), None) is reach
    assert noticed_reach(reach, np.array([True, True, True]), 0.4) is reach


def test_beyond_capacity_firms_share_what_is_noticed_by_share_of_voice():
    reach = np.array([0.1, 0.2, 0.1, 0.4])
    available = np.array([True, True, True, False])  # a firm not in the market does not count
    noticed = noticed_reach(reach, available, 0.2)
    np.testing.assert_allclose(noticed[available].sum(), 0.2, rtol=1e-15)
    np.testing.assert_allclose(noticed[:3] / noticed[:3].sum(), reach[:3] / reach[:3].sum(), rtol=1e-15)


def test_more_rivals_add_nothing_to_what_a_customer_notices_beyond_its_capacity():
    one = noticed_reach(np.full(3, 0.1), np.ones(3, bool), 0.2)
    two = noticed_reach(np.full(6, 0.1), np.ones(6, bool), 0.2)
    assert one.sum() == pytest.approx(two.sum()) == pytest.approx(0.2)


def _market(scenario_data, n_firms: int, capacity: str | None):
    """The small baseline with copies of its rivals up to ``n_firms`` firms, with or without limited attention."""
    data = scenario_data(market__customers__population=1500)
    data["time"]["horizon"], data["time"]["warmup"] = "78 weeks", "26 weeks"
    firms = data["market"]["firms"]
    while len(firms) < n_firms:
        rival = copy.deepcopy(firms[1 + (len(firms) - 1) % 2])
        rival["name"] = f"Rival {len(firms)}"
        firms.append(rival)
    if capacity is not None:
        data["market"]["customers"]["attention"] = {"enabled": True, "capacity": capacity}
    return scenario_from_dict(data)


def _churn(scenario, seed: int) -> float:
    """Defections (switches and exits) per customer-year after the warm-up."""
    s = simulate(scenario, seed=seed).summary
    years = (s["steps"] - s["warmup_steps"]) / 52
    return s["market"]["defections"] / (scenario.market.customers.population * years)


def test_limited_attention_curbs_the_rise_of_churn_with_the_number_of_rivals(scenario_data):
    """Doubling the rivals raises churn much less when customers notice only so many messages; with a capacity
    the firms' marketing never reaches, the mechanism changes nothing at all (the same numbers)."""
    seeds = range(3)
    rise = {}
    for capacity in (None, "0.3 per month"):
        three = np.array([_churn(_market(scenario_data, 3, capacity), s) for s in seeds])
        six = np.array([_churn(_market(scenario_data, 6, capacity), s) for s in seeds])
        rise[capacity] = six - three
    assert (rise[None] > 0).all() and (rise["0.3 per month"] > 0).all()  # more alternatives still tempt
    assert (rise["0.3 per month"] < 0.7 * rise[None]).all(), rise
    loose = [_churn(_market(scenario_data, 6, "10 per month"), s) for s in seeds]
    assert loose == [_churn(_market(scenario_data, 6, None), s) for s in seeds]
