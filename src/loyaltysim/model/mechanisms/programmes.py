"""Loyalty programmes: the ledgers firms keep of their members, and what membership means to a customer.

Each programme a firm runs (points, tiers, cashback, club; see :mod:`loyaltysim.scenario`) is one
:class:`Ledger`: who is a member, their points by the period they were earned in, their status tier and the spend
and visits that qualify for it, their cashback period. The :class:`Book` holds every ledger of a market and does
two things each step:

* **before customers step** (:meth:`Book.prepare`) it says what the programmes mean to each customer, as arrays the
  behaviour rules read (:class:`Perks`): the share of a firm's price its rewards are worth to the customer
  (programme value in utility), the discounts a member actually gets, the points pressure toward a firm whose next
  reward is near (goal gradient; Kivetz, Urminsky & Zheng 2006), priority service and the share of a service
  failure's damage a member forgives (Bolton, Kannan & Bramlett 2000). It writes the financial switching cost of a
  balance and a status at the customer's current firm, and club membership (a relational bond). It adds the extra
  purchase occasions that points pressure brings (drawn from the ``programmes`` stream, which runs without
  programmes never touch).
* **after customers step** (:meth:`Book.settle`) it books the step: points earned on what members spent at the firm
  (times bonus multipliers and tier bonus), birthday points, expiry (breakage), redemptions (a redeeming member
  spends its balance on rewards, the largest it can afford first, oldest points first), tier promotion and, at
  reviews, demotion, cashback paid at the end of each period (at the highest rate whose frequency condition was
  met), enrolment and fees, operating cost.

How the designs act on customers, in money and utility:

* A member counts a points programme as a price cut of ``earn x bonus multiplier x (1 + tier bonus) x value per
  point x reach`` (reach: the share of a reward the customer expects to collect before points expire, from its own
  expected spend with the programme's sellers; a non-member weighs what it would collect if it brought all its
  spending there), a cashback programme as its rate. Each further membership weakens the pull of each: values are
  divided by ``1 + membership_dilution x (memberships - 1)`` ("customers hold many cards and are loyal to none"). A
  non-member counts an open programme at ``programme_attention`` of its value. Memberships other than a club's
  outlast a switch (the card stays in the wallet), so they keep counting in the dilution.
* Points pressure: with progress ``g`` toward the next reward (0 just after one, 1 at the threshold and until the
  largest reward is redeemed), the firm gains ``points_pressure x g^2`` utility, which draws a shopper's occasions
  to it (share of wallet), and in a contractual market, where usage is what the customer decides, the member's
  usage rate rises by ``goal_gradient x g^2`` of its usual rate. (A repertoire shopper's needs fix its occasions:
  the pressure moves them between stores, it does not add new ones.) Redemption resets ``g``, so purchases dip
  after a reward.
  A cashback schedule's frequency condition (purchases on so many days of the period) presses the same way while it
  can still be met.
* A balance is a financial switching cost: losing points worth ``V`` weighs like a price rise of ``V`` over a year's
  spending at the firm, times loss aversion; a tier's ``status_value`` adds to it (Burnham, Frels & Mahajan 2003).
* Enrolment is self-selected: a customer buying from the firm who notices the programme (``awareness``) joins when
  the yearly benefit it expects from its own spend exceeds its effort of joining (a trait) plus the yearly fee, so
  heavier buyers join first. Fee-paying members review the decision once a year. A club's benefit is its
  ``community_value`` times the customer's attitudinal loyalty (enthusiasts join).

Accounting: points issued = redeemed + expired + outstanding, at every step. The liability is outstanding points
times the cost per point of the cheapest reward, and net of the firm's ``expected_breakage``. Rewards cost the firm
when redeemed; cashback when paid; discounts are revenue given up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loyaltysim.model.rules import row_total
from loyaltysim.model.state import NEVER, CustomerState
from loyaltysim.scenario import VALUE_TIERS, CashbackProgramme, PointsProgramme
from loyaltysim.units import DAYS


def among(x: np.ndarray, values) -> np.ndarray:
    """``np.isin(x, values)`` for a few values (a programme's sellers, a few tiers): one comparison each."""
    out = np.zeros(x.shape, bool)
    for v in values:
        out |= x == v
    return out


@dataclass
class Perks:
    """What the programmes mean to each customer in a step, customer x seller (S: the market's firms, then each
    category's outlets)."""

    value: np.ndarray  # f8[n, S] share of the price the programmes' rewards are worth to the customer (utility only)
    discount: np.ndarray  # f8[n, S] share off the price a member pays
    pressure: np.ndarray  # f8[n, S] utility of a seller whose next reward is near (points pressure)
    priority: np.ndarray  # f8[n, S] share of service failures removed (priority service)
    forgive: np.ndarray  # f8[n, S] share of a failure's damage forgiven

    @classmethod
    def zeros(cls, n: int, n_firms: int) -> Perks:
        return cls(*(np.zeros((n, n_firms)) for _ in range(5)))


class Ledger:
    """One programme of one firm: its members and their balances, tiers and cashback periods."""

    def __init__(self, spec, firm: int, name: str, start: int, n: int, unit: str, year_steps: int,
                 partners: tuple[int, ...] = ()):
        self.spec = spec
        self.kind = spec.kind
        self.firm = firm  # the firm that runs it (a coalition's listing partner, a co-brand card's issuer)
        self.has_points = isinstance(spec, PointsProgramme)
        # where members earn (points per unit of money) and where they get a discount
        self.earn_at = {firm: spec.earn_rate} if self.has_points else {}
        self.partners = partners  # the other partners (global firm or outlet indices)
        if self.kind == "coalition":
            self.earn_at.update(dict.fromkeys(partners, spec.earn_rate))
        elif self.kind == "cobrand":
            self.earn_at[partners[0]] = spec.partner_earn_rate
        self.sellers = (firm, *partners)
        self.name = name
        self.start = start  # launched after this step
        self.n = n
        self.year = year_steps
        steps = lambda d: d.steps(unit)  # noqa: E731
        self.awareness = spec.enrolment.awareness.per_step(unit)
        self.fee = spec.enrolment.fee.per_step(unit)
        self.invited = (None if spec.enrolment.invitation is None
                        else [VALUE_TIERS.index(v) for v in spec.enrolment.invitation])
        self.operating = spec.operating_cost.per_step(unit)
        self.member = np.zeros(n, bool)
        self.discount_now: dict[int, np.ndarray] = {}  # share off each seller's price it gives each customer now
        self.joined = np.full(n, NEVER, np.int32)
        self.last_earn = np.full(n, NEVER, np.int32)  # a member's last purchase with one of its sellers
        self.cum = {"issued": 0.0, "redeemed": 0.0, "expired": 0.0}
        self.tiers = getattr(spec, "tiers", None)
        if self.has_points:
            rewards = sorted(spec.rewards, key=lambda r: r.points)
            self.reward_points = np.array([r.points for r in rewards])
            self.reward_value = np.array([r.value for r in rewards])
            self.reward_cost = np.array([r.firm_cost() for r in rewards])
            self.min_points = float(self.reward_points[0])
            self.value_per_point = float(self.reward_value[0] / self.reward_points[0])
            self.cost_per_point = float(self.reward_cost[0] / self.reward_points[0])
            self.redeem_p = spec.redemption.per_step(unit)
            self.life = None if spec.expiry.value == 0 else steps(spec.expiry)  # "0 weeks": never
            self.reminder = None if spec.reminder is None else steps(spec.reminder)
            if self.life is None or spec.expire_on == "inactivity":
                self.bucket, slots = 1, 1
            else:  # points are kept by the bucket period they were earned in (at most 12 periods in a life); a
                # bucket expires `life` steps after its last step, so points live between `life` and
                # `life + bucket - 1` steps
                self.bucket = math.ceil(self.life / 12)
                slots = math.ceil(self.life / self.bucket) + 2
            self.points = np.zeros((n, slots))
            self._balance: np.ndarray | None = None  # points.sum(axis=1), while no points have moved since
            self.last_activity = np.full(n, NEVER, np.int32)
            self.step_redeemed = np.zeros(n, bool)  # members who redeemed in the last step
            self.bonuses = [(b.kind, steps(b.start), max(steps(b.every), 1), max(steps(b.duration), 1),
                             b.multiplier, b.discount, b.points) for b in spec.bonuses]
        if self.tiers is not None:
            t = self.tiers
            self.tier = np.zeros(n, np.int8)  # 0: no tier; k: levels[k - 1]
            self.t_window = steps(t.window)
            self.t_bucket = max(math.ceil(self.t_window / 13), 1)
            slots = math.ceil(self.t_window / self.t_bucket)
            self.q_spend = np.zeros((n, slots))
            self.q_visits = np.zeros((n, slots))
            self.t_review = max(steps(t.review), 1)
            inf = np.inf
            self.t_spend = np.array([inf if lv.spend is None else lv.spend for lv in t.levels])
            self.t_visits = np.array([inf if lv.visits is None else lv.visits for lv in t.levels])
            self.t_discount = np.array([0.0, *(lv.discount for lv in t.levels)])
            self.t_priority = np.array([0.0, *(lv.priority for lv in t.levels)])
            self.t_bonus = np.array([0.0, *(lv.bonus_earn for lv in t.levels)])
            self.t_status = np.array([0.0, *(lv.status_value for lv in t.levels)])
        if isinstance(spec, CashbackProgramme):
            self.period = max(steps(spec.period), 1)
            self.period_spend = np.zeros(n)
            self.days = np.zeros(n, np.int32)
            self.streak = np.zeros(n, np.int32)
            self.best_streak = np.zeros(n, np.int32)
            self.rate = np.full(n, spec.rate)  # the rate each member earned in its last period
            self.conditions = sorted(spec.schedule, key=lambda c: -c.rate)
        self.step_totals: dict[str, float] = {}
        self.launched_at: int | None = None  # the first step it ran
        self.available = np.ones(firm + 1, bool)  # which firms are in the market (set by the book each step)

    # --- state views -------------------------------------------------------------------------------------
    def launched(self, t: int) -> bool:
        """Running at step ``t``: after its start, once the firm that runs it is in the market (a firm that enters
        later launches its programme when it enters)."""
        if self.launched_at is not None:
            return True
        if t > self.start and self.available[self.firm]:
            self.launched_at = t
            return True
        return False

    def balance(self) -> np.ndarray:
        """Each customer's points (a programme with points); kept from the last settlement until points move."""
        if self._balance is None:
            self._balance = self.points.sum(axis=1)
        return self._balance

    def multiplier(self, t: int) -> tuple[float, float]:
        """Earn multiplier and member discount of the bonus events running at step ``t``."""
        mult, discount = 1.0, 0.0
        for kind, start, every, duration, m, d, _ in getattr(self, "bonuses", ()):
            if kind != "birthday" and t > start and (t - start - 1) % every < duration:
                mult = max(mult, m)
                discount = max(discount, d) if kind == "member_day" else discount
        return mult, discount

    def progress(self, balance: np.ndarray) -> np.ndarray:
        """Progress toward the next reward above the balance: 0 just after a threshold, 1 at the next one; 1 once
        the balance reaches the largest reward (the goal is reached, and the pull lasts until it is redeemed)."""
        above = np.searchsorted(self.reward_points, balance, side="right")
        has_next = above < self.reward_points.size
        nxt = self.reward_points[np.minimum(above, self.reward_points.size - 1)]
        prev = np.where(above > 0, self.reward_points[np.maximum(above - 1, 0)], 0.0)
        return np.divide(balance - prev, nxt - prev, out=np.ones(balance.shape), where=has_next)

    def cashback_progress(self, t: int) -> np.ndarray:
        """Progress toward the highest-paying frequency condition still within reach this period."""
        spent = (t - self.launched_at) % self.period  # steps of the period already gone (periods run from the launch)
        left = self.period - spent
        progress = np.zeros(self.n)
        met = np.zeros(self.n, bool)
        for c in self.conditions:  # highest rate first
            have = self.streak if c.consecutive else self.days
            done = (self.best_streak if c.consecutive else self.days) >= c.days
            reachable = ~met & ~done & (c.days - have <= left)
            progress = np.where(reachable & (progress == 0), have / c.days, progress)
            met |= done | reachable
        return progress

    def outstanding(self) -> float:
        """Points held by all customers."""
        return float(self.points.sum()) if self.has_points else 0.0

    def liability(self, outstanding: float) -> tuple[float, float]:
        """What ``outstanding`` points would cost the firm if all were redeemed, gross and net of expected breakage."""
        if not self.has_points:
            return 0.0, 0.0
        gross = outstanding * self.cost_per_point
        return gross, gross * (1.0 - self.spec.expected_breakage)


def highest_level(q: Ledger, spend: np.ndarray, visits: np.ndarray) -> np.ndarray:
    """The highest tier (1-based; 0 for none) whose spend or visits rule ``spend`` and ``visits`` meet; a higher tier
    can be met by one rule while a lower tier's other rule is not."""
    met = (spend[:, None] >= q.t_spend[None, :]) | (visits[:, None] >= q.t_visits[None, :])
    top = met.shape[1] - np.argmax(met[:, ::-1], axis=1)
    return np.where(met.any(axis=1), top, 0)


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
        self.ledgers: list[Ledger] = []
        index = {name: j for j, name in enumerate(self.seller_names)}

        def partners_of(spec) -> tuple[int, ...]:
            if spec.kind == "coalition":
                return tuple(index[p] for p in spec.partners)
            return (index[spec.partner],) if spec.kind == "cobrand" else ()

        for f in firms:
            for spec in f.spec.programmes:
                self.ledgers.append(Ledger(spec, f.index, spec.name, spec.start.steps(unit), n, unit, self.year,
                                           partners_of(spec)))
        for f in firms:  # copies of rivals' own programmes (not coalitions or co-brands), `copy_after` their launch
            if f.reaction is None or not f.reaction.copy_programmes:
                continue
            for g in firms:
                if g is f:
                    continue
                for spec in g.spec.programmes:
                    if spec.kind in ("coalition", "cobrand"):
                        continue
                    start = spec.start.steps(unit) + f.reaction.copy_after.steps(unit)
                    self.ledgers.append(Ledger(spec, f.index, f"{spec.name} (copied by {f.name})", start, n, unit,
                                               self.year))
        c = customers_spec
        # traits drawn once, from the programmes stream: the effort of joining, and a birthday
        effort = c.enrolment_effort
        self.effort = effort.mean + effort.sd * rng.standard_normal(n)
        if effort.min is not None or effort.max is not None:
            self.effort = np.clip(self.effort, effort.min, effort.max)
        self.birthday = rng.integers(0, self.year, n).astype(np.int32)
        self.goal_gradient = c.goal_gradient
        self.pressure = c.points_pressure
        self.dilution = c.membership_dilution
        self.attention = c.programme_attention
        self.loss_aversion = c.loss_aversion
        self.talk = np.ones(n)
        self.log: list[dict] = []
        self.settlement: list[dict] = []
        self.firm_totals = {k: np.zeros(self.n_sellers) for k in ("programme_cost", "programme_fees")}
        # shares of wallet and spends, kept while one phase of a step (prepare, settle) runs: the state they are
        # computed from does not change within a phase
        self._memo: dict | None = None

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
        cat, _ = self._seller(j)
        rate, basket = (st.purchase_rate, st.basket) if cat is None else (cat.state.rate, cat.state.basket)
        spend = rate * basket * price[j] * self.year
        if not whole:
            spend = spend * self.wallet_share(st, j)
        if self._memo is not None:
            self._memo[("spend", j, whole)] = spend
        return spend

    def _views(self, st: CustomerState, price: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """What each customer bought in the last step, per market: (seller, money spent, occasions); seller -1 for
        none. The market first, then each category."""
        at = st.step_firm
        has = at >= 0
        spend = np.where(has, st.step_units * price[np.where(has, at, 0)] - st.step_discount
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
        perks = Perks.zeros(n, self.n_sellers)
        for q in self.ledgers:
            q.available = np.ones(self.n_firms, bool) if available is None else available
        live = [q for q in self.ledgers if q.launched(t)]
        count = np.zeros(n)
        for q in live:
            count += q.member
        weaken = 1.0 / (1.0 + self.dilution * np.maximum(count - 1.0, 0.0))
        cur = st.current
        has = cur >= 0
        financial = np.zeros(n)
        club = np.zeros(n, bool)
        self.talk = np.ones(n)  # club members talk about their firm more often
        keep = np.ones((n, self.n_sellers))  # product of (1 - discount)
        pull = np.zeros(n)  # strongest goal-gradient pull on usage (contractual markets)
        for q in live:
            f, m = q.firm, q.member
            at_firm = has & (cur == f) & m
            tier = q.tier if q.tiers is not None else None
            discount = np.zeros(n)
            q.discount_now = {}
            if tier is not None:
                discount = np.where(m, q.t_discount[tier], 0.0)
                perks.priority[:, f] = np.maximum(perks.priority[:, f], np.where(m, q.t_priority[tier], 0.0))
                financial += np.where(at_firm, q.t_status[tier], 0.0)
            worth = {f: np.zeros(n)}
            if q.has_points:
                mult, day_discount = q.multiplier(t)
                discount = 1.0 - (1.0 - discount) * (1.0 - np.where(m, day_discount, 0.0))
                bonus = np.where(m, q.t_bonus[tier], 0.0) if tier is not None else 0.0
                # a member's expected earning follows its own spending with the sellers; a non-member weighs what it
                # would earn if it brought its spending there
                spend = {j: np.where(m, self.yearly_spend(st, price, j), self.yearly_spend(st, price, j, whole=True))
                         for j in q.earn_at}
                points_year = sum(spend[j] * rate for j, rate in q.earn_at.items())
                reach = (np.ones(n) if q.life is None or q.spec.expire_on == "inactivity"
                         else np.minimum(points_year * q.life / self.year / q.min_points, 1.0))
                worth = {j: rate * mult * (1.0 + bonus) * q.value_per_point * reach for j, rate in q.earn_at.items()}
                balance = q.balance()
                g = q.progress(balance) ** 2
                press = np.where(m, self.pressure * g * weaken, 0.0)
                for j in q.earn_at:
                    perks.pressure[:, j] = np.maximum(perks.pressure[:, j], press)
                in_market = [j for j in q.earn_at if j < self.n_firms]
                if in_market:
                    if contractual:  # usage rises with the pull (a repertoire shopper's needs fix its occasions)
                        active = m & among(cur, in_market)
                        pull = np.maximum(pull, np.where(active, self.goal_gradient * g * weaken, 0.0))
                    here = m & has & among(cur, in_market)
                    at_cur = np.where(here, cur, 0)
                    value = balance * q.value_per_point
                    spend_here = sum(np.where(at_cur == j, spend[j], 0.0) for j in in_market)
                    financial += np.where(here, self._money_to_utility(st, value, spend_here), 0.0)
            elif q.kind == "cashback":
                worth = {f: np.where(m, q.rate, q.spec.rate)}
                if q.conditions:
                    g = q.cashback_progress(t) ** 2
                    perks.pressure[:, f] = np.maximum(perks.pressure[:, f],
                                                      np.where(m, self.pressure * g * weaken, 0.0))
                    if contractual:
                        pull = np.maximum(pull, np.where(at_firm, self.goal_gradient * g * weaken, 0.0))
            elif q.kind == "club":
                discount = np.where(m, q.spec.discount, 0.0)
                club |= at_firm
                self.talk = np.where(at_firm, np.maximum(self.talk, q.spec.talk_boost), self.talk)
            open_to = np.ones(n, bool) if q.invited is None else among(st.value_tier, q.invited)
            seen = np.where(m, weaken, np.where(open_to, self.attention, 0.0))
            for j, w in worth.items():
                perks.value[:, j] += w * seen
            # tier, member-day and club discounts apply where members earn (the firm, for programmes without points)
            for j in (q.earn_at or {f: None}):
                q.discount_now[j] = discount
            if q.kind == "cobrand":
                partner = q.partners[0]
                q.discount_now[partner] = 1.0 - (1.0 - discount) * (1.0 - np.where(m, q.spec.partner_discount, 0.0))
            for j, d in q.discount_now.items():
                keep[:, j] *= 1.0 - d
            perks.forgive[:, f] = np.maximum(perks.forgive[:, f], np.where(m, q.spec.forgiveness, 0.0))
        perks.discount = 1.0 - keep
        # each programme's part of a seller's discounts, to attribute the revenue given up
        self.discount_sum = np.zeros((n, self.n_sellers))
        for q in live:
            for j, d in q.discount_now.items():
                self.discount_sum[:, j] += d
        st.financial_cost[:] = financial
        st.club[:] = club
        u = self.rng.random(n)  # drawn every step, whatever the state
        extra = (u < -np.expm1(-st.purchase_rate * pull)).astype(np.int64)
        return perks, extra

    def _money_to_utility(self, st: CustomerState, money: np.ndarray, yearly_spend: np.ndarray) -> np.ndarray:
        """Money lost by leaving, in utility: like a price rise of that money over a year's spending at the firm
        (the price term's scale: price sensitivity per 100% of the price), times loss aversion."""
        share = np.divide(money, yearly_spend, out=np.zeros(self.n), where=yearly_spend > 0)
        return self.loss_aversion * st.price_sensitivity * share

    # --- after the customers step ------------------------------------------------------------------------
    def settle(self, st: CustomerState, t: int, price: np.ndarray, lapse_steps: int, contractual: bool) -> None:
        """Book the step for every launched programme; per-seller costs and fees land in ``firm_totals``."""
        self._memo = {}
        try:
            self._settle(st, t, price, lapse_steps, contractual)
        finally:
            self._memo = None

    def _settle(self, st: CustomerState, t: int, price: np.ndarray, lapse_steps: int, contractual: bool) -> None:
        for k in self.firm_totals:
            self.firm_totals[k][:] = 0.0
        n = self.n
        views = self._views(st, price)
        discounts = [st.step_member_discount] + [cat.state.step_member_discount for cat in self.categories]
        u_aware = self.rng.random((n, len(self.ledgers)))
        u_redeem = self.rng.random((n, len(self.ledgers)))
        for k, q in enumerate(self.ledgers):
            totals = dict.fromkeys(("issued", "redeemed", "expired", "redemptions", "reward_cost", "cashback",
                                    "member_discounts", "operating_cost", "launch_cost", "fees", "joined", "quit"),
                                   0.0)
            q.by_seller = {j: dict.fromkeys(("issued", "redeemed", "reward_cost"), 0.0) for j in q.sellers}
            if not q.launched(t):
                q.step_totals = totals
                continue
            if t == q.launched_at:
                totals["launch_cost"] = q.spec.launch_cost
            f = q.firm
            m = q.member
            here = np.zeros(n, bool)  # bought from one of its sellers this step
            for at, _, _ in views:
                here |= among(at, q.sellers)
            q.last_earn[here & m] = t
            # the revenue its discounts gave up: each seller's programme discounts, shared by each programme's rate
            for j, d in q.discount_now.items():
                total = self.discount_sum[:, j]
                part = np.divide(d, total, out=np.zeros(n), where=total > 0)
                for (at, _, _), given in zip(views, discounts, strict=True):
                    totals["member_discounts"] += float((given * part)[at == j].sum())
            if q.tiers is not None:
                spend = sum(np.where(among(at, q.sellers) & m, money, 0.0) for at, money, _ in views)
                visits = sum(np.where(among(at, q.sellers) & m, occ, 0) for at, _, occ in views)
                self._qualify(q, t, spend, visits)
            if q.has_points:
                self._points(q, t, views, u_redeem[:, k], totals)
            elif q.kind == "cashback":
                at, money, _ = views[0]
                self._cashback(q, t, (at == f) & m, np.where(at == f, money, 0.0), totals)
            if q.kind == "club":  # leaving the firm ends club membership
                gone = m & ((st.current != f) if contractual else (t - st.last_buy[:, f] >= lapse_steps))
                self._end(q, gone)
                totals["quit"] += float(gone.sum())
            self._enrol(q, st, t, price, here, u_aware[:, k], totals)
            members = float(q.member.sum())
            totals["fees"] = members * q.fee
            totals["operating_cost"] = members * q.operating
            self._book(q, t, totals)
            q.step_totals = totals
        self._record(st, t, lapse_steps)

    def _book(self, q: Ledger, t: int, totals: dict) -> None:
        """Who pays what. A firm's own programme: the firm bears every cost and collects the fees. A coalition: each
        partner pays the operator ``fee`` per point it issues and bears the rewards redeemed with it, and the
        operator reimburses it ``reimbursement`` per point; the operator collects membership fees and bears the
        operating and launch costs. A co-brand card: the issuer bears rewards, operating and launch costs and
        collects the fees, and the partner pays it ``fee`` per point issued on the partner's sales."""
        cost, fees = self.firm_totals["programme_cost"], self.firm_totals["programme_fees"]
        running = totals["operating_cost"] + totals["launch_cost"]
        if q.kind == "coalition":
            spec = q.spec
            operator = {"paid_in": 0.0, "paid_out": 0.0}
            for j, b in q.by_seller.items():
                fee, back = spec.fee * b["issued"], spec.reimbursement * b["redeemed"]
                cost[j] += fee + b["reward_cost"]
                fees[j] += back
                operator["paid_in"] += fee
                operator["paid_out"] += back
                self.settlement.append({"step": t, "programme": q.name, "party": self.seller_names[j],
                                        "role": "partner", "points_issued": b["issued"],
                                        "points_redeemed": b["redeemed"], "paid": fee, "received": back,
                                        "reward_cost": b["reward_cost"], "running_cost": 0.0,
                                        "membership_fees": 0.0})
            self.settlement.append({"step": t, "programme": q.name, "party": f"{q.name} operator",
                                    "role": "operator", "points_issued": totals["issued"],
                                    "points_redeemed": totals["redeemed"], "paid": operator["paid_out"],
                                    "received": operator["paid_in"], "reward_cost": 0.0, "running_cost": running,
                                    "membership_fees": totals["fees"]})
            return
        cost[q.firm] += totals["reward_cost"] + totals["cashback"] + running
        fees[q.firm] += totals["fees"]
        if q.kind == "cobrand":
            partner = q.partners[0]
            fee = q.spec.fee * q.by_seller[partner]["issued"]
            cost[partner] += fee
            fees[q.firm] += fee
            for j, role, paid, received, reward, run_cost, member_fees in (
                    (q.firm, "issuer", 0.0, fee, totals["reward_cost"], running, totals["fees"]),
                    (partner, "partner", fee, 0.0, 0.0, 0.0, 0.0)):
                b = q.by_seller[j]
                self.settlement.append({"step": t, "programme": q.name, "party": self.seller_names[j], "role": role,
                                        "points_issued": b["issued"], "points_redeemed": b["redeemed"],
                                        "paid": paid, "received": received, "reward_cost": reward,
                                        "running_cost": run_cost, "membership_fees": member_fees})

    def _qualify(self, q: Ledger, t: int, spend: np.ndarray, visits: np.ndarray) -> None:
        slots = q.q_spend.shape[1]
        slot = ((t - 1) // q.t_bucket) % slots
        if (t - 1) % q.t_bucket == 0:  # a new bucket period reuses the oldest slot
            q.q_spend[:, slot] = 0.0
            q.q_visits[:, slot] = 0.0
        q.q_spend[:, slot] += spend
        q.q_visits[:, slot] += visits
        s, v = q.q_spend.sum(axis=1), q.q_visits.sum(axis=1)
        qualified = np.where(q.member, highest_level(q, s, v), 0).astype(np.int8)
        tier = np.maximum(q.tier, qualified)
        if (t - q.launched_at + 1) % q.t_review == 0:  # reviews every `review` steps from the launch
            rule = q.tiers.demotion
            if rule == "one_level":
                tier = np.where(qualified < tier, np.maximum(qualified, tier - 1), tier)
            elif rule == "to_qualified":
                tier = qualified
        q.tier[:] = tier.astype(np.int8)

    def _points(self, q: Ledger, t: int, views, u_redeem: np.ndarray, totals: dict) -> None:
        spec = q.spec
        m = q.member
        mult, _ = q.multiplier(t)
        bonus = q.t_bonus[q.tier] if q.tiers is not None else 0.0
        earned = np.zeros(self.n)
        for j, rate in q.earn_at.items():
            here = np.zeros(self.n)
            for at, money, _ in views:
                here += np.where((at == j) & m, money, 0.0)
            points = here * rate * mult * (1.0 + bonus)
            q.by_seller[j]["issued"] = float(points.sum())
            earned += points
        active = earned > 0  # buying is activity; a birthday gift is not
        for kind, _start, _every, _duration, _m, _d, pts in q.bonuses:
            if kind == "birthday":
                gift = np.where(m & (self.birthday == t % self.year), pts, 0.0)
                q.by_seller[q.firm]["issued"] += float(gift.sum())
                earned = earned + gift
        slots = q.points.shape[1]
        slot = ((t - 1) // q.bucket) % slots
        q._balance = None  # points move below
        # expiry, before this step's points are added (they start their life now)
        expired = np.zeros(self.n)
        if q.life is not None and spec.expire_on == "inactivity":
            q.last_activity[active] = t  # buying is activity: a balance is kept if the member buys on its deadline
            idle = (t - q.last_activity >= q.life) & (q.last_activity != NEVER)
            expired = np.where(idle, q.points[:, 0], 0.0)
            q.points[idle, 0] = 0.0
        elif q.life is not None and t > q.life and (t - q.life) % q.bucket == 0:
            old = (t - q.life) // q.bucket - 1  # the bucket period that ended `life` steps ago
            expired = q.points[:, old % slots].copy()
            q.points[:, old % slots] = 0.0
        q.points[:, slot] += earned
        totals["issued"] = float(earned.sum())
        totals["expired"] = float(expired.sum())
        # redemption, by a member who decides to this step (or has been reminded its points are about to expire)
        balance = q.balance()
        can = m & (balance >= q.min_points)
        wants = u_redeem < q.redeem_p
        if q.reminder is not None and q.life is not None:
            wants |= self._expiring_soon(q, t)
        redeem = can & wants
        q.step_redeemed = redeem
        # a redeeming member spends its balance on rewards, the largest it can afford first, down to below the
        # smallest threshold
        cost_points = np.zeros(self.n)
        reward_cost = np.zeros(self.n)
        left = np.where(redeem, balance, 0.0)
        for r in range(q.reward_points.size - 1, -1, -1):
            times = np.floor(left / q.reward_points[r])
            cost_points += times * q.reward_points[r]
            reward_cost += times * q.reward_cost[r]
            totals["redemptions"] += float(times.sum())
            left -= times * q.reward_points[r]
        who = np.flatnonzero(redeem)
        remaining = cost_points[who]
        for age in range(slots):  # oldest slot first
            s = (slot + 1 + age) % slots
            take = np.minimum(remaining, q.points[who, s])
            q.points[who, s] -= take
            remaining -= take
        balance[who] = q.points[who].sum(axis=1)  # the same row sums as over the whole array
        q._balance = balance
        totals["redeemed"] = float(cost_points.sum())
        totals["reward_cost"] = float(reward_cost.sum())
        # where: with the seller the member bought from this step (the market first), else the firm that runs it
        where = np.full(self.n, q.firm)
        placed = np.zeros(self.n, bool)
        for at, _, _ in views:
            take = ~placed & among(at, q.sellers)
            where = np.where(take, at, where)
            placed |= take
        for j in q.sellers:
            at_j = redeem & (where == j)
            q.by_seller[j]["redeemed"] = float(cost_points[at_j].sum())
            q.by_seller[j]["reward_cost"] = float(reward_cost[at_j].sum())
        q.last_activity[active | redeem] = t
        for key in ("issued", "redeemed", "expired"):
            q.cum[key] += totals[key]

    def _expiring_soon(self, q: Ledger, t: int) -> np.ndarray:
        """Members holding points that expire within the reminder window (they have been told)."""
        if q.spec.expire_on == "inactivity":
            return (q.last_activity != NEVER) & (q.life - (t - q.last_activity) <= q.reminder) & (q.points[:, 0] > 0)
        slots = q.points.shape[1]
        period = (t - 1) // q.bucket
        soon = np.zeros(self.n, bool)
        for age in range(slots):
            j = period - slots + 1 + age  # bucket periods from the oldest held
            if j < 0:
                continue
            expires_at = (j + 1) * q.bucket + q.life
            if expires_at - t <= q.reminder:
                soon |= q.points[:, j % slots] > 0
        return soon

    def _cashback(self, q: Ledger, t: int, buyer: np.ndarray, spend: np.ndarray, totals: dict) -> None:
        q.period_spend += np.where(buyer, spend, 0.0)
        q.days += buyer
        q.streak = np.where(buyer, q.streak + 1, 0).astype(np.int32)
        q.best_streak = np.maximum(q.best_streak, q.streak)
        if (t - q.launched_at + 1) % q.period:  # periods run from the launch
            return
        rate = np.full(self.n, q.spec.rate)
        for c in q.conditions:  # highest rate first: the first condition met sets the rate
            met = (q.best_streak if c.consecutive else q.days) >= c.days
            rate = np.where(met & (rate < c.rate), c.rate, rate)
        paid = np.where(q.member, rate * q.period_spend, 0.0)
        totals["cashback"] = float(paid.sum())
        q.rate = np.where(q.member & (q.period_spend > 0), rate, q.rate)
        q.period_spend[:] = 0.0
        q.days[:] = 0
        q.streak[:] = 0
        q.best_streak[:] = 0

    def expected_benefit(self, q: Ledger, st: CustomerState, price: np.ndarray) -> np.ndarray:
        """The yearly benefit a customer expects from membership, money, from its own expected spend."""
        spend = self.yearly_spend(st, price, q.firm)
        benefit = np.zeros(self.n)
        if q.tiers is not None:  # the tier its own spend and visits would reach
            visits = st.purchase_rate * self.year * self.wallet_share(st, q.firm)
            level = highest_level(q, spend * q.t_window / self.year, visits * q.t_window / self.year)
            benefit += spend * q.t_discount[level]
        if q.has_points:
            spends = {j: spend if j == q.firm else self.yearly_spend(st, price, j) for j in q.earn_at}
            points_year = sum(spends[j] * rate for j, rate in q.earn_at.items())
            reach = (1.0 if q.life is None or q.spec.expire_on == "inactivity"
                     else np.minimum(points_year * q.life / self.year / q.min_points, 1.0))
            benefit += points_year * q.value_per_point * reach
            if q.kind == "cobrand":
                benefit += spends[q.partners[0]] * q.spec.partner_discount
        elif q.kind == "cashback":
            rate = np.full(self.n, q.spec.rate)
            days = q.period * -np.expm1(-st.purchase_rate)  # expected days with a purchase in a period
            for c in q.conditions:
                if not c.consecutive:
                    rate = np.where(days >= c.days, np.maximum(rate, c.rate), rate)
            benefit += spend * rate
        elif q.kind == "club":
            cur = st.current == q.firm
            benefit += q.spec.community_value * np.where(cur, st.attitude, 0.0) + spend * q.spec.discount
        return benefit

    def _enrol(self, q: Ledger, st: CustomerState, t: int, price: np.ndarray, here: np.ndarray, u: np.ndarray,
               totals: dict) -> None:
        fee_year = q.fee * self.year
        invited = np.ones(self.n, bool) if q.invited is None else among(st.value_tier, q.invited)
        considering = ~q.member & here & invited & (u < q.awareness)
        renewing = q.member & (fee_year > 0) & (t - q.joined > 0) & ((t - q.joined) % self.year == 0)
        if not (considering.any() or renewing.any()):
            return
        benefit = self.expected_benefit(q, st, price)
        join = considering & (benefit >= self.effort + fee_year)
        quit_ = renewing & (benefit < fee_year)
        q.member[join] = True
        q.joined[join] = t
        self._end(q, quit_)
        totals["joined"] = float(join.sum())
        totals["quit"] += float(quit_.sum())

    @staticmethod
    def _end(q: Ledger, who: np.ndarray) -> None:
        """Memberships that end: status is lost with them (a member who rejoins qualifies afresh)."""
        q.member[who] = False
        if q.tiers is not None:
            q.tier[who] = 0
            q.q_spend[who] = 0.0
            q.q_visits[who] = 0.0

    def _record(self, st: CustomerState, t: int, lapse_steps: int) -> None:
        for q in self.ledgers:
            tot = q.step_totals
            outstanding = q.outstanding()
            liability, net = q.liability(outstanding)
            members = q.member
            active = members & (t - q.last_earn < lapse_steps)
            done = q.cum["redeemed"] + q.cum["expired"]
            row = {
                "step": t, "programme": q.name, "firm": q.firm, "kind": q.kind, "launched": q.launched(t),
                "members": int(members.sum()), "active_members": int(active.sum()), "joined": int(tot["joined"]),
                "quit": int(tot["quit"]),
                "points_issued": tot["issued"], "points_redeemed": tot["redeemed"], "points_expired": tot["expired"],
                "points_outstanding": outstanding,
                "redemptions": int(tot["redemptions"]),
                "breakage_rate": q.cum["expired"] / done if done > 0 else math.nan,
                "liability": liability, "liability_net": net,
                "reward_cost": tot["reward_cost"], "cashback": tot["cashback"],
                "member_discounts": tot["member_discounts"], "operating_cost": tot["operating_cost"],
                "launch_cost": tot["launch_cost"], "fees": tot["fees"],
                "cost": tot["reward_cost"] + tot["cashback"] + tot["operating_cost"] + tot["launch_cost"],
            }
            if q.tiers is not None:
                counts = np.bincount(q.tier[members], minlength=len(q.tiers.levels) + 1)
                for k, level in enumerate(q.tiers.levels):
                    row[f"tier_{level.name}"] = int(counts[k + 1])
            self.log.append(row)
