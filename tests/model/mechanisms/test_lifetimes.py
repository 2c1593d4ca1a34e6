"""Heterogeneous lifetimes (ODD 3.3.32, model/mechanisms/lifetimes.py): each customer's own exit propensity, a
gamma-distributed hazard (Pareto/NBD) or a beta-distributed dropout after each purchase occasion (BG/NBD)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms.lifetimes import Lifetimes
from loyaltysim.scenario import Lifetimes as LifetimesSpec
from loyaltysim.scenario import ScenarioError

SEEDS = (1, 2, 3)


def test_hazards_are_gamma_with_the_given_mean_and_spread_and_leave_at_one_minus_exp():
    spec = LifetimesSpec(enabled=True, kind="hazard", hazard={"mean": "0.52 per year", "shape": 0.5})
    life = Lifetimes(spec, 200_000, "week", np.random.default_rng(1))
    mu = life.propensity
    assert mu.mean() == pytest.approx(0.01, rel=0.02)  # 0.52 a year is 0.01 a week
    assert mu.std() / mu.mean() == pytest.approx(1 / np.sqrt(0.5), rel=0.03)
    leave = life.leave_probability(np.zeros(mu.size, np.int32))
    np.testing.assert_allclose(leave, 1.0 - np.exp(-mu), atol=1e-15)  # (exactly: -expm1(-mu))
    # the hazard kind does not look at purchases
    np.testing.assert_array_equal(leave, life.leave_probability(np.full(mu.size, 5, np.int32)))


def test_dropout_is_beta_and_acts_once_per_purchase_occasion():
    spec = LifetimesSpec(enabled=True, kind="after_purchase", dropout={"a": 0.8, "b": 2.4})
    life = Lifetimes(spec, 200_000, "week", np.random.default_rng(2))
    p = life.propensity
    assert p.mean() == pytest.approx(0.8 / 3.2, rel=0.01)
    assert p.var() == pytest.approx(0.8 * 2.4 / (3.2**2 * 4.2), rel=0.03)
    for k in (0, 1, 3):
        np.testing.assert_allclose(life.leave_probability(np.full(p.size, k)), 1.0 - (1.0 - p) ** k, atol=1e-15)


def test_bad_lifetimes_are_refused_with_what_is_allowed():
    for bad, words in (({"kind": "forever"}, "hazard"), ({"hazard": {"shape": 0.0}}, "greater than 0"),
                       ({"dropout": {"a": -1.0}}, "greater than 0")):
        with pytest.raises((ScenarioError, ValueError), match=words):
            LifetimesSpec(enabled=True, **bad)


def _survival(make_scenario, seed: int, lifetimes: dict, weeks: int = 156) -> np.ndarray:
    """Share of the starting customers still in the market after each year (nobody comes back), checked against
    what the run's own hazards give, E[exp(-mu_i t)], within sampling noise."""
    sc = make_scenario(market__customers__population=3000, time__horizon=f"{weeks} weeks", time__warmup="4 weeks",
                       market__customers__reentry="0% per year", market__customers__lifetimes=lifetimes)
    model = LoyaltyMarket(sc, seed=seed)
    alive = []
    for t in range(1, weeks + 1):
        model.step()
        if t % 52 == 0:
            alive.append(model.customers.active.mean())
            assert alive[-1] == pytest.approx(np.exp(-model.lifetimes.propensity * t).mean(), abs=0.02)
    return np.array(alive)


def test_gamma_hazards_give_the_pareto_nbd_survival_and_a_hazard_that_falls_as_the_cohort_ages(make_scenario):
    """A cohort whose hazards are gamma-distributed (mean 0.3 a year, shape 0.3) survives as the Pareto/NBD says,
    S(t) = (1 + m t / s)^-s (within 0.035: 3,000 customers' own draws of so skewed a gamma add about 0.01 of noise
    to the binomial's), and the exit rate among survivors falls from year to year (the short-lived leave first);
    with nearly equal hazards (shape 1,000) at the same mean the exit rate stays flat and S(t) = exp(-m t)."""
    mixed = {"enabled": True, "kind": "hazard", "hazard": {"mean": "0.3 per year", "shape": 0.3}}
    equal = {"enabled": True, "kind": "hazard", "hazard": {"mean": "0.3 per year", "shape": 1000.0}}
    years = np.array([1.0, 2.0, 3.0]) * 52 / (365.25 / 7)  # 52-week years in calendar years
    for seed in SEEDS:
        s = _survival(make_scenario, seed, mixed)
        np.testing.assert_allclose(s, (1 + 0.3 * years / 0.3) ** -0.3, atol=0.035)
        exit_rates = 1 - s / np.concatenate([[1.0], s[:-1]])
        assert exit_rates[2] < 0.6 * exit_rates[0], exit_rates
        flat = 1 - (f := _survival(make_scenario, seed, equal)) / np.concatenate([[1.0], f[:-1]])
        assert 0.85 < flat[2] / flat[0] < 1.15, flat
        np.testing.assert_allclose(f, np.exp(-0.3 * years), atol=0.02)


def test_dropout_after_purchases_ends_heavy_buyers_lifetimes_sooner_and_a_hazard_does_not(make_scenario):
    """With dropout tied to purchase occasions (BG/NBD), the heaviest quarter of buyers leaves the market much more
    often within a year than the lightest quarter, and each customer's survival is E[(1 - p)^k] over the
    occasions k it made (Beta(a, b) moments: B(a, b + k) / B(a, b)); with a time hazard of similar size the two
    quarters leave alike."""
    dropout = {"enabled": True, "kind": "after_purchase", "dropout": {"a": 1.0, "b": 60.0}}
    hazard = {"enabled": True, "kind": "hazard", "hazard": {"mean": "0.6 per year", "shape": 1.0}}
    for seed in SEEDS:
        gaps = {}
        for name, spec in (("dropout", dropout), ("hazard", hazard)):
            sc = make_scenario(market__customers__population=3000, time__horizon="52 weeks",
                               time__warmup="4 weeks", market__customers__reentry="0% per year",
                               market__customers__lifetimes=spec)
            model = LoyaltyMarket(sc, seed=seed)
            occasions = np.zeros(3000, np.int64)  # drawn for every customer, in the market or not
            for t in range(52):
                model.step()
                if t < 51:  # the occasions of step t end lifetimes at the start of step t + 1
                    occasions += model.variates.occasions
            left = ~model.customers.active
            rate = model.customers.purchase_rate
            heavy, light = rate >= np.quantile(rate, 0.75), rate <= np.quantile(rate, 0.25)
            gaps[name] = left[heavy].mean() - left[light].mean()
            if name == "dropout":  # each customer survives its occasions with (1 - p_i)^k_i
                alive = model.customers.active.mean()
                assert alive == pytest.approx(((1 - model.lifetimes.propensity) ** occasions).mean(), abs=0.02)
                beta = np.exp(special.betaln(1.0, 60.0 + occasions) - special.betaln(1.0, 60.0))
                assert alive == pytest.approx(beta.mean(), abs=0.03)
        assert gaps["dropout"] > 0.25, gaps
        assert abs(gaps["hazard"]) < 0.06, gaps


def test_switching_lifetimes_on_shifts_no_other_draw(make_scenario):
    """The propensities come from their own stream: the population, the network and the step's variates are those
    of the same market without the mechanism."""
    off = LoyaltyMarket(make_scenario(), seed=4)
    on = LoyaltyMarket(make_scenario(market__customers__lifetimes={"enabled": True, "kind": "hazard"}), seed=4)
    for name in ("purchase_rate", "basket", "weights", "threshold", "current", "perceived", "expectation"):
        np.testing.assert_array_equal(getattr(off.customers, name), getattr(on.customers, name))
    off.step()
    on.step()
    for name in ("occasions", "u_search", "u_gumbel", "u_market", "u_life"):
        np.testing.assert_array_equal(getattr(off.variates, name), getattr(on.variates, name))
    assert off.lifetimes is None and on.lifetimes is not None


def test_the_purchase_on_arriving_is_not_followed_by_a_dropout_as_in_the_bgnbd(make_scenario):
    """A customer is alive at its first purchase (BG/NBD): with arrivals, the purchase made on arriving does not end
    the lifetime, whatever the dropout chance; its repeat purchases do. With dropout near certain and a trickle of
    repeat purchases, the customers still in the market after a year are those with no repeat occasion."""
    spec = LifetimesSpec(enabled=True, kind="after_purchase", dropout={"a": 60.0, "b": 1.0})
    life = Lifetimes(spec, 1000, "week", np.random.default_rng(3))
    p = life.propensity
    trial = np.array([1, 1, 0, 1] * 250, dtype=np.int32)
    k = np.array([1, 3, 2, 0] * 250, dtype=np.int32)  # (the last: arrived but went elsewhere, no purchase)
    np.testing.assert_allclose(life.leave_probability(k, trial), 1.0 - (1.0 - p) ** np.array([0, 2, 2, 0] * 250),
                               atol=1e-15)
    sc = make_scenario(market__customers__population=2000, time__horizon="60 weeks", time__warmup="1 week",
                       market__customers__reentry="0% per year", market__customers__lifetimes=spec.model_dump(),
                       market__customers__arrivals={"enabled": True, "over": "4 weeks"},
                       market__customers__purchase_rate={"mean": "0.02 per week", "shape": 2.0})
    model = LoyaltyMarket(sc, seed=5)
    occasions = np.zeros(2000, np.int64)
    for t in range(1, 61):
        model.step()
        if t < 60:
            arrived_now = model.arrivals.step == t
            occasions += model.variates.occasions - arrived_now  # the repeat occasions
    repeat = occasions > 0
    assert (~repeat).mean() > 0.2 and repeat.mean() > 0.2
    assert model.customers.active[~repeat].mean() == 1.0  # the trial purchase ended nobody's lifetime
    assert model.customers.active[repeat].mean() < 0.1  # a repeat purchase ended nearly every one
