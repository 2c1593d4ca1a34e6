"""What the book hands its ledgers in a step (:class:`Outlook` before the customers step, :class:`Sales` after), the
perks the programmes add up to, and what a ledger may ask of the book (:class:`BookView`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from loyaltysim.model.state import CustomerState


class BookView(Protocol):
    """The programme book as its ledgers see it: the market's size and settings, the customers' joining effort and
    birthdays, spend and shares of wallet by seller, money in utility, the per-seller totals and settlement rows."""

    n: int
    n_firms: int
    year: int
    attention: float
    attainable: bool
    pressure: float
    goal_gradient: float
    effort: np.ndarray
    birthday: np.ndarray
    seller_names: list[str]
    firm_totals: dict[str, np.ndarray]

    def wallet_share(self, st: CustomerState, j: int) -> np.ndarray: ...

    def yearly_spend(self, st: CustomerState, price: np.ndarray, j: int, whole: bool = False) -> np.ndarray: ...

    def money_to_utility(self, st: CustomerState, money: np.ndarray, yearly_spend: np.ndarray) -> np.ndarray: ...

    def add_settlement(self, t: int, ledger, party: str, role: str, points_issued: float, points_redeemed: float,
                       paid: float, received: float, reward_cost: float, running_cost: float,
                       membership_fees: float) -> None: ...


# a ledger's totals of a step (the programmes table's figures), and per seller (the settlement table's)
STEP_TOTALS = ("issued", "redeemed", "expired", "redemptions", "reward_cost", "cashback", "member_discounts",
               "operating_cost", "launch_cost", "fees", "joined", "quit")
SELLER_TOTALS = ("issued", "redeemed", "reward_cost")


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

    # column-major (one seller's column is contiguous): the programmes write them seller by seller, and the customer
    # rules read them firm-major, which is their transpose
    value: np.ndarray  # f8[n, S] share of the price the programmes' rewards are worth to the customer (utility only)
    discount: np.ndarray  # f8[n, S] share off the price a member pays
    pressure: np.ndarray  # f8[n, S] utility of a seller whose next reward is near (points pressure)
    priority: np.ndarray  # f8[n, S] share of service failures removed (priority service)
    forgive: np.ndarray  # f8[n, S] share of a failure's damage forgiven

    @classmethod
    def zeros(cls, n: int, n_firms: int) -> Perks:
        """No perks yet, as the book starts a step: zeros, but for ``discount``, which the book sets once every
        programme has said what it keeps of each seller's price (None until then)."""
        value, pressure, priority, forgive = (np.zeros((n, n_firms), order="F") for _ in range(4))
        return cls(value=value, discount=None, pressure=pressure, priority=priority, forgive=forgive)


@dataclass
class Outlook:
    """Before the customers step: what the ledgers read (the book, the customers, the step, the prices, each
    customer's dilution ``weaken``) and what they add to, ledger after ledger: the perks, the financial switching
    cost at the current firm, club membership there, the talk multiplier, the product of (1 - discount) per seller
    and the strongest goal-gradient pull on usage (contractual markets)."""

    book: BookView
    st: CustomerState
    t: int
    price: np.ndarray
    contractual: bool
    weaken: np.ndarray  # 1 / (1 + membership_dilution x (memberships - 1))
    perks: Perks
    financial: np.ndarray  # f8[n]
    club: np.ndarray  # bool[n]
    talk: np.ndarray  # f8[n]
    keep: np.ndarray  # f8[n, S]
    pull: np.ndarray  # f8[n]

    def pressure(self, g: np.ndarray) -> np.ndarray:
        """The points pressure (utility) of a member at squared progress ``g``, weakened by its other memberships."""
        return self.book.pressure * g * self.weaken

    def goal_pull(self, g: np.ndarray) -> np.ndarray:
        """The goal-gradient pull on a member's usage at squared progress ``g``, weakened likewise."""
        return self.book.goal_gradient * g * self.weaken


@dataclass
class Sales:
    """After the customers step: what each customer bought in each market, ``views`` (seller, money spent,
    occasions; seller -1 for none; the market first, then each category), the member discounts given there, each
    seller's sum of the programmes' discount rates (from the step's prepare), and the step's setting."""

    book: BookView
    st: CustomerState
    t: int
    price: np.ndarray
    views: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    discounts: list[np.ndarray]
    discount_sum: np.ndarray | None
    lapse_steps: int
    contractual: bool

    def bought_from(self, sellers) -> np.ndarray:
        """Customers who bought from one of ``sellers`` in any market this step."""
        here = np.zeros(self.book.n, bool)
        for at, _, _ in self.views:
            here |= among(at, sellers)
        return here


