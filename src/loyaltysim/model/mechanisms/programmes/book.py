"""The book: every loyalty programme of a market, and the market-wide wiring of their step.

The :class:`Book` holds one ledger per programme (of its kind's class, :mod:`.registry`) and does two things each
step:

* **before customers step** (:meth:`Book.prepare`) it says what the programmes mean to each customer, as arrays the
  behaviour rules read (:class:`~loyaltysim.model.mechanisms.programmes.ledger.Perks`): the share of a firm's price
  its rewards are worth to the customer (programme value in utility), the discounts a member actually gets, the
  points pressure toward a firm whose next reward is near (goal gradient; Kivetz, Urminsky & Zheng 2006), priority
  service and the share of a service failure's damage a member forgives (Bolton, Kannan & Bramlett 2000). It writes
  the financial switching cost of a balance and a status at the customer's current firm, and club membership (a
  relational bond). It adds the extra purchase occasions that points pressure brings (drawn from the
  ``programmes`` stream, which runs without programmes never touch).
* **after customers step** (:meth:`Book.settle`) it books the step, ledger by ledger (each kind books what it
  does: points, tier promotion and demotion, cashback, departures), with enrolment and fees, operating cost, and
  who pays what (firms' totals and the settlement table); then logs each programme.

Each further membership weakens the pull of each: values are divided by ``1 + membership_dilution x (memberships -
1)`` ("customers hold many cards and are loyal to none"). A non-member counts an open programme at
``programme_attention`` of its value. Memberships other than a club's outlast a switch (the card stays in the
wallet), so they keep counting in the dilution.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from loyaltysim.model.arrays import select, take
from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.registry import ledger_class
from loyaltysim.model.mechanisms.programmes.views import SELLER_TOTALS, STEP_TOTALS, Outlook, Perks, Sales
from loyaltysim.model.rules import row_total
from loyaltysim.model.state import CustomerState
from loyaltysim.units import DAYS


class Book:
    """Every programme of a market, with the per-customer arrays the rules read.

    Sellers are numbered globally: the market's firms first (their own indices), then each category's outlets.
    """

    def __init__(self, firms, categories, n: int, unit: str, customers_spec, rng: np.random.Generator):
        self.year = round(DAYS["year"] / DAYS[unit])
        self.n = n
        self.n_firms = len(firms)
        self.categories = categories
        self.seller_names = [f.name for f in firms] + [name for c in categories for name in c.names]
        self.n_sellers = len(self.seller_names)
        self.rng = rng
        self.ledgers = self._open_ledgers(firms, n, unit)
        customers = customers_spec
        # traits drawn once, from the programmes stream: the effort of joining, and a birthday
        effort = customers.enrolment_effort
        self.effort = effort.mean + effort.sd * rng.standard_normal(n)
        if effort.min is not None or effort.max is not None:
            self.effort = np.clip(self.effort, effort.min, effort.max)
        self.birthday = rng.integers(0, self.year, n).astype(np.int32)
        self.goal_gradient = customers.goal_gradient
        self.pressure = customers.points_pressure
        self.dilution = customers.membership_dilution
        self.attention = customers.programme_attention
        self.attainable = customers.attainable_rewards.enabled
        self.loss_aversion = customers.loss_aversion
        self.talk = np.ones(n)
        self.discount_sum: np.ndarray | None = None  # each seller's programme discounts summed, from prepare
        self.log: list[dict] = []
        self.settlement: list[dict] = []
        self.firm_totals = {k: np.zeros(self.n_sellers) for k in ("programme_cost", "programme_fees")}
        # the per-customer perk arrays are kept from step to step: a programme writes perks only at its sellers'
        # columns (its firm, its partners, where its members earn), so only those are reset before a step; the
        # others stay as the first step left them (zero perks, nothing kept off the price)
        self._perk_columns = sorted({j for ledger in self.ledgers
                                     for j in (ledger.firm, *ledger.sellers, *(ledger.earn_at or ()))})
        self._perk_arrays: tuple | None = None
        # shares of wallet and spends, kept while one phase of a step (prepare, settle) runs: the state they are
        # computed from does not change within a phase
        self._memo: dict | None = None

    def _open_ledgers(self, firms, n: int, unit: str) -> list[Ledger]:
        """One ledger per programme, in order: each firm's own programmes, then the copies of rivals' own programmes
        (of the kinds that are copied) a firm with ``copy_programmes`` launches ``copy_after`` their launch."""
        index = {name: j for j, name in enumerate(self.seller_names)}
        ledgers: list[Ledger] = []
        for firm in firms:
            for spec in firm.spec.programmes:
                kind = ledger_class(spec.kind)
                ledgers.append(kind(spec, firm.index, spec.name, spec.start.steps(unit), n, unit, self.year,
                                    kind.partners_of(spec, index)))
        for firm in firms:
            if firm.reaction is None or not firm.reaction.copy_programmes:
                continue
            for rival in firms:
                if rival is firm:
                    continue
                for spec in rival.spec.programmes:
                    kind = ledger_class(spec.kind)
                    if not kind.copyable:
                        continue
                    start = spec.start.steps(unit) + firm.reaction.copy_after.steps(unit)
                    ledgers.append(kind(spec, firm.index, f"{spec.name} (copied by {firm.name})", start, n, unit,
                                        self.year))
        return ledgers

    # --- customers' spending, per seller -------------------------------------------------------------------
    def _seller(self, j: int):
        """(category, local index) of seller ``j``; category None for a market firm."""
        if j < self.n_firms:
            return None, j
        for cat in self.categories:
            if j < cat.base + len(cat.names):
                return cat, j - cat.base
        raise IndexError(j)

    def wallet_share(self, st: CustomerState, j: int) -> np.ndarray:
        """Each customer's share of wallet with seller ``j`` in its market or category: its decayed purchases there
        over its decayed purchases anywhere in that market (so after a switch it moves over gradually)."""
        if self._memo is not None and ("share", j) in self._memo:
            return self._memo[("share", j)]
        cat, k = self._seller(j)
        wallet = st.wallet if cat is None else cat.state.wallet
        total = row_total(wallet)
        share = np.divide(wallet[:, k], total, out=np.zeros(self.n), where=total > 0)
        if self._memo is not None:
            self._memo[("share", j)] = share
        return share

    def yearly_spend(self, st: CustomerState, price: np.ndarray, j: int, whole: bool = False) -> np.ndarray:
        """Each customer's expected spend with seller ``j`` over a year: its usual rate and basket there at the
        seller's price, times its share of wallet there (``whole``: all of its spending in that market)."""
        if self._memo is not None and ("spend", j, whole) in self._memo:
            return self._memo[("spend", j, whole)]
        if whole:
            cat, _ = self._seller(j)
            rate, basket = (st.purchase_rate, st.basket) if cat is None else (cat.state.rate, cat.state.basket)
            spend = rate * basket * price[j] * self.year
        else:  # the whole spend (the same product, kept if both are asked for) times the share of wallet
            spend = self.yearly_spend(st, price, j, whole=True) * self.wallet_share(st, j)
        if self._memo is not None:
            self._memo[("spend", j, whole)] = spend
        return spend

    def money_to_utility(self, st: CustomerState, money: np.ndarray, yearly_spend: np.ndarray) -> np.ndarray:
        """Money lost by leaving, in utility: like a price rise of that money over a year's spending at the firm
        (the price term's scale: price sensitivity per 100% of the price), times loss aversion."""
        share = np.divide(money, yearly_spend, out=np.zeros(self.n), where=yearly_spend > 0)
        return self.loss_aversion * st.price_sensitivity * share

    def _views(self, st: CustomerState, price: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What each customer bought in the last step, per market: (seller, money spent, occasions); seller -1 for
        none. The market first, then each category."""
        at = st.step_firm
        has = at >= 0
        spend = select(has, st.step_units * take(price, select(has, at, 0)) - st.step_discount
                       - st.step_member_discount, 0.0)
        views = [(at, spend, st.step_purchases)]
        for cat in self.categories:
            cs = cat.state
            has = cs.step_outlet >= 0
            glob = np.where(has, cs.step_outlet + cat.base, -1)
            spend = np.where(has, cs.step_units * price[np.where(has, glob, 0)] - cs.step_member_discount, 0.0)
            views.append((glob, spend, cs.step_purchases))
        return views

    # --- before the customers step -----------------------------------------------------------------------
    def prepare(self, st: CustomerState, t: int, price: np.ndarray, contractual: bool,
                available: np.ndarray | None = None) -> tuple[Perks, np.ndarray]:
        """The step's perks (customer x every firm and outlet), the financial switching cost and club membership at
        the current firm (written into ``st``), and the extra purchase occasions points pressure brings in the
        market (returned)."""
        self._memo = {}
        try:
            return self._prepare(st, t, price, contractual, available)
        finally:
            self._memo = None

    def _prepare(self, st: CustomerState, t: int, price: np.ndarray, contractual: bool,
                 available: np.ndarray | None) -> tuple[Perks, np.ndarray]:
        n = self.n
        for ledger in self.ledgers:
            ledger.available = np.ones(self.n_firms, bool) if available is None else available
        live = [ledger for ledger in self.ledgers if ledger.launched(t)]
        if len(live) > 1:
            count = np.zeros(n)
            for ledger in live:
                count += ledger.member
            weaken = 1.0 / (1.0 + self.dilution * np.maximum(count - 1.0, 0.0))
        else:  # at most one membership: nothing to dilute (1 / (1 + dilution x 0) is 1.0 exactly)
            weaken = np.ones(n)
        # club members talk about their firm more often; keep: the product of (1 - discount); pull: the strongest
        # goal-gradient pull on usage (contractual markets)
        perks, keep, discount, discount_sum, columns = self._reset_perks()
        outlook = Outlook(book=self, st=st, t=t, price=price, contractual=contractual, weaken=weaken,
                          perks=perks, financial=np.zeros(n), club=np.zeros(n, bool),
                          talk=np.ones(n), keep=keep, pull=np.zeros(n))
        for ledger in live:
            ledger.prepare(outlook)
        for j in columns:  # 1 - keep (elsewhere keep is 1: the discount stays +0.0)
            np.subtract(1.0, keep[:, j], out=discount[:, j])
        perks.discount = discount
        # each programme's part of a seller's discounts, to attribute the revenue given up
        self.discount_sum = discount_sum  # (column-major: summed seller by seller)
        for ledger in live:
            for j, d in ledger.discount_now.items():
                self.discount_sum[:, j] += d
        self.talk = outlook.talk
        st.financial_cost[:] = outlook.financial
        st.club[:] = outlook.club
        u = self.rng.random(n)  # drawn every step, whatever the state
        # an extra occasion's chance is zero without a pull: worked out where there is one
        pulled = np.flatnonzero(outlook.pull)
        extra = np.zeros(n, np.int64)
        extra[pulled] = u[pulled] < -np.expm1(-st.purchase_rate[pulled] * outlook.pull[pulled])
        return perks, extra

    def _reset_perks(self) -> tuple[Perks, np.ndarray, np.ndarray, np.ndarray, range | list[int]]:
        """The step's perks (zeros), keep (ones), discount and discount sums (zeros, to be filled) arrays [n, S],
        column-major, and the columns to work out: every column at the first step, then only the programmes'
        sellers' (see ``_perk_columns``), reset here."""
        shape = (self.n, self.n_sellers)
        if self._perk_arrays is None:
            self._perk_arrays = (*(np.zeros(shape, order="F") for _ in range(4)), np.ones(shape, order="F"),
                                 np.empty(shape, order="F"), np.zeros(shape, order="F"))
            columns = range(self.n_sellers)
        else:
            columns = self._perk_columns
            value, pressure, priority, forgive, keep, _, discount_sum = self._perk_arrays
            for j in columns:
                for zeroed in (value, pressure, priority, forgive, discount_sum):
                    zeroed[:, j] = 0.0
                keep[:, j] = 1.0
        value, pressure, priority, forgive, keep, discount, discount_sum = self._perk_arrays
        perks = Perks(value=value, discount=None, pressure=pressure, priority=priority, forgive=forgive)
        return perks, keep, discount, discount_sum, columns

    # --- after the customers step ------------------------------------------------------------------------
    def settle(self, st: CustomerState, t: int, price: np.ndarray, lapse_steps: int, contractual: bool) -> None:
        """Book the step for every launched programme; per-seller costs and fees land in ``firm_totals``."""
        self._memo = {}
        try:
            self._settle(st, t, price, lapse_steps, contractual)
        finally:
            self._memo = None

    def _settle(self, st: CustomerState, t: int, price: np.ndarray, lapse_steps: int, contractual: bool) -> None:
        for per_seller in self.firm_totals.values():
            per_seller[:] = 0.0
        n = self.n
        sales = Sales(book=self, st=st, t=t, price=price, views=self._views(st, price),
                      discounts=[st.step_member_discount] + [cat.state.step_member_discount for cat in self.categories],
                      discount_sum=self.discount_sum, lapse_steps=lapse_steps, contractual=contractual)
        u_aware = self.rng.random((n, len(self.ledgers)))
        u_redeem = self.rng.random((n, len(self.ledgers)))
        for column, ledger in enumerate(self.ledgers):
            totals = dict.fromkeys(STEP_TOTALS, 0.0)
            ledger.by_seller = {j: dict.fromkeys(SELLER_TOTALS, 0.0) for j in ledger.sellers}
            if ledger.launched(t):
                ledger.settle(sales, u_aware[:, column], u_redeem[:, column], totals)
                ledger.account(self, t, totals)
            ledger.step_totals = totals
        self._record(t, lapse_steps)

    def add_settlement(self, t: int, ledger: Ledger, party: str, role: str, points_issued: float,
                       points_redeemed: float, paid: float, received: float, reward_cost: float, running_cost: float,
                       membership_fees: float) -> None:
        """A row of the settlement table: what one party of a shared programme paid and received in the step."""
        self.settlement.append({"step": t, "programme": ledger.name, "party": party, "role": role,
                                "points_issued": points_issued, "points_redeemed": points_redeemed, "paid": paid,
                                "received": received, "reward_cost": reward_cost, "running_cost": running_cost,
                                "membership_fees": membership_fees})

    def _record(self, t: int, lapse_steps: int) -> None:
        """A row of the programmes table per programme, launched or not."""
        for ledger in self.ledgers:
            tot = ledger.step_totals
            outstanding = ledger.outstanding()
            liability, net = ledger.liability(outstanding)
            members = ledger.member
            active = members & (t - ledger.last_earn < lapse_steps)
            done = ledger.cum["redeemed"] + ledger.cum["expired"]
            row = {
                "step": t, "programme": ledger.name, "firm": ledger.firm, "kind": ledger.kind,
                "launched": ledger.launched(t),
                "members": int(members.sum()), "active_members": int(active.sum()), "joined": int(tot["joined"]),
                "quit": int(tot["quit"]),
                "points_issued": tot["issued"], "points_redeemed": tot["redeemed"], "points_expired": tot["expired"],
                "points_outstanding": outstanding,
                "redemptions": int(tot["redemptions"]),
                "breakage_rate": ledger.cum["expired"] / done if done > 0 else math.nan,
                "liability": liability, "liability_net": net,
                "reward_cost": tot["reward_cost"], "cashback": tot["cashback"],
                "member_discounts": tot["member_discounts"], "operating_cost": tot["operating_cost"],
                "launch_cost": tot["launch_cost"], "fees": tot["fees"],
                "cost": tot["reward_cost"] + tot["cashback"] + tot["operating_cost"] + tot["launch_cost"],
            }
            if ledger.status is not None:
                row.update(ledger.status.counts(members))
            self.log.append(row)

    def tables(self, firm_names: np.ndarray) -> dict[str, pd.DataFrame]:
        """``programmes`` (per step and programme) and, with a coalition or co-brand card, ``settlement`` (per step,
        programme and party)."""
        programmes = pd.DataFrame(self.log)
        programmes["step"] = programmes["step"].astype(np.int32)
        programmes["firm"] = firm_names[programmes["firm"].astype(int)]
        out = {"programmes": programmes}
        if self.settlement:
            settlement = pd.DataFrame(self.settlement)
            settlement["step"] = settlement["step"].astype(np.int32)
            out["settlement"] = settlement
        return out
