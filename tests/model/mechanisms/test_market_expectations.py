"""Expectations that adapt to the whole market (model/mechanisms/market_expectations.py): the reference level, the
update by hand, and expectations following the market's offers down as well as up."""

import dataclasses

import numpy as np
import pytest

from loyaltysim import LoyaltyMarket
from loyaltysim.model.mechanisms.market_expectations import reference_levels
from loyaltysim.model.rules import update_expectation
from loyaltysim.model.state import ATTRACTIVE, MUST_BE, ONE_DIMENSIONAL
from model.test_rules import PARAMS

LEVELS = np.array([[0.8, 0.2], [0.4, 0.6], [1.0, 1.0]])  # [F, A]; the third firm is not in the market
AVAILABLE = np.array([True, True, False])


def test_the_reference_mixes_the_best_offer_and_the_average_offer_customers_get():
    current = np.array([0, 1, 1, 1, -1, 2])  # three customers with firm 1, one with firm 0; one without a firm
    active = np.array([True, True, True, True, True, False])  # the customer of the absent firm is out
    average = 0.25 * LEVELS[0] + 0.75 * LEVELS[1]
    np.testing.assert_allclose(reference_levels(LEVELS, AVAILABLE, current, active, 0.0), average, rtol=1e-15)
    np.testing.assert_allclose(reference_levels(LEVELS, AVAILABLE, current, active, 1.0), [0.8, 0.6], rtol=1e-15)
    np.testing.assert_allclose(reference_levels(LEVELS, AVAILABLE, current, active, 0.25),
                               0.25 * np.array([0.8, 0.6]) + 0.75 * average, rtol=1e-15)
    nobody = np.full(6, -1)
    np.testing.assert_allclose(reference_levels(LEVELS, AVAILABLE, nobody, active, 0.0), [0.6, 0.4], rtol=1e-15)


KANO = np.array([MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE], np.int8)
P = dataclasses.replace(PARAMS, expect_alpha=0.0, latent_alpha=0.0, competitor_alpha=0.5)


def _update(expectation, market):
    e = np.array([expectation], dtype=float)
    return update_expectation(e, np.zeros((1, 3)), np.array([False]), np.array([True]), np.array([0.5, 0.5, 0.5]),
                              KANO, P, market)[0]


def test_known_needs_move_toward_the_market_both_ways_and_latent_needs_do_not():
    market = np.array([0.5, 0.5, 0.5])
    np.testing.assert_allclose(_update([0.7, 0.3, 0.9], market), [0.6, 0.4, 0.9], rtol=1e-15)


def test_without_the_mechanism_expectations_only_ratchet_up_toward_the_best_offer():
    np.testing.assert_allclose(_update([0.7, 0.3, 0.9], None), [0.7, 0.4, 0.9], rtol=1e-15)


def _expectation_after(make_scenario, seed: int, enabled: bool, level: float) -> float:
    """The population's mean expectation of speed (one-dimensional) 40 weeks after every firm sets it to
    ``level``."""
    events = [{"kind": "attribute_change", "at": "10 weeks", "firm": f, "attribute": "speed", "level": level}
              for f in ("Focal", "Rival A", "Rival B")]
    sc = make_scenario(market__customers__population=800, market__events=events, time__horizon="50 weeks",
                       market__customers__market_expectations={"enabled": enabled})
    model = LoyaltyMarket(sc, seed=seed).run()
    return float(model.customers.expectation[:, 1].mean())


@pytest.mark.parametrize("seed", [1, 2])
def test_expectations_follow_the_markets_offers_down_only_with_the_mechanism(make_scenario, seed):
    """When the whole market cuts an attribute, expectations fall faster with the mechanism (pulled down by the
    market as well as by the customer's own experience) than without it (by experience only: the best offer's pull
    never lowers them); when the whole market raises it, they rise either way."""
    start = 0.62  # about the mean expectation of speed at week 10 in the small baseline
    down = {on: _expectation_after(make_scenario, seed, on, 0.3) for on in (True, False)}
    up = {on: _expectation_after(make_scenario, seed, on, 0.9) for on in (True, False)}
    assert down[True] < down[False] - 0.04 and down[False] < start - 0.05, down
    assert up[True] > start + 0.15 and up[False] > start + 0.15, up
