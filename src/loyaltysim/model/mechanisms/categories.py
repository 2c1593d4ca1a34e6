"""The customers' other needs: categories beyond the main market, where coalition and co-brand partners sell.

The main market (:mod:`loyaltysim.model.rules`) carries the full theory of satisfaction and loyalty. A **category**
(``market.categories``: fuel, a department store, a card) is a simpler repertoire market over the same customers
(row ``i`` is the same person everywhere, with the same price sensitivity): each customer has its own purchase
rate (gamma-mixed Poisson, Ehrenberg 1959) and basket in the category, and on each occasion picks an outlet by
multinomial logit over the outlet's quality, its price (net of the programme discounts the customer holds there,
and of the value it counts the programmes' rewards as worth), the points pressure toward it, and habit (the outlet
it used last). This is what lets a coalition's members shift their spending toward the partners (cross-shopping):
it comes out of the programme value and pressure the members see at the partners, nothing else.

:func:`step_category` advances the rows of a slice with the step's variates, like
:func:`loyaltysim.model.rules.step_customers`, so the one-at-a-time path steps categories row by row too;
:func:`settle` books each outlet's step (the ``categories`` table).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from loyaltysim.model.rules import logit_choice
from loyaltysim.model.state import NO_FIRM


@dataclass
class CategoryState:
    """One category's customer arrays: traits, habit, share of wallet and what happened in the last step."""

    rate: np.ndarray  # f8[n] expected occasions per step
    basket: np.ndarray  # f8[n] units per occasion
    last: np.ndarray  # i4[n] outlet used last (local index), -1 none
    wallet: np.ndarray  # f8[n, K] decayed units bought at each outlet
    step_outlet: np.ndarray  # i4[n] outlet bought from in the last step, -1 none
    step_purchases: np.ndarray  # i4[n]
    step_units: np.ndarray  # f8[n]
    step_member_discount: np.ndarray  # f8[n] revenue given up to programme discounts

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class CategoryVariates:
    occasions: np.ndarray  # i8[n]
    gumbel: np.ndarray  # f8[n, K]


class Category:
    """A category's outlets, its customers' state, and its own random stream."""

    def __init__(self, spec, base: int, n: int, unit: str, price_sensitivity: np.ndarray,
                 wallet_decay: float, rng: np.random.Generator):
        self.spec = spec
        self.name = spec.name
        self.base = base  # global index of its first outlet (after the market's firms and earlier categories)
        self.names = [o.name for o in spec.outlets]
        self.price = np.array([o.price for o in spec.outlets])
        self.unit_cost = np.array([o.unit_cost for o in spec.outlets])
        self.quality = np.array([o.quality for o in spec.outlets])
        self.price_ref = float(self.price.mean())
        self.price_sensitivity = price_sensitivity  # the customers' own trait, shared with the main market
        self.decay = wallet_decay
        self.rng = rng
        k = len(self.names)
        rate = spec.purchase_rate
        mean = rate.mean.per_step(unit)
        b = spec.basket
        basket = b.mean + b.sd * rng.standard_normal(n)
        if b.min is not None or b.max is not None:
            basket = np.clip(basket, b.min, b.max)
        self.state = CategoryState(
            rate=rng.gamma(rate.shape, mean / rate.shape, n),
            basket=basket,
            last=np.full(n, NO_FIRM, np.int32),
            wallet=np.zeros((n, k)),
            step_outlet=np.full(n, NO_FIRM, np.int32),
            step_purchases=np.zeros(n, np.int32),
            step_units=np.zeros(n),
            step_member_discount=np.zeros(n),
        )
        st = self.state
        st.last[:] = logit_choice(self.utility(slice(None), None), rng.gumbel(size=(n, k)), spec.choice_noise)
        st.wallet[np.arange(n), st.last] = st.rate * st.basket / (1.0 - wallet_decay)

    def utility(self, rows: slice, perks) -> np.ndarray:
        """Each customer's utility of each outlet before habit and taste shocks."""
        price = self.price[None, :]
        if perks is not None:
            price = price * (1.0 - perks.discount[rows]) * (1.0 - perks.value[rows])
        u = (self.spec.quality_weight * self.quality[None, :]
             - self.price_sensitivity[rows][:, None] * (price / self.price_ref - 1.0))
        return u if perks is None else u + perks.pressure[rows]

    def draw(self) -> CategoryVariates:
        n, k = self.state.rate.shape[0], len(self.names)
        return CategoryVariates(occasions=self.rng.poisson(self.state.rate), gumbel=self.rng.gumbel(size=(n, k)))

    def perks_view(self, perks):
        """The part of the market's perks (customer x every firm and outlet) that concerns this category."""
        return perks_columns(perks, slice(self.base, self.base + len(self.names)))


def perks_columns(perks, cols: slice):
    """The programmes' perks (customer x seller) of the sellers in ``cols`` (None without programmes)."""
    if perks is None:
        return None
    return type(perks)(**{name: getattr(perks, name)[:, cols] for name in vars(perks)})


def step_category(cat: Category, rows: slice, v: CategoryVariates, perks, active: np.ndarray) -> None:
    """Advance the customers in ``rows`` of one category by a step, in place: customers in the market with an
    occasion choose an outlet (habit favours the last one) and buy their basket per occasion there."""
    st = cat.state
    k = np.where(active[rows], v.occasions[rows], 0)
    last = st.last[rows]
    u = cat.utility(rows, perks)
    outlets = np.arange(len(cat.names))
    u = u + cat.spec.habit * (outlets[None, :] == last[:, None])
    choice = logit_choice(u, v.gumbel[rows], cat.spec.choice_noise)
    buying = k > 0
    m = last.shape[0]
    idx = np.arange(m)
    units = np.where(buying, k * st.basket[rows], 0.0)
    at = np.where(buying, choice, NO_FIRM).astype(np.int32)
    discount = 0.0 if perks is None else units * cat.price[choice] * perks.discount[rows][idx, choice]
    bought = buying[:, None] & (outlets[None, :] == choice[:, None])
    st.wallet[rows] = cat.decay * st.wallet[rows] + np.where(bought, units[:, None], 0.0)
    st.last[rows] = np.where(buying, choice, last)
    st.step_outlet[rows] = at
    st.step_purchases[rows] = k.astype(np.int32)
    st.step_units[rows] = units
    st.step_member_discount[rows] = np.where(buying, discount, 0.0)


def settle(categories: list[Category], firm_totals: dict[str, np.ndarray] | None, t: int) -> list[dict]:
    """Each category outlet's step: habitual customers (whose last purchase in the category was there), sales,
    share of the category's units, and its books (programme costs and settlements from the loyalty programmes,
    ``firm_totals`` by global seller index; None without programmes)."""
    rows = []
    for cat in categories:
        cs = cat.state
        k = len(cat.names)
        buyer = cs.step_outlet >= 0
        at = cs.step_outlet[buyer]
        units = np.bincount(at, weights=cs.step_units[buyer], minlength=k)
        purchases = np.bincount(at, weights=cs.step_purchases[buyer], minlength=k)
        discounts = np.bincount(at, weights=cs.step_member_discount[buyer], minlength=k)
        customers = np.bincount(cs.last[cs.last >= 0], minlength=k)
        total = units.sum()
        for j, name in enumerate(cat.names):
            g = cat.base + j
            revenue = units[j] * cat.price[j] - discounts[j]
            cogs = units[j] * cat.unit_cost[j]
            cost = firm_totals["programme_cost"][g] if firm_totals else 0.0
            fees = firm_totals["programme_fees"][g] if firm_totals else 0.0
            rows.append({
                "step": t, "category": cat.name, "outlet": name, "habitual_customers": int(customers[j]),
                "purchases": float(purchases[j]), "units": float(units[j]),
                "share": units[j] / total if total > 0 else float("nan"), "price": float(cat.price[j]),
                "revenue": revenue, "cost_of_goods": cogs, "member_discounts": float(discounts[j]),
                "programme_cost": cost, "programme_fees": fees, "profit": revenue + fees - cogs - cost,
            })
    return rows
