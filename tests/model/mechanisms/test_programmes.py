"""Loyalty programmes: the points accounting, the firms' books, expiry, redemption, tiers, cashback, enrolment,
copying, the one-at-a-time path, validation and outcomes.

Model runs are small (a few hundred to 1,500 customers, 30-70 weeks or 90 days). Where a rule is about timing
(expiry, inactivity, FIFO redemption, tier reviews) a :class:`~loyaltysim.model.mechanisms.programmes.Book` is
driven by hand: its members and their purchases are set directly, so the expected numbers can be written down.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter

from loyaltysim.experiments.run import simulate
from loyaltysim.measures import outcomes
from loyaltysim.model.agents import Firm
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.model.mechanisms.programmes import Book
from loyaltysim.model.state import NO_FIRM, CustomerState
from loyaltysim.scenario import Customers, Programme, ScenarioError, scenario_from_dict
from loyaltysim.units import DAYS
from same_state import assert_same_arrays

PRICE = 30.0  # the focal firm's price in the baseline
YEAR = round(DAYS["year"] / DAYS["week"])  # 52 week steps

CARD = {"kind": "points", "name": "Card", "rewards": [{"points": 300, "value": 15}], "expiry": "12 weeks",
        "redemption": "25% per month", "enrolment": {"awareness": "50% per month"}}
TIERS = {"window": "8 weeks", "review": "4 weeks", "demotion": "one_level",
         "levels": [{"name": "Silver", "spend": 150, "visits": 6, "bonus_earn": 0.5},
                    {"name": "Gold", "spend": 400, "visits": 12, "bonus_earn": 1.0}]}
BONUSES = [{"kind": "double_points", "every": "4 weeks", "duration": "1 week"},  # steps 1, 5, 9, ...
           {"kind": "member_day", "every": "2 weeks", "start": "1 week", "duration": "1 week", "multiplier": 3.0,
            "discount": 0.1},  # steps 2, 4, 6, ...
           {"kind": "birthday", "points": 100}]
POINTS_CASES = {
    "fixed_life": CARD,
    "inactivity": {**CARD, "expiry": "6 weeks", "expire_on": "inactivity"},
    "no_expiry": {**CARD, "expiry": "0 weeks"},
    "two_rewards": {**CARD, "expiry": "8 weeks", "expected_breakage": 0.35,
                    "rewards": [{"points": 1000, "value": 60, "cost": 40}, {"points": 250, "value": 12, "cost": 9}]},
    "bonuses_and_tiers": {**CARD, "bonuses": BONUSES, "tiers": TIERS},
}


def _bonus_multiplier(t: int) -> float:
    """BONUSES' earn multiplier at step t, written out: double points on steps 1, 5, 9, ...; member day (x3) on
    even steps."""
    return 3.0 if t % 2 == 0 else 2.0 if t % 4 == 1 else 1.0


def _cheapest(spec: dict) -> dict:
    return min(spec["rewards"], key=lambda r: r["points"])


def _spend(st: CustomerState, price: np.ndarray, firm: int) -> np.ndarray:
    """What each customer spent at ``firm`` in the last step, net of personal and programme discounts."""
    here = st.step_firm == firm
    return np.where(here, st.step_units * price[firm] - st.step_discount - st.step_member_discount, 0.0)


def _ledger(model: LoyaltyMarket, name: str):
    return next(q for q in model.programmes.ledgers if q.name == name)


def _log(model: LoyaltyMarket) -> pd.DataFrame:
    return pd.DataFrame(model.programmes.log)


def _highest_met(spend: np.ndarray, visits: np.ndarray, levels: list[dict]) -> np.ndarray:
    """The highest tier (1-based; 0: none) whose spend or visits rule the window's totals meet."""
    out = np.zeros(spend.shape, np.int64)
    for k, level in enumerate(levels, start=1):
        met = np.zeros(spend.shape, bool)
        if level.get("spend") is not None:
            met |= spend >= level["spend"]
        if level.get("visits") is not None:
            met |= visits >= level["visits"]
        out = np.where(met, k, out)
    return out


def _review(tier: np.ndarray, qualified: np.ndarray, rule: str, review_step: bool) -> np.ndarray:
    """Promotion at once to the qualified level; at a review, demotion by the rule."""
    new = np.maximum(tier, qualified)
    if review_step:
        if rule == "one_level":
            new = np.where(qualified < new, np.maximum(qualified, new - 1), new)
        elif rule == "to_qualified":
            new = qualified.copy()
    return new


# ------------------------------------------------------------------------------------ a Book driven by hand


class Hand:
    """One programme of firm 0 (of two), every customer a member from the start, purchases set by hand."""

    def __init__(self, spec: dict, n: int, unit: str = "week", price: float = 10.0):
        spec = {"enrolment": {"awareness": "0% per week"}, **spec}  # nobody else joins; no fee: nobody leaves
        programme = TypeAdapter(Programme).validate_python(spec)
        firms = [SimpleNamespace(index=0, name="Focal", spec=SimpleNamespace(programmes=[programme]), reaction=None),
                 SimpleNamespace(index=1, name="Rival", spec=SimpleNamespace(programmes=[]), reaction=None)]
        self.book = Book(firms, [], n, unit, Customers(), np.random.default_rng(0))
        self.st = CustomerState.allocate(n, 2, 1)
        self.st.current[:] = 0
        self.q = self.book.ledgers[0]
        self.q.member[:] = True
        self.q.joined[:] = 0
        self.price = np.array([price, price])
        self.t = 0

    def step(self, units=None, visits=None) -> dict:
        """One step in which customer i buys ``units[i]`` (0: nothing) on ``visits[i]`` occasions; the log row."""
        self.t += 1
        n = len(self.st)
        units = np.zeros(n) if units is None else np.asarray(units, float)
        buys = units > 0
        st = self.st
        st.step_firm[:] = np.where(buys, 0, NO_FIRM)
        st.step_units[:] = units
        st.step_purchases[:] = np.where(buys, 1 if visits is None else np.asarray(visits), 0)
        st.step_discount[:] = 0.0
        st.step_member_discount[:] = 0.0
        st.last_buy[buys, 0] = self.t
        self.book.prepare(st, self.t, self.price, True)
        self.book.settle(st, self.t, self.price, 8, True)
        return self.book.log[-1]

    def balance(self) -> np.ndarray:
        return self.q.points.sum(axis=1)


# ------------------------------------------------------------------------------------ 1. points accounting


@pytest.mark.parametrize("case", list(POINTS_CASES))
def test_points_issued_equal_redeemed_plus_expired_plus_outstanding_at_every_step(make_scenario, case):
    spec = POINTS_CASES[case]
    model = LoyaltyMarket(make_scenario(market__customers__population=1000, policy__programmes=[spec]), seed=1)
    q = _ledger(model, "Card")
    for _ in range(30):
        model.step()
        cum = q.cum
        assert cum["issued"] == pytest.approx(cum["redeemed"] + cum["expired"] + q.points.sum(), rel=1e-12)
        assert (q.points >= -1e-9).all()
    log = _log(model)
    issued, redeemed, expired = (log[c].cumsum() for c in ("points_issued", "points_redeemed", "points_expired"))
    np.testing.assert_allclose(issued - redeemed - expired, log["points_outstanding"], rtol=1e-12, atol=1e-6)
    cheap = _cheapest(spec)
    per_point = cheap.get("cost", cheap["value"]) / cheap["points"]
    np.testing.assert_allclose(log["liability"], log["points_outstanding"] * per_point, rtol=1e-12)
    np.testing.assert_allclose(log["liability_net"],
                               log["liability"] * (1.0 - spec.get("expected_breakage", 0.2)), rtol=1e-12)
    # the run exercised the accounts
    assert log["points_issued"].sum() > 0 and log["points_redeemed"].sum() > 0 and log["redemptions"].sum() > 0
    assert (log["points_expired"].sum() > 0) == (spec["expiry"] != "0 weeks")
    if len(spec["rewards"]) == 1:  # one reward: every redemption is that reward
        reward = spec["rewards"][0]
        np.testing.assert_allclose(log["points_redeemed"], log["redemptions"] * reward["points"])
        np.testing.assert_allclose(log["reward_cost"], log["redemptions"] * reward.get("cost", reward["value"]))
    else:  # the redeemed points and their cost are a whole number of rewards each step
        big, small = sorted(spec["rewards"], key=lambda r: -r["points"])
        n_big = (log["points_redeemed"] - log["redemptions"] * small["points"]) / (big["points"] - small["points"])
        np.testing.assert_allclose(n_big, np.round(n_big), atol=1e-9)
        n_small = log["redemptions"] - n_big
        np.testing.assert_allclose(log["reward_cost"], n_big * big["cost"] + n_small * small["cost"])
        assert n_big.sum() > 0 and n_small.sum() > 0  # both rewards were redeemed


def test_points_issued_follow_the_earn_rule_with_bonuses_and_tier_bonus(make_scenario):
    spec = POINTS_CASES["bonuses_and_tiers"]
    model = LoyaltyMarket(make_scenario(market__customers__population=1000, policy__programmes=[spec]), seed=2)
    q, book = _ledger(model, "Card"), model.programmes
    bonus = np.array([0.0, 0.5, 1.0])
    birthdays = 0
    for t in range(1, 31):
        members = q.member.copy()  # earning is booked before the step's enrolment
        model.step()
        st, price = model.customers, model.seller_prices()
        gift = members & (book.birthday == t % YEAR)
        birthdays += int(gift.sum())
        earned = (np.where(members, _spend(st, price, 0), 0.0) * _bonus_multiplier(t) * (1.0 + bonus[q.status.tier])
                  + 100.0 * gift)
        assert book.log[-1]["points_issued"] == pytest.approx(earned.sum(), rel=1e-12), t
        # the member-day discount is given on member days only (the tiers give no discount)
        given = float(st.step_member_discount[st.step_firm == 0].sum())
        assert (given > 0) == (t % 2 == 0 and (members & (st.step_firm == 0)).any()), t
        assert given == pytest.approx(book.log[-1]["member_discounts"], rel=1e-12, abs=1e-9)
    assert birthdays > 0 and (q.status.tier == 2).any()


# ------------------------------------------------------------------------------------ 2. the firms' books

BOOKS_PROGRAMMES = [
    {**CARD, "tiers": {**TIERS, "levels": [{**TIERS["levels"][0], "discount": 0.05},
                                           {**TIERS["levels"][1], "discount": 0.1}]},
     "bonuses": BONUSES, "operating_cost": "4 per year", "launch_cost": 5000.0},
    {"kind": "club", "name": "Club", "discount": 0.05, "community_value": 200.0,
     "enrolment": {"fee": "12 per year", "awareness": "50% per month"}, "launch_cost": 800.0},
    {"kind": "cashback", "name": "Back", "rate": 0.02, "period": "4 weeks", "start": "3 weeks",
     "operating_cost": "2 per year"},
]


@pytest.fixture(scope="module")
def books_run(make_scenario):
    scenario = make_scenario(
        market__customers__population=1500, policy__programmes=BOOKS_PROGRAMMES,
        market__firms__1__reaction={"copy_programmes": True, "copy_after": "6 weeks"},
        market__firms__2__programmes=[{"kind": "tiers", "name": "Status", "enrolment": {"fee": "20 per year"},
                                       "operating_cost": "1 per year",
                                       "tiers": {"window": "8 weeks", "review": "4 weeks",
                                                 "levels": [{"name": "Plus", "spend": 100, "discount": 0.08}]}}])
    return simulate(scenario, seed=3)


def test_programme_costs_fees_and_discounts_land_in_the_running_firms_books(books_run):
    firms, log = books_run.tables["firms"], books_run.tables["programmes"]
    # Rival A copies both rivals' programmes
    assert set(log["programme"]) == {"Card", "Club", "Back", "Status", "Card (copied by Rival A)",
                                     "Club (copied by Rival A)", "Back (copied by Rival A)",
                                     "Status (copied by Rival A)"}
    log = log.assign(booked=log["reward_cost"] + log["cashback"] + log["operating_cost"] + log["launch_cost"])
    np.testing.assert_allclose(log["cost"], log["booked"], rtol=1e-12)
    by_firm = log.groupby(["firm", "step"])[["booked", "fees", "member_discounts"]].sum()
    books = firms.set_index(["firm", "step"])
    for name in ("Focal", "Rival A", "Rival B"):
        mine = books.loc[name]
        expected = by_firm.loc[name].reindex(mine.index, fill_value=0.0) if name in by_firm.index else None
        assert expected is not None, name
        np.testing.assert_allclose(mine["programme_cost"], expected["booked"], rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(mine["programme_fees"], expected["fees"], rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(mine["member_discounts"], expected["member_discounts"], rtol=1e-9, atol=1e-6,
                                   err_msg=name)
        # each firm paid for programmes, collected fees and gave member discounts
        assert mine["programme_cost"].sum() > 0 and mine["programme_fees"].sum() > 0, name
        assert mine["member_discounts"].sum() > 0, name
    costs = ["cost_of_goods", "recovery_cost", "marketing_cost", "fixed_cost", "acquisition_cost", "investment_cost",
             "campaign_cost", "programme_cost"]
    np.testing.assert_allclose(firms["profit"], firms["revenue"] + firms["programme_fees"] - firms[costs].sum(axis=1),
                               rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(firms["revenue"],
                               firms["units"] * firms["price"] - firms["discounts"] - firms["member_discounts"],
                               rtol=1e-12, atol=1e-6)
    # the launch costs are booked once, on the step after launch
    launches = log[log["launch_cost"] > 0][["programme", "step", "launch_cost"]].values.tolist()
    assert sorted(launches) == sorted([["Card", 1, 5000.0], ["Club", 1, 800.0],
                                       ["Card (copied by Rival A)", 7, 5000.0], ["Club (copied by Rival A)", 7, 800.0]])


# ------------------------------------------------------------------------------------ 3. expiry and redemption


@pytest.mark.parametrize("expiry", [
    "12 weeks", "13 weeks", "26 weeks",
    "52 weeks",
])
def test_points_expire_no_earlier_than_the_expiry_and_within_one_bucket_after(expiry):
    hand = Hand({"kind": "points", "name": "Card", "expiry": expiry, "redemption": "0% per week",
                 "rewards": [{"points": 1e9, "value": 1.0}]}, n=15)
    life, bucket = hand.q.life, hand.q.bucket
    earned_at = np.arange(1, 16)  # customer i earns 10 points at step i + 1 (every position in a bucket)
    gone_at = np.full(15, -1)
    for t in range(1, 16 + life + 2 * bucket + 2):
        before = hand.balance()
        row = hand.step(units=(earned_at == t).astype(float))
        after = hand.balance()
        gone_at[(before > 0) & (after == 0)] = t
        assert row["points_expired"] == pytest.approx(float(before[(before > 0) & (after == 0)].sum()))
    assert (gone_at > 0).all() and hand.q.points.sum() == 0.0
    age = gone_at - earned_at
    assert age.min() >= life, (expiry, age)
    assert age.max() <= life + bucket, (expiry, bucket, age)


def test_inactivity_expiry_wipes_a_balance_exactly_after_the_idle_time():
    hand = Hand({"kind": "points", "name": "Card", "expiry": "4 weeks", "expire_on": "inactivity",
                 "redemption": "0% per week", "rewards": [{"points": 12, "value": 1.0}]}, n=4)
    # customer 0 earns at step 1 only; customer 1 at steps 1 and 3; customer 2 earns 15 at step 1 and redeems 12
    # at step 3 (its only activity then); customer 3 never buys
    plan = {1: [1.0, 0.5, 1.5, 0.0], 3: [0.0, 0.5, 0.0, 0.0]}
    wiped: dict[int, float] = {}
    for t in range(1, 10):
        hand.q.redeem_p = 1.0 if t == 3 else 0.0
        before = hand.balance()
        row = hand.step(units=plan.get(t))
        after = hand.balance()
        if t == 3:
            assert row["points_redeemed"] == 12.0 and row["redemptions"] == 1
            np.testing.assert_allclose(after, [10.0, 10.0, 3.0, 0.0])
        for i in np.flatnonzero((before > 0) & (after == 0)):
            wiped[int(i)] = t
        if row["points_expired"]:
            assert row["points_expired"] == pytest.approx(float((before - after)[(before > 0) & (after == 0)].sum()))
    assert wiped == {0: 5, 1: 7, 2: 7}  # the last activity + 4 weeks: 1 + 4, 3 + 4, 3 + 4
    assert hand.q.cum["expired"] == pytest.approx(10.0 + 10.0 + 3.0)


def test_a_member_back_after_an_inactivity_wipe_keeps_the_points_it_earns():
    hand = Hand({"kind": "points", "name": "Card", "expiry": "4 weeks", "expire_on": "inactivity",
                 "redemption": "0% per week", "rewards": [{"points": 1000, "value": 1.0}]}, n=1)
    hand.step(units=[1.0])  # 10 points at step 1, wiped at step 5
    for _ in range(2, 8):
        hand.step()
    assert hand.balance()[0] == 0.0 and hand.q.cum["expired"] == 10.0
    row = hand.step(units=[1.0])  # back at step 8
    assert row["points_issued"] == 10.0
    assert row["points_expired"] == 0.0 and hand.balance()[0] == 10.0


def test_redemption_spends_the_oldest_points_first():
    hand = Hand({"kind": "points", "name": "Card", "expiry": "6 weeks", "redemption": "0% per week",
                 "rewards": [{"points": 100, "value": 1.0}]}, n=1)
    assert (hand.q.bucket, hand.q.life) == (1, 6)
    expired = {}
    for t in range(1, 12):
        hand.q.redeem_p = 1.0 if t == 4 else 0.0
        row = hand.step(units=[6.0] if t in (1, 3) else None)  # 60 points at steps 1 and 3
        expired[t] = row["points_expired"]
        if t == 4:
            assert row["points_redeemed"] == 100.0 and hand.balance()[0] == 20.0
    # the 100 points came from step 1's 60 and 40 of step 3's: nothing is left to expire at step 1 + 6, and the
    # 20 left of step 3's expire at step 3 + 6 (last in, first out would expire 20 at step 7 and nothing at 9)
    assert expired[7] == 0.0 and expired[9] == 20.0
    assert sum(expired.values()) == 20.0


def test_redemption_takes_the_largest_rewards_first_down_to_below_the_smallest():
    hand = Hand({"kind": "points", "name": "Card", "expiry": "0 weeks", "redemption": "0% per week",
                 "rewards": [{"points": 50, "value": 5.0, "cost": 4.0}, {"points": 200, "value": 25.0, "cost": 20.0}]},
                n=4)
    hand.step(units=[47.0, 4.0, 20.0, 5.0])  # 470, 40, 200 and 50 points
    hand.q.redeem_p = 1.0
    row = hand.step()
    # 470 = 2 x 200 + 1 x 50 (+ 20 left); 40 is below the smallest reward; 200 = 1 x 200; 50 = 1 x 50
    assert row["redemptions"] == 5
    assert row["points_redeemed"] == 450.0 + 200.0 + 50.0
    assert row["reward_cost"] == pytest.approx(2 * 20.0 + 4.0 + 20.0 + 4.0)
    np.testing.assert_allclose(hand.balance(), [20.0, 40.0, 0.0, 0.0])
    assert (hand.balance()[hand.balance() > 0] < 50.0).all()


# ------------------------------------------------------------------------------------ 4. reminders


def test_a_reminder_lowers_breakage_against_the_same_programme_without_one(make_scenario):
    rates = {}
    for reminder in (None, "4 weeks"):
        spec = {**CARD, "expiry": "13 weeks", "redemption": "10% per month"}
        if reminder:
            spec["reminder"] = reminder
        result = simulate(make_scenario(market__customers__population=1000, policy__programmes=[spec]), seed=4)
        log = result.tables["programmes"]
        expired, redeemed = log["points_expired"].sum(), log["points_redeemed"].sum()
        rates[reminder] = expired / (expired + redeemed)
        assert log["breakage_rate"].iloc[-1] == pytest.approx(rates[reminder])
    assert rates[None] > 0.2 and rates["4 weeks"] < 0.5 * rates[None], rates


# ------------------------------------------------------------------------------------ 5. tiers

HAND_TIERS = [{"name": "Silver", "spend": 100, "visits": 4}, {"name": "Gold", "spend": 300, "visits": 8}]


@pytest.mark.parametrize("rule", ["one_level", "to_qualified", "never"])
def test_tiers_promote_at_once_and_demote_only_at_reviews_by_the_rule(rule):
    n, window, review = 60, 4, 4
    hand = Hand({"kind": "tiers", "name": "Status", "tiers": {"window": f"{window} weeks", "review": f"{review} weeks",
                                                              "demotion": rule, "levels": HAND_TIERS}}, n=n)
    rng = np.random.default_rng(7)
    spend_hist, visit_hist = [], []
    tier = np.zeros(n, np.int64)
    promoted = demoted = 0
    gold = False
    for t in range(1, 41):
        active = rng.random(n) < np.where(np.arange(n) < n // 2, 0.8, 0.3) * (1.0 if t < 20 else 0.4)
        units = np.where(active, rng.choice([1.0, 3.0, 8.0], size=n), 0.0)
        visits = np.where(active, rng.integers(1, 4, size=n), 0)
        hand.step(units=units, visits=visits)
        spend_hist.append(units * 10.0)
        visit_hist.append(visits)
        s, v = np.sum(spend_hist[-window:], axis=0), np.sum(visit_hist[-window:], axis=0)
        new = _review(tier, _highest_met(s, v, HAND_TIERS), rule, t % review == 0)
        promoted += int((new > tier).sum())
        demoted += int((new < tier).sum())
        assert (new[new < tier] >= (tier[new < tier] - 1 if rule == "one_level" else 0)).all()
        tier = new
        gold |= bool((tier == 2).any())
        np.testing.assert_array_equal(hand.q.status.tier, tier, err_msg=f"step {t}")
    assert promoted > 0 and gold
    assert (demoted > 0) == (rule != "never"), (rule, demoted)


def test_a_tier_reached_by_its_visits_rule_is_given_even_if_a_lower_tier_is_not_met():
    levels = [{"name": "Silver", "spend": 100}, {"name": "Gold", "spend": 500, "visits": 3}]
    hand = Hand({"kind": "tiers", "name": "Status", "tiers": {"window": "13 weeks", "levels": levels}}, n=1)
    for _ in range(3):
        hand.step(units=[1.0])  # 10 a visit: 3 visits and 30 spent after 3 steps
    assert hand.q.status.tier[0] == 2  # Gold: its visits rule is met


def test_tiers_in_a_model_run_follow_the_qualification_window(make_scenario):
    levels = [{"name": "Silver", "spend": 150, "visits": 6}, {"name": "Gold", "spend": 400, "visits": 12}]
    spec = {"kind": "tiers", "name": "Status", "enrolment": {"awareness": "50% per month"},
            "tiers": {"window": "8 weeks", "review": "4 weeks", "demotion": "to_qualified", "levels": levels}}
    model = LoyaltyMarket(make_scenario(market__customers__population=1000, market__type="repertoire",
                                        policy__programmes=[spec]), seed=5)
    q = _ledger(model, "Status")
    assert q.status.bucket == 1 and q.status.q_spend.shape[1] == 8
    spend_hist, visit_hist = [], []
    moves = {"up": 0, "down": 0}
    for t in range(1, 31):
        members, tier = q.member.copy(), q.status.tier.astype(np.int64)
        model.step()
        st = model.customers
        bought = members & (st.step_firm == 0)
        spend_hist.append(np.where(bought, _spend(st, model.seller_prices(), 0), 0.0))
        visit_hist.append(np.where(bought, st.step_purchases, 0))
        s, v = np.sum(spend_hist[-8:], axis=0), np.sum(visit_hist[-8:], axis=0)
        np.testing.assert_allclose(q.status.q_spend.sum(axis=1), s, atol=1e-9)
        qualified = np.where(members, _highest_met(s, v, levels), 0)
        expected = _review(tier, qualified, "to_qualified", t % 4 == 0)
        np.testing.assert_array_equal(q.status.tier, expected, err_msg=f"step {t}")
        moves["up"] += int((expected > tier).sum())
        moves["down"] += int((expected < tier).sum())
        if t % 4:
            assert (q.status.tier >= tier).all()  # no demotion between reviews
    assert moves["up"] > 0 and moves["down"] > 0, moves


# ------------------------------------------------------------------------------------ 6. cashback

SCHEDULE = [{"days": 5, "rate": 0.04}, {"days": 2, "consecutive": True, "rate": 0.03}]
DAY_STEPS = {"time__step": "day", "time__horizon": "90 days", "time__warmup": "30 days"}


def test_a_cashback_schedule_on_week_steps_names_time_step(scenario_data):
    spec = {"kind": "cashback", "name": "Back", "schedule": SCHEDULE}
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(scenario_data(policy__programmes=[spec]))
    assert info.value.problems == [
        "policy.programmes[0].schedule: frequency conditions count days with a purchase, so they need "
        "time.step = \"day\" (this scenario steps in weeks)"]


def test_cashback_pays_the_highest_rate_met_on_the_period_spend(make_scenario):
    spec = {"kind": "cashback", "name": "Back", "rate": 0.01, "period": "1 month", "schedule": SCHEDULE,
            "enrolment": {"awareness": "80% per month"}}
    model = LoyaltyMarket(make_scenario(market__customers__population=1000, policy__programmes=[spec], **DAY_STEPS),
                          seed=6)
    q = _ledger(model, "Back")
    assert q.period == 30 and model.config.steps() == 90
    n = len(model.customers)
    spend, days, streak, best = np.zeros(n), np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    paid_at = {}
    used = {0.01: 0, 0.03: 0, 0.04: 0}
    for t in range(1, 91):
        members = q.member.copy()
        model.step()
        st = model.customers
        bought = members & (st.step_firm == 0)
        spend += np.where(bought, _spend(st, model.seller_prices(), 0), 0.0)
        days += bought
        streak = np.where(bought, streak + 1, 0)
        best = np.maximum(best, streak)
        row = model.programmes.log[-1]
        if t % 30:
            assert row["cashback"] == 0.0
            continue
        rate = np.where(days >= 5, 0.04, np.where(best >= 2, 0.03, 0.01))
        paid = np.where(members, rate * spend, 0.0)
        paid_at[t] = row["cashback"]
        assert row["cashback"] == pytest.approx(paid.sum(), rel=1e-12), t
        for r in used:
            used[r] += int((members & (spend > 0) & (rate == r)).sum())
        spend[:], days[:], streak[:], best[:] = 0.0, 0, 0, 0
    assert sorted(paid_at) == [30, 60, 90] and min(paid_at.values()) > 0
    assert all(used.values()), used  # every rate was paid to someone
    firms = model.datacollector.get_agenttype_vars_dataframe(Firm).reset_index()
    focal = firms[firms["AgentID"] == model.firms[0].unique_id]
    assert focal["programme_cost"].sum() == pytest.approx(sum(paid_at.values()))


# ------------------------------------------------------------------------------------ 7. enrolment and fees


def test_fees_are_charged_each_step_and_members_leave_at_renewal_when_the_benefit_is_below_the_fee(make_scenario):
    fee_year = 30.0
    spec = {**CARD, "expiry": "26 weeks", "enrolment": {"fee": f"{fee_year:g} per year", "awareness": "50% per month"}}
    model = LoyaltyMarket(make_scenario(market__customers__population=1500, time__horizon="70 weeks",
                                        policy__programmes=[spec]), seed=1)
    q, book = _ledger(model, "Card"), model.programmes
    fee_step = fee_year * 7 / 365.25
    assert q.fee == pytest.approx(fee_step) and q.fee * book.year == pytest.approx(fee_year * 364 / 365.25)
    left = stayed = 0
    for t in range(1, 71):
        members, joined = q.member.copy(), q.joined.copy()
        model.step()
        row = book.log[-1]
        assert row["fees"] == pytest.approx(row["members"] * fee_step, rel=1e-12)
        benefit = q.expected_benefit(book, model.customers, model.seller_prices())
        quit_ = members & ~q.member
        renewal = members & (t > joined) & ((t - joined) % YEAR == 0)
        assert not (quit_ & ~renewal).any(), f"left outside a renewal at step {t}"
        assert (benefit[quit_] < q.fee * YEAR).all()
        assert (benefit[renewal & q.member] >= q.fee * YEAR).all()
        new = ~members & q.member
        assert (benefit[new] >= book.effort[new] + q.fee * YEAR).all()
        assert row["quit"] == quit_.sum() and row["joined"] == new.sum()
        left += int(quit_.sum())
        stayed += int((renewal & q.member).sum())
    assert left > 0 and stayed > 0, (left, stayed)


def test_an_invitation_only_programme_has_only_invited_members(make_scenario):
    spec = {**CARD, "enrolment": {"awareness": "80% per month", "invitation": ["high"]}}
    model = LoyaltyMarket(make_scenario(market__customers__population=1000, policy__programmes=[spec]), seed=2)
    q = _ledger(model, "Card")
    for _ in range(20):
        model.step()
        assert (model.customers.value_tier[q.member] == 2).all()
    assert q.member.sum() > 20
    # without the invitation, other tiers join too
    open_ = LoyaltyMarket(make_scenario(market__customers__population=1000,
                                        policy__programmes=[{**spec, "enrolment": {"awareness": "80% per month"}}]),
                          seed=2).run(20)
    assert (open_.customers.value_tier[_ledger(open_, "Card").member] < 2).any()


def test_club_members_are_the_firms_customers_and_leave_with_it(make_scenario):
    club = {"kind": "club", "name": "Club", "community_value": 400.0, "discount": 0.05,
            "enrolment": {"awareness": "80% per month"}}
    model = LoyaltyMarket(make_scenario(
        market__customers__population=1500, time__horizon="40 weeks", policy__programmes=[club],
        market__customers__search_when_satisfied="30% per month",
        market__firms__2__programmes=[{**club, "name": "Circle"}]), seed=3)
    clubs = {0: _ledger(model, "Club"), 2: _ledger(model, "Circle")}
    ended = 0
    for _ in range(40):
        before = {f: q.member.copy() for f, q in clubs.items()}
        model.step()
        st = model.customers
        rows = {row["programme"]: row for row in model.programmes.log[-len(clubs):]}
        for f, q in clubs.items():
            assert (st.current[q.member] == f).all()  # contractual: members are the firm's customers
            gone = before[f] & (st.step_left == f)
            assert not q.member[gone].any()
            ended += int(gone.sum())
            assert rows[q.name]["quit"] == int((before[f] & ~q.member).sum())
        assert not (clubs[0].member & clubs[2].member).any()
        # the club bond: only at the firm whose club the customer belongs to
        member_here = np.zeros(len(st), bool)
        for f, q in clubs.items():
            member_here |= q.member & (st.current == f)
        assert not (st.club & ~member_here).any()
    assert ended > 0 and st.club.sum() > 0
    assert clubs[0].member.sum() > 20 and clubs[2].member.sum() > 20


# ------------------------------------------------------------------------------------ 8. copying


def test_a_rival_copies_a_programme_after_copy_after_and_pays_for_it(make_scenario):
    spec = {**CARD, "start": "2 weeks", "launch_cost": 1000.0, "operating_cost": "5 per year"}
    result = simulate(make_scenario(market__customers__population=1000, policy__programmes=[spec],
                                    market__firms__1__reaction={"copy_programmes": True, "delay": "8 weeks",
                                                                "copy_after": "6 weeks"}), seed=2)
    log, firms = result.tables["programmes"], result.tables["firms"]
    original, copy = log[log["programme"] == "Card"], log[log["programme"] == "Card (copied by Rival A)"]
    assert (original["firm"] == "Focal").all() and (copy["firm"] == "Rival A").all()
    assert original.loc[original["launched"], "step"].min() == 3  # launched after step 2
    assert copy.loc[copy["launched"], "step"].min() == 3 + 6  # 6 weeks after the original
    before = copy[copy["step"] <= 8]
    assert (before["members"] == 0).all() and (before["cost"] == 0).all() and (before["fees"] == 0).all()
    assert copy.set_index("step").loc[9, "launch_cost"] == 1000.0
    assert copy["members"].iloc[-1] > 0 and copy["points_issued"].sum() > 0
    rival = firms[firms["firm"] == "Rival A"].set_index("step")["programme_cost"]
    np.testing.assert_allclose(rival, copy.set_index("step")["cost"].reindex(rival.index), rtol=1e-12)
    focal = firms[firms["firm"] == "Focal"].set_index("step")["programme_cost"]
    np.testing.assert_allclose(focal, original.set_index("step")["cost"].reindex(focal.index), rtol=1e-12)
    # nobody else copies
    assert set(log["programme"]) == {"Card", "Card (copied by Rival A)"}


# ------------------------------------------------------------------------------------ 9. one at a time

EVERY_KIND = [
    {**CARD, "bonuses": BONUSES, "reminder": "3 weeks",
     "tiers": {**TIERS, "levels": [{**TIERS["levels"][0], "discount": 0.05, "priority": 0.5, "status_value": 1.0},
                                   {**TIERS["levels"][1], "discount": 0.1, "priority": 0.8, "status_value": 2.0}]}},
    {"kind": "tiers", "name": "Status", "tiers": {"window": "6 weeks", "review": "3 weeks",
                                                  "levels": [{"name": "Plus", "visits": 3, "discount": 0.05}]}},
    {"kind": "cashback", "name": "Back", "rate": 0.03, "period": "4 weeks"},
    {"kind": "club", "name": "Club", "discount": 0.05, "community_value": 200.0, "talk_boost": 3.0,
     "enrolment": {"fee": "6 per year"}},
]


@pytest.mark.parametrize("attainable", [False, True], ids=["progress pulls", "attainable rewards"])
@pytest.mark.parametrize("market", ["contractual", "repertoire"])
def test_one_at_a_time_equals_vectorized_with_every_kind_of_programme(make_scenario, market, attainable):
    sc = make_scenario(
        market__customers__attainable_rewards={"enabled": attainable},
        market__type=market, market__customers__population=300, policy__programmes=EVERY_KIND,
        market__customers__search_when_satisfied="90% per month",  # many choices, where the perks weigh
        market__customers__points_pressure=1.0,
        market__customers__variety_seeking={"mean": 0.3, "sd": 0.2, "min": 0.0, "max": 1.0},
        market__firms__1__reaction={"copy_programmes": True, "copy_after": "4 weeks"},
        market__firms__2__programmes=[{**CARD, "name": "Rival card", "expiry": "6 weeks",
                                       "expire_on": "inactivity"}])
    fast = LoyaltyMarket(sc, seed=3)
    slow = LoyaltyMarket(sc, seed=3, one_at_a_time=True)
    changed = set()
    start = {k: v.copy() for k, v in fast.customers.arrays().items()}
    for t in range(1, 21):
        fast.step()
        slow.step()
        changed |= assert_same_arrays(fast.customers.arrays(), slow.customers.arrays(), f"at step {t}", start)
        for a, b in zip(fast.programmes.ledgers, slow.programmes.ledgers, strict=True):
            np.testing.assert_array_equal(a.member, b.member, err_msg=f"{a.name} at step {t}")
            if a.has_points:
                np.testing.assert_allclose(a.points, b.points, rtol=0, atol=1e-9, err_msg=f"{a.name} at step {t}")
            if a.status is not None:
                np.testing.assert_array_equal(a.status.tier, b.status.tier, err_msg=f"{a.name} at step {t}")
    assert {"financial_cost", "club", "step_member_discount", "current", "wallet"} <= changed
    log_fast, log_slow = _log(fast), _log(slow)
    pd.testing.assert_frame_equal(log_slow, log_fast, check_exact=False, rtol=1e-12)
    assert len(log_fast["programme"].unique()) == 5 + 5  # four of Focal's, Rival B's card, and Rival A's copies
    assert log_fast["members"].gt(0).groupby(log_fast["programme"]).any().sum() >= 6
    assert log_fast["points_redeemed"].sum() > 0 and log_fast["cashback"].sum() > 0


# ------------------------------------------------------------------------------------ 10. bad configurations


def _only_problem(data: dict) -> str:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, source="case")
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


BAD = {
    "zero_reward_threshold": ({"policy__programmes": [{**CARD, "rewards": [{"points": 0, "value": 5}]}]},
                              ("policy.programmes[0].rewards[0].points: ", "threshold", "above 0", "(got 0)")),
    "zero_earn_rate": ({"policy__programmes": [{**CARD, "earn_rate": 0}]},
                       ("policy.programmes[0].earn_rate: ", "greater than 0")),
    "expiry_below_a_step": ({"policy__programmes": [{**CARD, "expiry": "3 days"}]},
                            ("policy.programmes[0].expiry: ", "'3 days'", "shorter than one step (1 week)")),
    "reminder_not_before_expiry": ({"policy__programmes": [{**CARD, "reminder": "12 weeks"}]},
                                   ("policy.programmes[0].reminder: ", "'12 weeks'", "not shorter than the expiry",
                                    "'12 weeks'")),
    "reminder_beyond_the_default_expiry": (
        {"policy__programmes": [{k: v for k, v in CARD.items() if k != "expiry"} | {"reminder": "60 weeks"}]},
        ("policy.programmes[0].reminder: ", "'60 weeks'", "not shorter than the expiry '52 weeks'")),
    "tier_window_zero": ({"policy__programmes": [{**CARD, "tiers": {"window": "0 weeks", "levels": [
        {"name": "Silver", "spend": 100}]}}]}, ("policy.programmes[0].tiers: ", "window", "longer than 0")),
    "discount_on_double_points": ({"policy__programmes": [{**CARD, "bonuses": [
        {"kind": "double_points", "discount": 0.1}]}]},
        ("policy.programmes[0].bonuses[0]: ", "only a member_day gives a discount")),
    "birthday_without_points": ({"policy__programmes": [{**CARD, "bonuses": [{"kind": "birthday"}]}]},
                                ("policy.programmes[0].bonuses[0]: ", "set points above 0")),
    "reminder_without_expiry": ({"policy__programmes": [{**CARD, "expiry": "0 weeks", "reminder": "2 weeks"}]},
                                ("policy.programmes[0].reminder: ", "never expire", "'0 weeks'")),
    "tier_without_rule": ({"policy__programmes": [{**CARD, "tiers": {"levels": [{"name": "Silver"}]}}]},
                          ("policy.programmes[0].tiers.levels[0]: ", "'Silver'", "spend", "visits")),
    "tiers_not_increasing": ({"policy__programmes": [{**CARD, "tiers": {"levels": [
        {"name": "Silver", "spend": 500}, {"name": "Gold", "spend": 300}]}}]},
        ("policy.programmes[0].tiers: ", "spend must be higher", "[500.0, 300.0]")),
    "duplicate_names_across_firms": ({"policy__programmes": [CARD],
                                      "market__firms__1__programmes": [{"kind": "club", "name": "Card"}]},
                                     ("programmes: ", "unique across the market", "['Card']")),
    "unknown_kind": ({"policy__programmes": [{"kind": "stamps", "name": "Card"}]},
                     ("policy.programmes[0]: ", "'stamps'", "'points'", "'tiers'", "'cashback'", "'club'")),
    "schedule_on_week_steps": ({"policy__programmes": [{"kind": "cashback", "name": "Back", "schedule": SCHEDULE}]},
                               ("policy.programmes[0].schedule: ", 'time.step = "day"', "weeks")),
    "schedule_longer_than_the_period": (
        {**DAY_STEPS, "policy__programmes": [{"kind": "cashback", "name": "Back", "period": "30 days",
                                              "schedule": [{"days": 31, "rate": 0.05}]}]},
        ("policy.programmes[0].schedule[0].days: ", "31 days", "'30 days'", "(30 days)")),
    "schedule_longer_than_the_default_period": (
        {**DAY_STEPS, "policy__programmes": [{"kind": "cashback", "name": "Back",
                                              "schedule": [{"days": 31, "rate": 0.05}]}]},
        ("policy.programmes[0].schedule[0].days: ", "31 days", "'1 month", "(30 days)")),
}


@pytest.mark.parametrize(("overrides", "needles"), list(BAD.values()), ids=list(BAD))
def test_a_bad_programme_gives_one_clear_problem(scenario_data, overrides, needles):
    problem = _only_problem(scenario_data(**overrides))
    assert problem.startswith(needles[0]), problem
    for needle in needles[1:]:
        assert needle in problem, problem


def test_the_cli_reports_a_bad_programme_cleanly(tmp_path):
    from cli_process import finish, start

    baseline = Path(__file__).resolve().parents[3] / "experiments" / "scenarios" / "baseline.toml"
    text = baseline.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("programmes = []"))
    bad = 'programmes = [{ kind = "cashback", name = "Back", schedule = [{ days = 3, rate = 0.05 }] }]'
    (tmp_path / "scenario.toml").write_text(text.replace(line, bad, 1), encoding="utf-8")
    proc = finish(start("run", "scenario.toml", "--out", tmp_path / "out", cwd=tmp_path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "1 problem(s)" in proc.stderr and "policy.programmes[0].schedule" in proc.stderr
    assert 'time.step = "day"' in proc.stderr
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


# ------------------------------------------------------------------------------------ 11. outcomes

OUTCOMES = ["programme_members_end", "points_issued_total", "breakage_rate", "liability_end", "programme_cost_total",
            "share_of_wallet_mean"]


def test_programme_outcomes_follow_the_tables(make_scenario):
    spec = {**CARD, "operating_cost": "3 per year", "launch_cost": 500.0}
    scenario = make_scenario(market__customers__population=1000, market__type="repertoire",
                             policy__programmes=[spec, BOOKS_PROGRAMMES[2]],
                             market__firms__1__reaction={"copy_programmes": True, "copy_after": "2 weeks"})
    result = simulate(scenario, seed=5)
    warm = scenario.warmup_steps()
    log, firms = result.tables["programmes"], result.tables["firms"]
    for firm, who in (("Focal", "focal"), ("Rival A", "firm[Rival A]")):
        values = outcomes.compute([f"{who}.{m}" for m in OUTCOMES], scenario, result.tables, result.summary)
        mine = log[(log["firm"] == firm) & (log["step"] > warm)]
        books = firms[(firms["firm"] == firm) & (firms["step"] > warm)]
        end = mine[mine["step"] == 30]
        assert len(end) == 2  # a points and a cashback programme each (Rival A's are the copies)
        expired, redeemed = mine["points_expired"].sum(), mine["points_redeemed"].sum()
        expected = {
            "programme_members_end": end["members"].sum(),
            "points_issued_total": mine["points_issued"].sum(),
            "breakage_rate": expired / (expired + redeemed),
            "liability_end": end["liability"].sum(),
            "programme_cost_total": books["programme_cost"].sum(),
            "share_of_wallet_mean": books["share_of_wallet"].mean(),
        }
        for m in OUTCOMES:
            assert values[f"{who}.{m}"] == pytest.approx(expected[m], rel=1e-12), (firm, m)
        assert expected["programme_members_end"] > 0 and expected["points_issued_total"] > 0
        assert 0 < expected["breakage_rate"] < 1 and expected["liability_end"] > 0
        # the cost total is the programmes' costs: the launch cost is in the warm-up, outside the period
        assert expected["programme_cost_total"] == pytest.approx(mine["cost"].sum(), rel=1e-12)
    plain = make_scenario(market__customers__population=300)
    bare = simulate(plain, seed=5)
    assert "programmes" not in bare.tables
    values = outcomes.compute([f"focal.{m}" for m in OUTCOMES], plain, bare.tables, bare.summary)
    for m in ("programme_members_end", "points_issued_total", "liability_end", "programme_cost_total"):
        assert values[f"focal.{m}"] == 0.0, m
    assert math.isnan(values["focal.breakage_rate"])
    focal = bare.tables["firms"]
    focal = focal[(focal["firm"] == "Focal") & (focal["step"] > plain.warmup_steps())]
    assert values["focal.share_of_wallet_mean"] == pytest.approx(focal["share_of_wallet"].mean(), rel=1e-12)


def test_a_programme_of_a_firm_that_enters_later_launches_when_it_enters(make_scenario):
    """Its launch cost is booked at entry, and nothing runs (no members, no cost) while it is out of the market."""
    sc = make_scenario(market__customers__population=600, time__horizon="20 weeks", time__warmup="2 weeks",
                       market__events=[{"kind": "entry", "at": "8 weeks", "firm": "Rival B"}],
                       market__firms__2__programmes=[{**CARD, "name": "Late", "launch_cost": 5000.0}])
    result = simulate(sc, seed=2)
    log = result.tables["programmes"]
    late = log[log["programme"] == "Late"].set_index("step")
    assert (late.loc[:7, "members"] == 0).all() and (late.loc[:7, "cost"] == 0).all()
    assert not late.loc[:7, "launched"].any() and late.loc[8:, "launched"].all()
    assert late["launch_cost"].sum() == 5000.0 and late.loc[8, "launch_cost"] == 5000.0
    firms = result.tables["firms"]
    rival = firms[firms["firm"] == "Rival B"].set_index("step")
    assert rival.loc[8, "programme_cost"] >= 5000.0  # in its books, and so in its profit:
    assert rival.loc[8, "profit"] <= rival.loc[8, "revenue"] + rival.loc[8, "programme_fees"] - 5000.0
