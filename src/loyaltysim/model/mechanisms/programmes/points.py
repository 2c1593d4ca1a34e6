"""Points programmes: points per money spent, redeemed for rewards from a catalogue; points may expire.

How points act on customers, in money and utility:

* A member counts a points programme as a price cut of ``earn x bonus multiplier x (1 + tier bonus) x value per
  point x reach`` (reach: the share of a reward the customer expects to collect before points expire, from its own
  expected spend with the programme's sellers; a non-member weighs what it would collect if it brought all its
  spending there).
* Points pressure: with progress ``g`` toward the next reward (0 just after one, 1 at the threshold and until the
  largest reward is redeemed), the firm gains ``points_pressure x g^2`` utility, which draws a shopper's occasions
  to it (share of wallet), and in a contractual market, where usage is what the customer decides, the member's
  usage rate rises by ``goal_gradient x g^2`` of its usual rate (goal gradient; Kivetz, Urminsky & Zheng 2006). (A
  repertoire shopper's needs fix its occasions: the pressure moves them between stores, it does not add new ones.)
  Redemption resets ``g``, so purchases dip after a reward.
* A balance is a financial switching cost: losing points worth ``V`` weighs like a price rise of ``V`` over a year's
  spending at the firm, times loss aversion (Burnham, Frels & Mahajan 2003).

After the customers step a points ledger books points earned on what members spent at its sellers (times bonus
multipliers and tier bonus), birthday points, expiry (breakage), and redemptions (a redeeming member spends its
balance on rewards, the largest it can afford first, oldest points first).

Accounting: points issued = redeemed + expired + outstanding, at every step. The liability is outstanding points
times the cost per point of the cheapest reward, and net of the firm's ``expected_breakage``. Rewards cost the firm
when redeemed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.arrays import select, take
from loyaltysim.model.mechanisms.programmes.attainability import attainability, headroom
from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.views import Outlook, Sales, among
from loyaltysim.model.state import NEVER, CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView


class PointsLedger(Ledger):
    """A points programme (kind ``points``): points per money spent with the firm, kept by the period they were
    earned in, redeemed for rewards; it may have status tiers too. The coalition and co-brand kinds are points
    programmes with partners."""

    has_points = True

    def __init__(self, spec, firm: int, name: str, start: int, n: int, unit: str, year_steps: int,
                 partners: tuple[int, ...] = ()):
        super().__init__(spec, firm, name, start, n, unit, year_steps, partners)
        steps = lambda d: d.steps(unit)  # noqa: E731
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
        self.step_points_redeemed = np.zeros(n)  # the points each spent on rewards in the last step
        self.bonuses = [(b.kind, steps(b.start), max(steps(b.every), 1), max(steps(b.duration), 1),
                         b.multiplier, b.discount, b.points) for b in spec.bonuses]

    def earn_rates(self) -> dict[int, float]:
        """Members earn ``earn_rate`` points per unit of money at the firm."""
        return {self.firm: self.spec.earn_rate}

    # --- state views -------------------------------------------------------------------------------------
    def balance(self) -> np.ndarray:
        """Each customer's points; kept from the last settlement until points move."""
        if self._balance is None:
            self._balance = self.points.sum(axis=1)
        return self._balance

    def multiplier(self, t: int) -> tuple[float, float]:
        """Earn multiplier and member discount of the bonus events running at step ``t``."""
        mult, discount = 1.0, 0.0
        for kind, start, every, duration, m, d, _ in self.bonuses:
            if kind != "birthday" and t > start and (t - start - 1) % every < duration:
                mult = max(mult, m)
                discount = max(discount, d) if kind == "member_day" else discount
        return mult, discount

    def above(self, balance: np.ndarray) -> np.ndarray:
        """How many rewards' thresholds each balance reaches (the index of the next reward above it)."""
        return np.searchsorted(self.reward_points, balance, side="right")

    def progress(self, balance: np.ndarray, above: np.ndarray | None = None) -> np.ndarray:
        """Progress toward the next reward above the balance: 0 just after a threshold, 1 at the next one; 1 once
        the balance reaches the largest reward (the goal is reached, and the pull lasts until it is redeemed).
        ``above``: :meth:`above` of the balance, if known."""
        above = self.above(balance) if above is None else above
        has_next = above < self.reward_points.size
        nxt = self.reward_points[np.minimum(above, self.reward_points.size - 1)]
        prev = select(above > 0, self.reward_points[np.maximum(above - 1, 0)], 0.0)
        return np.divide(balance - prev, nxt - prev, out=np.ones(balance.shape), where=has_next)

    def to_next(self, balance: np.ndarray, above: np.ndarray | None = None) -> np.ndarray:
        """The points still needed for the next reward above the balance (0 once the balance reaches the largest;
        ``above``: :meth:`above` of the balance, if known)."""
        above = self.above(balance) if above is None else above
        nxt = self.reward_points[np.minimum(above, self.reward_points.size - 1)]
        return select(above < self.reward_points.size, nxt - balance, 0.0)

    def reach(self, points_year: np.ndarray, year: int) -> np.ndarray:
        """The share of the smallest reward a customer earning ``points_year`` points a year expects to collect
        within a point's life (1 without expiry, and with expiry on inactivity: a point lasts while the member
        buys)."""
        if self.life is None or self.spec.expire_on == "inactivity":
            return np.ones(points_year.shape)
        return np.minimum(points_year * self.life / year / self.min_points, 1.0)

    def outstanding(self) -> float:
        """Points held by all customers."""
        return float(self.points.sum())

    def liability(self, outstanding: float) -> tuple[float, float]:
        """What ``outstanding`` points would cost the firm if all were redeemed, gross and net of expected breakage."""
        gross = outstanding * self.cost_per_point
        return gross, gross * (1.0 - self.spec.expected_breakage)

    # --- before the customers step -----------------------------------------------------------------------
    def perceive(self, outlook: Outlook, at_firm: np.ndarray,
                 discount: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The worth of the points at each seller where members earn (a price cut), a member day's discount on top
        of the tier's, and the balance's pressure, pull and switching cost."""
        book, st, price, member = outlook.book, outlook.st, outlook.price, self.member
        mult, day_discount = self.multiplier(outlook.t)
        discount = 1.0 - (1.0 - discount) * (1.0 - select(member, day_discount, 0.0))
        status = self.status
        bonus = select(member, status.bonus_earn[status.tier], 0.0) if status is not None else 0.0
        # a member's expected earning follows its own spending with the sellers; a non-member weighs what it
        # would earn if it brought its spending there
        spend = {j: select(member, book.yearly_spend(st, price, j), book.yearly_spend(st, price, j, whole=True))
                 for j in self.earn_at}
        points_year = sum(spend[j] * rate for j, rate in self.earn_at.items())
        reach = self.reach(points_year, book.year)
        worth = {j: rate * mult * (1.0 + bonus) * self.value_per_point * reach for j, rate in self.earn_at.items()}
        self.press(outlook, spend, points_year)
        return discount, worth

    def press(self, outlook: Outlook, spend: dict[int, np.ndarray], points_year: np.ndarray) -> None:
        """The balance's pull: points pressure at every seller where members earn; in a contractual market the
        goal-gradient pull on the usage of a member whose provider is one of its market sellers; and the balance's
        value as a financial switching cost at that provider (``spend``: expected yearly spend per seller;
        ``points_year``: the points it expects to earn a year). With attainable rewards on, pressure and pull are
        scaled by how attainable the next reward is, and the pressure at a seller whose customers split their
        purchases (a repertoire market's firm, a category's outlet) by the member's headroom there
        (:mod:`~loyaltysim.model.mechanisms.programmes.attainability`); in a contractual market the goal gradient
        itself bounds the extra usage."""
        book, st, member, perks = outlook.book, outlook.st, self.member, outlook.perks
        balance = self.balance()
        # progress only matters to members (every use below is a member's): worked out for them alone
        members = np.flatnonzero(member)
        held = take(balance, members)
        above = self.above(held)
        progress = self.progress(held, above) ** 2
        if book.attainable:
            life = None if self.life is None or self.spec.expire_on == "inactivity" else self.life
            progress = progress * attainability(self.to_next(held, above), take(points_year, members), life,
                                                book.year)
        g = np.zeros(self.n)
        g[members] = progress
        press = select(member, outlook.pressure(g), 0.0)
        for j in self.earn_at:
            # headroom where pressure moves purchases between sellers: a repertoire market, a category's outlets
            shared = not outlook.contractual or j >= book.n_firms
            here = press * headroom(book.wallet_share(st, j)) if book.attainable and shared else press
            perks.pressure[:, j] = np.maximum(perks.pressure[:, j], here)
        in_market = [j for j in self.earn_at if j < book.n_firms]
        if not in_market:
            return
        cur = st.current
        if outlook.contractual:  # usage rises with the pull (a repertoire shopper's needs fix its occasions)
            active = member & among(cur, in_market)
            outlook.pull = np.maximum(outlook.pull, select(active, outlook.goal_pull(g), 0.0))
        here = member & (cur >= 0) & among(cur, in_market)
        at_cur = select(here, cur, 0)
        value = balance * self.value_per_point
        spend_here = sum(select(at_cur == j, spend[j], 0.0) for j in in_market)
        outlook.financial += select(here, book.money_to_utility(st, value, spend_here), 0.0)

    # --- after the customers step ------------------------------------------------------------------------
    def earn(self, sales: Sales, u_redeem: np.ndarray, totals: dict) -> None:
        """The step's points: issued on members' spend and birthdays, expired (before the step's points are added:
        they start their life now), redeemed; and the running totals."""
        t = sales.t
        earned, active = self.issue(sales)
        slots = self.points.shape[1]
        slot = ((t - 1) // self.bucket) % slots
        kept = self._balance  # the balances since the last settlement, if known
        self._balance = None  # points move below
        expired = self.expire(t, active)
        # only the members who earned add to their bucket (adding +0.0 changes no balance, and points are never
        # -0.0): one element per earner, not a column of every customer's row
        earners = np.flatnonzero(earned)
        self.points[earners, slot] += take(earned, earners)
        if kept is not None:  # only balances that earned or expired points are summed again (the same row sums)
            moved = np.flatnonzero((earned != 0.0) | (expired != 0.0))
            kept = kept.copy()
            kept[moved] = self.points[moved].sum(axis=1)
            self._balance = kept
        totals["issued"] = float(earned.sum())
        totals["expired"] = float(expired.sum())
        redeem = self.redeem(sales, u_redeem, slot, totals)
        self.last_activity[active | redeem] = t
        for key in ("issued", "redeemed", "expired"):
            self.cum[key] += totals[key]

    def issue(self, sales: Sales) -> tuple[np.ndarray, np.ndarray]:
        """Points earned in the step, per customer: on members' spend at each seller where they earn, times the
        running bonus multiplier and the member's tier bonus (its tier just updated), then birthday gifts; and who
        earned on a purchase (buying is activity; a birthday gift is not)."""
        t, member = sales.t, self.member
        mult, _ = self.multiplier(t)
        bonus = self.status.bonus_earn[self.status.tier] if self.status is not None else 0.0
        earned = np.zeros(self.n)
        for j, rate in self.earn_at.items():
            here = np.zeros(self.n)
            for at, money, _ in sales.views:
                here += select((at == j) & member, money, 0.0)
            points = here * rate * mult * (1.0 + bonus)
            self.by_seller[j]["issued"] = float(points.sum())
            earned += points
        active = earned > 0
        for kind, _start, _every, _duration, _m, _d, pts in self.bonuses:
            if kind == "birthday":
                gift = select(member & (sales.book.birthday == t % self.year), pts, 0.0)
                self.by_seller[self.firm]["issued"] += float(gift.sum())
                earned = earned + gift
        return earned, active

    def expire(self, t: int, active: np.ndarray) -> np.ndarray:
        """Points that expire at step ``t`` (taken off the balances): on inactivity, the whole balance of a member
        idle for the expiry (``active``: who earned on a purchase now, which keeps a balance on its deadline); on
        earning, the bucket period that ended ``life`` steps ago."""
        slots = self.points.shape[1]
        expired = np.zeros(self.n)
        if self.life is not None and self.spec.expire_on == "inactivity":
            self.last_activity[active] = t  # buying is activity: a balance is kept if the member buys on its deadline
            idle = (t - self.last_activity >= self.life) & (self.last_activity != NEVER)
            expired = np.where(idle, self.points[:, 0], 0.0)
            self.points[idle, 0] = 0.0
        elif self.life is not None and t > self.life and (t - self.life) % self.bucket == 0:
            old = (t - self.life) // self.bucket - 1  # the bucket period that ended `life` steps ago
            expired = self.points[:, old % slots].copy()
            self.points[:, old % slots] = 0.0
        return expired

    def redeem(self, sales: Sales, u_redeem: np.ndarray, slot: int, totals: dict) -> np.ndarray:
        """Redemption, by a member who decides to this step (or has been reminded its points are about to expire),
        its points taken oldest first and placed with a seller; who redeemed."""
        balance = self.balance()
        can = self.member & (balance >= self.min_points)
        wants = u_redeem < self.redeem_p
        if self.reminder is not None and self.life is not None:
            wants |= self.expiring_soon(sales.t)
        redeem = can & wants
        self.step_redeemed = redeem
        cost_points, reward_cost = self.spend_down(select(redeem, balance, 0.0), totals)
        self.step_points_redeemed = cost_points
        who = np.flatnonzero(redeem)
        self.take_oldest_first(who, cost_points[who], slot)
        balance[who] = self.points[who].sum(axis=1)  # the same row sums as over the whole array
        self._balance = balance
        totals["redeemed"] = float(cost_points.sum())
        totals["reward_cost"] = float(reward_cost.sum())
        self.place(sales.views, redeem, cost_points, reward_cost)
        return redeem

    def spend_down(self, left: np.ndarray, totals: dict) -> tuple[np.ndarray, np.ndarray]:
        """A redeeming member spends its balance ``left`` on rewards, the largest it can afford first, down to below
        the smallest threshold: the points spent and the rewards' cost to the firm, per customer."""
        cost_points = np.zeros(self.n)
        reward_cost = np.zeros(self.n)
        for r in range(self.reward_points.size - 1, -1, -1):
            times = np.floor(left / self.reward_points[r])
            cost_points += times * self.reward_points[r]
            reward_cost += times * self.reward_cost[r]
            totals["redemptions"] += float(times.sum())
            left -= times * self.reward_points[r]
        return cost_points, reward_cost

    def take_oldest_first(self, who: np.ndarray, remaining: np.ndarray, slot: int) -> None:
        """Take the ``remaining`` points of customers ``who`` from their buckets, the oldest first (``slot``: the
        current bucket, the newest)."""
        slots = self.points.shape[1]
        for age in range(slots):  # oldest slot first
            if not remaining.any():  # all taken (or nobody redeems): the younger slots would lose nothing
                break
            s = (slot + 1 + age) % slots
            taken = np.minimum(remaining, self.points[who, s])
            self.points[who, s] -= taken
            remaining -= taken

    def place(self, views, redeem: np.ndarray, cost_points: np.ndarray, reward_cost: np.ndarray) -> None:
        """Where redemptions are booked: with the seller the member bought from this step (the market first), else
        the firm that runs the programme."""
        seller = np.full(self.n, self.firm)
        placed = np.zeros(self.n, bool)
        for at, _, _ in views:
            placing = ~placed & among(at, self.sellers)
            seller = select(placing, at, seller)
            placed |= placing
        for j in self.sellers:
            at_j = redeem & (seller == j)
            self.by_seller[j]["redeemed"] = float(cost_points[at_j].sum())
            self.by_seller[j]["reward_cost"] = float(reward_cost[at_j].sum())

    def expiring_soon(self, t: int) -> np.ndarray:
        """Members holding points that expire within the reminder window (they have been told)."""
        if self.spec.expire_on == "inactivity":
            return ((self.last_activity != NEVER) & (self.life - (t - self.last_activity) <= self.reminder)
                    & (self.points[:, 0] > 0))
        slots = self.points.shape[1]
        period = (t - 1) // self.bucket
        soon = np.zeros(self.n, bool)
        for age in range(slots):
            j = period - slots + 1 + age  # bucket periods from the oldest held
            if j < 0:
                continue
            expires_at = (j + 1) * self.bucket + self.life
            if expires_at - t <= self.reminder:
                soon |= self.points[:, j % slots] > 0
        return soon

    def add_benefit(self, benefit: np.ndarray, book: BookView, st: CustomerState, price: np.ndarray,
                    spend: np.ndarray) -> None:
        """The points a year its expected spend with the sellers earns, at the value per point and the reach (bonus
        events and tier bonuses not counted)."""
        spends = {j: spend if j == self.firm else book.yearly_spend(st, price, j) for j in self.earn_at}
        points_year = sum(spends[j] * rate for j, rate in self.earn_at.items())
        benefit += points_year * self.value_per_point * self.reach(points_year, book.year)
