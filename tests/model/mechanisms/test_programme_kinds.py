"""The kinds of loyalty programme one at a time, on hand-built state: each kind's ledger class and the status tiers,
driven directly (no market), so the expected numbers can be written down."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import TypeAdapter

from loyaltysim.model.mechanisms.programmes import (
    KINDS,
    Book,
    CashbackLedger,
    ClubLedger,
    CoalitionLedger,
    CobrandLedger,
    PointsLedger,
    Status,
    TiersLedger,
    ledger_class,
)
from loyaltysim.scenario import PROGRAMME_KINDS, Customers, Programme, Tiers

WEEK, YEAR = "week", 52


def _spec(**fields):
    return TypeAdapter(Programme).validate_python(fields)


def _ledger(cls, n: int = 4, partners: tuple[int, ...] = (), **fields):
    return cls(_spec(**fields), 0, fields["name"], 0, n, WEEK, YEAR, partners)


def test_the_registry_has_a_ledger_class_for_every_kind_of_the_schema():
    assert set(KINDS) == set(PROGRAMME_KINDS)
    for kind, cls in KINDS.items():
        assert ledger_class(kind) is cls
    # rivals copy a firm's own programmes, not the shared ones
    assert {kind for kind, cls in KINDS.items() if not cls.copyable} == {"coalition", "cobrand"}
    with pytest.raises(ValueError, match="'stamps'"):
        ledger_class("stamps")


def test_tiers_promote_at_once_and_demote_one_level_at_a_review():
    tiers = TypeAdapter(Tiers).validate_python({
        "window": "4 weeks", "review": "2 weeks", "demotion": "one_level",
        "levels": [{"name": "Silver", "spend": 100}, {"name": "Gold", "spend": 300, "visits": 5}]})
    status = Status(tiers, 3, WEEK)
    assert (status.window, status.bucket, status.q_spend.shape) == (4, 1, (3, 4))
    member = np.array([True, True, False])
    # step 1 (not a review: reviews fall on steps 2, 4, ... from a launch at step 1): Gold by spend, Gold by
    # visits alone, and a non-member who would qualify gets nothing
    status.qualify(1, 1, member, np.array([300.0, 0.0, 500.0]), np.array([1, 5, 9]))
    np.testing.assert_array_equal(status.tier, [2, 2, 0])
    # steps 2-5 without purchases: the window empties at step 5; reviews at 2 and 4 keep what the window still holds
    for t in (2, 3, 4):
        status.qualify(t, 1, member, np.zeros(3), np.zeros(3))
    np.testing.assert_array_equal(status.tier, [2, 2, 0])
    status.qualify(5, 1, member, np.array([100.0, 0.0, 0.0]), np.zeros(3))  # no review: no demotion yet
    np.testing.assert_array_equal(status.tier, [2, 2, 0])
    status.qualify(6, 1, member, np.zeros(3), np.zeros(3))  # review: one level down, not below what is met
    np.testing.assert_array_equal(status.tier, [1, 1, 0])
    status.end(np.array([True, False, False]))
    assert status.tier[0] == 0 and status.q_spend[0].sum() == 0.0
    assert status.counts(np.array([True, True, True])) == {"tier_Silver": 1, "tier_Gold": 0}


def test_points_are_spent_on_the_largest_rewards_first_and_taken_from_the_oldest_bucket():
    ledger = _ledger(PointsLedger, n=3, kind="points", name="Card", expiry="12 weeks",
                     rewards=[{"points": 100, "value": 5}, {"points": 250, "value": 15, "cost": 10}])
    assert (ledger.bucket, ledger.points.shape[1]) == (1, 14)
    totals = {"redemptions": 0.0}
    cost_points, reward_cost = ledger.spend_down(np.array([620.0, 99.0, 350.0]), totals)
    np.testing.assert_array_equal(cost_points, [600.0, 0.0, 350.0])  # 2 x 250 + 1 x 100; nothing; 250 + 100
    np.testing.assert_array_equal(reward_cost, [25.0, 0.0, 15.0])
    assert totals["redemptions"] == 5
    ledger.points[0, [2, 3, 4]] = [50.0, 30.0, 40.0]  # slot 4 is the current bucket: 2 (after it) is the oldest
    ledger.take_oldest_first(np.array([0]), np.array([70.0]), 4)
    np.testing.assert_array_equal(ledger.points[0, [2, 3, 4]], [0.0, 10.0, 40.0])


def test_a_coalition_earns_at_every_partner_and_settles_through_its_operator():
    firms = [SimpleNamespace(index=j, name=name, spec=SimpleNamespace(programmes=[]), reaction=None)
             for j, name in enumerate(("Focal", "Rival", "Petrol"))]
    firms[0].spec.programmes = [_spec(kind="coalition", name="Nectar", partners=["Petrol"], earn_rate=2.0,
                                      fee=0.01, reimbursement=0.008, rewards=[{"points": 500, "value": 5}])]
    book = Book(firms, [], 2, WEEK, Customers(), np.random.default_rng(0))
    ledger = book.ledgers[0]
    assert isinstance(ledger, CoalitionLedger) and ledger.sellers == (0, 2) and ledger.earn_at == {0: 2.0, 2: 2.0}
    ledger.by_seller = {0: {"issued": 1000.0, "redeemed": 500.0, "reward_cost": 5.0},
                        2: {"issued": 3000.0, "redeemed": 0.0, "reward_cost": 0.0}}
    totals = {"issued": 4000.0, "redeemed": 500.0, "operating_cost": 1.5, "launch_cost": 0.0, "fees": 2.0,
              "reward_cost": 5.0, "cashback": 0.0}
    ledger.account(book, 7, totals)
    cost, fees = book.firm_totals["programme_cost"], book.firm_totals["programme_fees"]
    np.testing.assert_allclose(cost, [10.0 + 5.0, 0.0, 30.0])  # fee per point issued, plus rewards redeemed there
    np.testing.assert_allclose(fees, [4.0, 0.0, 0.0])  # reimbursed per point redeemed there
    rows = {row["party"]: row for row in book.settlement}
    assert set(rows) == {"Focal", "Petrol", "Nectar operator"}
    operator = rows["Nectar operator"]
    assert (operator["received"], operator["paid"]) == pytest.approx((40.0, 4.0))
    assert (operator["running_cost"], operator["membership_fees"]) == (1.5, 2.0)
    # what partners pay the operator it receives, and the other way round
    partners = [rows["Focal"], rows["Petrol"]]
    assert sum(r["paid"] for r in partners) == pytest.approx(operator["received"])
    assert sum(r["received"] for r in partners) == pytest.approx(operator["paid"])


def test_a_cobrand_card_earns_and_discounts_at_its_partner_only_for_cardholders():
    ledger = _ledger(CobrandLedger, n=2, partners=(3,), kind="cobrand", name="Card", partner="Store",
                     earn_rate=1.0, partner_earn_rate=0.5, partner_discount=0.1)
    assert ledger.earn_at == {0: 1.0, 3: 0.5} and not ledger.copyable
    ledger.member[:] = [True, False]
    discounts = ledger.discounts(np.array([0.2, 0.0]))
    np.testing.assert_allclose(discounts[0], [0.2, 0.0])
    np.testing.assert_allclose(discounts[3], [1.0 - 0.8 * 0.9, 0.0])


def test_cashback_pays_at_the_period_end_at_the_highest_rate_met():
    ledger = _ledger(CashbackLedger, n=3, kind="cashback", name="Back", rate=0.01, period="3 weeks",
                     schedule=[{"days": 3, "rate": 0.05}, {"days": 2, "consecutive": True, "rate": 0.03}])
    ledger.launched_at = 1
    ledger.member[:] = [True, True, False]
    buys = [np.array([True, True, True]), np.array([True, False, True]), np.array([True, True, False])]
    totals = {"cashback": 0.0}
    for t, buyer in enumerate(buys, start=1):
        ledger.pay(t, buyer & ledger.member, np.where(buyer, 100.0, 0.0), totals)
    # customer 0 bought on 3 steps (5%), customer 1 on 2 steps not in a row (1%); the non-member earns nothing
    assert totals["cashback"] == pytest.approx(300.0 * 0.05 + 200.0 * 0.01)
    np.testing.assert_allclose(ledger.rate, [0.05, 0.01, 0.01])
    assert ledger.period_spend.sum() == 0.0 and ledger.days.sum() == 0


def test_a_club_member_who_leaves_the_firm_leaves_the_club():
    ledger = _ledger(ClubLedger, n=4, kind="club", name="Club")
    ledger.member[:] = [True, True, True, False]
    st = SimpleNamespace(current=np.array([0, 1, 0, 1]), last_buy=np.array([[9, 0], [2, 9], [5, 0], [0, 0]]))
    contractual = SimpleNamespace(st=st, t=10, contractual=True, lapse_steps=4)
    np.testing.assert_array_equal(ledger.departures(contractual), [False, True, False, False])
    repertoire = SimpleNamespace(st=st, t=10, contractual=False, lapse_steps=4)
    np.testing.assert_array_equal(ledger.departures(repertoire), [False, True, True, False])
    # other kinds keep their members when they leave
    assert PointsLedger.departures is TiersLedger.departures
    assert _ledger(TiersLedger, kind="tiers", name="Status",
                   tiers={"levels": [{"name": "Plus", "visits": 3}]}).departures(contractual) is None
