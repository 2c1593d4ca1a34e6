"""Tests of the scheduled events (model/mechanisms/events.py): each kind acts as its schema says, in schedule order.

The price war is the event kind added last: it touched the schema (scenario.py) and this module only.
"""

import numpy as np
import pytest

from loyaltysim.model import LoyaltyMarket
from loyaltysim.model.mechanisms.events import HANDLERS
from loyaltysim.scenario import EVENT_KINDS, EVENT_TYPES, ScenarioError


def _prices(model: LoyaltyMarket, steps: int) -> np.ndarray:
    """[steps, F] each firm's price at the end of each step."""
    out = []
    for _ in range(steps):
        model.step()
        out.append([f.price for f in model.firms])
    return np.array(out)


def test_every_event_kind_has_one_handler():
    assert set(HANDLERS) == set(EVENT_TYPES)
    assert len(EVENT_KINDS) == len(set(EVENT_KINDS)) == len(EVENT_TYPES)


def test_a_price_war_cuts_the_price_for_its_duration_then_restores_it(make_scenario):
    war = {"kind": "price_war", "at": "5 weeks", "firm": "Rival B", "cut": 0.2, "duration": "4 weeks"}
    scenario = make_scenario(market__events=[war])
    model = LoyaltyMarket(scenario, seed=1)
    j = model.firm_names.index("Rival B")
    before = model.firms[j].price
    prices = _prices(model, 12)[:, j]
    np.testing.assert_array_equal(prices[:4], before)  # steps 1-4
    np.testing.assert_allclose(prices[4:8], before * 0.8)  # steps 5-8: the cut
    np.testing.assert_array_equal(prices[8:], before)  # from step 9: the price it had before
    assert model.firms[j].price_rise_step == 9  # the end of the cut is a price rise its customers notice


def test_a_rival_that_matches_prices_follows_a_price_war_down_and_stays_there(make_scenario):
    war = {"kind": "price_war", "at": "5 weeks", "firm": "Rival B", "cut": 0.2, "duration": "4 weeks"}
    follower = {"delay": "1 week", "match_price": True, "min_margin": 0.0}
    with_war = LoyaltyMarket(make_scenario(market__events=[war], market__firms__1__reaction=follower), seed=1)
    without = LoyaltyMarket(make_scenario(market__firms__1__reaction=follower), seed=1)
    a, b = _prices(with_war, 12), _prices(without, 12)
    cut = with_war.firms[2].price * 0.8
    assert a[5, 1] == pytest.approx(cut)  # Rival A matched the lower price a step after the cut
    assert a[-1, 1] == pytest.approx(cut)  # matching never raises a price: the war leaves the follower low
    np.testing.assert_array_equal(b[:, 1], b[0, 1])  # no war, no move


def test_a_price_war_outside_its_bounds_is_rejected(make_scenario):
    for cut in (0.0, 1.0, -0.1):
        war = {"kind": "price_war", "at": "5 weeks", "firm": "Rival B", "cut": cut, "duration": "4 weeks"}
        with pytest.raises(ScenarioError, match=r"market\.events\[0\]\.cut"):
            make_scenario(market__events=[war])
    war = {"kind": "price_war", "at": "5 weeks", "firm": "Nobody", "cut": 0.1, "duration": "4 weeks"}
    with pytest.raises(ScenarioError, match="unknown firm 'Nobody'"):
        make_scenario(market__events=[war])


def test_events_apply_in_schedule_order(make_scenario):
    """A price change scheduled at the same step as a later-listed one: the later one in the file wins."""
    events = [{"kind": "price_change", "at": "3 weeks", "firm": "Focal", "price": 20.0},
              {"kind": "price_change", "at": "3 weeks", "firm": "Focal", "price": 22.0},
              {"kind": "price_change", "at": "2 weeks", "firm": "Focal", "price": 40.0}]
    model = LoyaltyMarket(make_scenario(market__events=events), seed=1)
    prices = _prices(model, 4)[:, 0]
    assert prices[1] == 40.0 and prices[2] == 22.0 and prices[3] == 22.0
