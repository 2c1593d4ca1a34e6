"""Attainable rewards and spending headroom (model/mechanisms/programmes/attainability.py): the rules, and the
pressure a points programme puts on each member, by hand."""

import numpy as np

from loyaltysim import LoyaltyMarket
from loyaltysim.model.mechanisms.programmes.attainability import attainability, headroom

YEAR = 52


def test_a_reward_is_attainable_in_proportion_to_the_points_earned_within_a_points_life():
    need = np.array([500.0, 500.0, 500.0, 0.0, 500.0])
    points_year = np.array([4000.0, 1000.0, 0.0, 0.0, 2000.0])
    got = attainability(need, points_year, 13, YEAR)  # a quarter of a year's points before the first expire
    np.testing.assert_allclose(got, [1.0, 0.5, 0.0, 1.0, 1.0], rtol=1e-15)


def test_without_expiry_a_reward_is_attainable_by_any_member_who_earns():
    got = attainability(np.array([500.0, 500.0]), np.array([1.0, 0.0]), None, YEAR)
    assert got.tolist() == [1.0, 0.0]


def test_headroom_is_the_category_spend_not_yet_at_the_seller():
    np.testing.assert_allclose(headroom(np.array([0.0, 0.25, 1.0])), [1.0, 0.75, 0.0], rtol=1e-15)


PROGRAMME = {"kind": "points", "name": "Points", "expiry": "13 weeks", "rewards": [{"points": 1500.0, "value": 15.0}]}


def _members_500_points_short(make_scenario, enabled: bool, **overrides) -> LoyaltyMarket:
    """A market of 300 customers after three steps, every one made a member of the focal firm's points programme
    with 1,000 points: 500 short of its reward."""
    sc = make_scenario(market__customers__population=300, policy__programmes=[PROGRAMME],
                       market__customers__attainable_rewards={"enabled": enabled}, **overrides)
    model = LoyaltyMarket(sc, seed=4).run(3)
    ledger = model.programmes.ledgers[0]
    ledger.member[:] = True
    ledger.points[:] = 0.0
    ledger.points[:, 0] = 1000.0
    ledger._balance = None
    return model


def _pressure(make_scenario, market: str, enabled: bool):
    """The points pressure toward the focal firm in the next step of :func:`_members_500_points_short`, each
    customer's expected points a year (spend there x 1 point per unit of money), and its share of wallet there."""
    model = _members_500_points_short(make_scenario, enabled, market__type=market,
                                      market__customers__points_pressure=1.0)
    book, st = model.programmes, model.customers
    prices = model.seller_prices()
    perks, _ = book.prepare(st, model.steps + 1, prices, model.contractual)
    focal = model.config.focal_index
    return perks.pressure[:, focal], book.yearly_spend(st, prices, focal), book.wallet_share(st, focal)


def test_pressure_needs_an_attainable_reward_and_headroom_in_a_repertoire_market(make_scenario):
    off, _, _ = _pressure(make_scenario, "repertoire", False)
    on, points_year, share = _pressure(make_scenario, "repertoire", True)
    g2 = (1000.0 / 1500.0) ** 2
    np.testing.assert_allclose(off, g2, rtol=1e-12)  # one programme each: no dilution; progress alone
    expected = g2 * np.minimum(points_year * 13 / 52 / 500.0, 1.0) * (1.0 - share)
    np.testing.assert_allclose(on, expected, rtol=1e-12)
    light = points_year * 13 / 52 < 500.0
    assert light.any() and (~light).any()
    assert (share > 0.99).any() and (on[share > 0.99] < 0.01 * g2).all()  # all its spend there already: no pull
    assert (on <= off + 1e-15).all()


def test_in_a_contractual_market_only_attainability_scales_the_pressure(make_scenario):
    on, points_year, _ = _pressure(make_scenario, "contractual", True)
    g2 = (1000.0 / 1500.0) ** 2
    np.testing.assert_allclose(on, g2 * np.minimum(points_year * 13 / 52 / 500.0, 1.0), rtol=1e-12)


def _extra_occasions(make_scenario, enabled: bool) -> np.ndarray:
    """In the contractual :func:`_members_500_points_short`, the first 20 customers, all the focal firm's, buy as often
    as the others but tiny baskets, so they earn almost no points: the extra occasions the goal gradient gives each
    customer over 200 draws."""
    model = _members_500_points_short(make_scenario, enabled, market__customers__goal_gradient=1.0)
    book, st = model.programmes, model.customers
    st.basket[:20] = 1e-4
    st.current[:20] = model.config.focal_index
    prices = model.seller_prices()
    extras = np.zeros(len(st), int)
    for _ in range(200):
        _, extra = book.prepare(st, model.steps + 1, prices, model.contractual)
        extras += extra
    return extras


def test_the_goal_gradient_pulls_only_members_who_can_reach_the_reward(make_scenario):
    """Progress toward a reward pulls every member without the mechanism; with it, members whose spending earns too
    few points to get there before they expire are not pulled, and the others less the further the reward is out of
    reach."""
    off, on = _extra_occasions(make_scenario, False), _extra_occasions(make_scenario, True)
    assert off[:20].sum() > 200 and on[:20].sum() <= 0.01 * off[:20].sum()
    assert 0.3 * off[20:].sum() < on[20:].sum() < off[20:].sum()
