"""The ledger every loyalty programme keeps, whatever its kind, and what the book hands its ledgers in a step.

A :class:`Ledger` is one programme of one firm: who is a member, when each joined and last bought with the
programme's sellers, its fees and running costs, its launch, and its status tiers when the specification has them
(:class:`~loyaltysim.model.mechanisms.programmes.status.Status`). Each kind of programme is a subclass (the
registry, :mod:`loyaltysim.model.mechanisms.programmes.registry`, maps a specification's ``kind`` to it) that
overrides the hooks where its kind differs:

* :meth:`Ledger.perceive`, before customers step: what the programme is worth to each customer at each seller (as a
  share of the price), the member discount, and any pressure, pull on usage, switching cost or bond it adds;
* :meth:`Ledger.earn`, after they step: what members earn in the step (points, with their expiry and redemption;
  cashback);
* :meth:`Ledger.departures`: memberships that end in the step other than at a renewal (a club member who left the
  firm);
* :meth:`Ledger.add_benefit`: the yearly benefit a customer expects from the kind, which decides enrolment;
* :meth:`Ledger.discounts`: the sellers where the member discount applies;
* :meth:`Ledger.account`: who pays what;
* :meth:`Ledger.outstanding` and :meth:`Ledger.liability`: points held, and what they would cost the firm.

The base class is a programme that gives only what its tiers give (the ``tiers`` kind).

Enrolment is self-selected: a customer buying from the firm who notices the programme (``awareness``) joins when
the yearly benefit it expects from its own spend exceeds its effort of joining (a trait) plus the yearly fee, so
heavier buyers join first. Fee-paying members review the decision once a year. Member discounts are revenue given up
by the seller where the member bought.
"""

from __future__ import annotations

import numpy as np

from loyaltysim.model.arrays import select
from loyaltysim.model.mechanisms.programmes.status import Status
from loyaltysim.model.mechanisms.programmes.views import BookView, Outlook, Sales, among
from loyaltysim.model.state import NEVER, CustomerState
from loyaltysim.scenario import VALUE_TIERS


class Ledger:
    """One programme of one firm: its members, their enrolment and fees, and its status tiers if it has them.

    The hooks below are the behaviour of status alone (the ``tiers`` kind); each other kind overrides those where it
    differs.
    """

    has_points = False  # points, balances and rewards (points, coalition, cobrand)
    copyable = True  # a rival with ``copy_programmes`` runs a copy of it

    def __init__(self, spec, firm: int, name: str, start: int, n: int, unit: str, year_steps: int,
                 partners: tuple[int, ...] = ()):
        self.spec = spec
        self.kind = spec.kind
        self.firm = firm  # the firm that runs it (a coalition's listing partner, a co-brand card's issuer)
        self.partners = partners  # the other partners (global firm or outlet indices)
        self.earn_at = self.earn_rates()  # where members earn (points per unit of money)
        self.sellers = (firm, *partners)
        self.name = name
        self.start = start  # launched after this step
        self.n = n
        self.year = year_steps
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
        tiers = getattr(spec, "tiers", None)
        self.status = None if tiers is None else Status(tiers, n, unit)
        self.by_seller: dict[int, dict[str, float]] = {}  # the step's totals at each seller (SELLER_TOTALS)
        self.step_totals: dict[str, float] = {}
        self.launched_at: int | None = None  # the first step it ran
        self.available = np.ones(firm + 1, bool)  # which firms are in the market (set by the book each step)

    @staticmethod
    def partners_of(spec, index: dict[str, int]) -> tuple[int, ...]:
        """The global indices of the partners ``spec`` names (``index``: seller name -> index); a firm's own
        programme has none."""
        return ()

    def earn_rates(self) -> dict[int, float]:
        """Points per unit of money at each seller where members earn; none without points."""
        return {}

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

    def outstanding(self) -> float:
        """Points held by all customers (none without points)."""
        return 0.0

    def liability(self, outstanding: float) -> tuple[float, float]:
        """What ``outstanding`` points would cost the firm if all were redeemed, gross and net of expected breakage
        (nothing without points)."""
        return 0.0, 0.0

    # --- before the customers step -----------------------------------------------------------------------
    def prepare(self, outlook: Outlook) -> None:
        """Add what the programme means to each customer this step to ``outlook``: its tiers' perks, the kind's
        worth and discount, the value each customer sees, the discounts at its sellers and forgiveness."""
        st, member, perks = outlook.st, self.member, outlook.perks
        at_firm = (st.current == self.firm) & member  # (a firm's index is never negative: no firm is -1)
        discount = np.zeros(self.n)
        if self.status is not None:
            discount = self.status.perceive(outlook, self.firm, member, at_firm)
        discount, worth = self.perceive(outlook, at_firm, discount)
        self.show(outlook, worth)
        self.discount_now = self.discounts(discount)
        for j, d in self.discount_now.items():
            outlook.keep[:, j] *= 1.0 - d
        perks.forgive[:, self.firm] = np.maximum(perks.forgive[:, self.firm],
                                                 select(member, self.spec.forgiveness, 0.0))

    def perceive(self, outlook: Outlook, at_firm: np.ndarray,
                 discount: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The kind's part before the customers step: the member discount (given the tier discount ``discount``)
        and the programme's worth at each seller as a share of the price; a kind may add pressure, pull, a switching
        cost or a bond to ``outlook`` (``at_firm``: members whose current firm runs it). Status alone is worth
        nothing beyond its tiers."""
        return discount, {self.firm: np.zeros(self.n)}

    def show(self, outlook: Outlook, worth: dict[int, np.ndarray]) -> None:
        """The value each customer sees of the programme's ``worth``: a member's weakened by its other memberships,
        a non-member's at ``programme_attention`` if the programme is open to it (not invitation only, or its value
        tier invited)."""
        attention = outlook.book.attention
        if self.invited is not None:  # (open to all: every non-member sees it at ``attention``)
            attention = select(among(outlook.st.value_tier, self.invited), attention, 0.0)
        seen = select(self.member, outlook.weaken, attention)
        for j, w in worth.items():
            outlook.perks.value[:, j] += w * seen

    def discounts(self, discount: np.ndarray) -> dict[int, np.ndarray]:
        """Where the member discount applies: tier, member-day and club discounts apply where members earn (the
        firm, for programmes without points)."""
        return {j: discount for j in (self.earn_at or {self.firm: None})}

    # --- after the customers step ------------------------------------------------------------------------
    def settle(self, sales: Sales, u_aware: np.ndarray, u_redeem: np.ndarray, totals: dict) -> None:
        """Book the step of the launched programme into ``totals``: its launch cost, the latest purchases, the
        revenue its discounts gave up, tier qualification, what members earn, departures, enrolment and renewals,
        fees and operating cost."""
        t = sales.t
        if t == self.launched_at:
            totals["launch_cost"] = self.spec.launch_cost
        member = self.member
        here = sales.bought_from(self.sellers)
        self.last_earn[here & member] = t
        self.give_up(sales, totals)
        if self.status is not None:
            spend = sum(np.where(among(at, self.sellers) & member, money, 0.0) for at, money, _ in sales.views)
            visits = sum(np.where(among(at, self.sellers) & member, occ, 0) for at, _, occ in sales.views)
            self.status.qualify(t, self.launched_at, member, spend, visits)
        self.earn(sales, u_redeem, totals)
        gone = self.departures(sales)
        if gone is not None:
            self.end(gone)
            totals["quit"] += float(gone.sum())
        self.enrol(sales, here, u_aware, totals)
        members = float(self.member.sum())
        totals["fees"] = members * self.fee
        totals["operating_cost"] = members * self.operating

    def give_up(self, sales: Sales, totals: dict) -> None:
        """The revenue its discounts gave up: each seller's programme discounts, shared by each programme's rate."""
        for j, d in self.discount_now.items():
            total = sales.discount_sum[:, j]
            part = np.divide(d, total, out=np.zeros(self.n), where=total > 0)
            for (at, _, _), given in zip(sales.views, sales.discounts, strict=True):
                totals["member_discounts"] += float((given * part)[at == j].sum())

    def earn(self, sales: Sales, u_redeem: np.ndarray, totals: dict) -> None:
        """What members earn in the step (``u_redeem``: the ledger's redemption uniforms); status earns nothing."""

    def departures(self, sales: Sales) -> np.ndarray | None:
        """Memberships that end in the step other than at a renewal (None: none)."""
        return None

    def enrol(self, sales: Sales, here: np.ndarray, u: np.ndarray, totals: dict) -> None:
        """Joining (customers who bought from it this step, ``here``, and noticed it, ``u`` < awareness, join when
        their expected benefit covers their effort and the yearly fee) and yearly renewal of fee-paying members."""
        book, st, t = sales.book, sales.st, sales.t
        fee_year = self.fee * self.year
        considering = ~self.member & here & (u < self.awareness)
        if self.invited is not None:
            considering &= among(st.value_tier, self.invited)
        if fee_year > 0:
            renewing = self.member & (t - self.joined > 0) & ((t - self.joined) % self.year == 0)
        else:  # without a fee nobody renews (and the anniversaries are not worked out)
            renewing = np.zeros(self.n, bool)
        if not (considering.any() or renewing.any()):
            return
        benefit = self.expected_benefit(book, st, sales.price)
        join = considering & (benefit >= book.effort + fee_year)
        quit_ = renewing & (benefit < fee_year)
        self.member[join] = True
        self.joined[join] = t
        self.end(quit_)
        totals["joined"] = float(join.sum())
        totals["quit"] += float(quit_.sum())

    def end(self, who: np.ndarray) -> None:
        """Memberships that end: status is lost with them (a member who rejoins qualifies afresh)."""
        self.member[who] = False
        if self.status is not None:
            self.status.end(who)

    def expected_benefit(self, book: BookView, st: CustomerState, price: np.ndarray) -> np.ndarray:
        """The yearly benefit a customer expects from membership, money, from its own expected spend: the tier
        discount its spend and visits would reach, then the kind's benefit."""
        spend = book.yearly_spend(st, price, self.firm)
        benefit = np.zeros(self.n)
        if self.status is not None:  # the tier its own spend and visits would reach
            benefit += self.status.expected_discount(book, st, self.firm, spend)
        self.add_benefit(benefit, book, st, price, spend)
        return benefit

    def add_benefit(self, benefit: np.ndarray, book: BookView, st: CustomerState, price: np.ndarray,
                    spend: np.ndarray) -> None:
        """Add the kind's yearly benefit to ``benefit`` in place (``spend``: the expected yearly spend with the
        firm); status adds nothing beyond its tiers."""

    def account(self, book: BookView, t: int, totals: dict) -> None:
        """Who pays what. A firm's own programme: the firm bears every cost and collects the fees."""
        cost, fees = book.firm_totals["programme_cost"], book.firm_totals["programme_fees"]
        running = totals["operating_cost"] + totals["launch_cost"]
        cost[self.firm] += totals["reward_cost"] + totals["cashback"] + running
        fees[self.firm] += totals["fees"]
