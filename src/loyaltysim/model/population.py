"""Initialization (ODD 3.1): every customer's traits and starting state, drawn from the ``population`` stream.

Traits by segment (purchase rate gamma-mixed: the NBD of Ehrenberg 1959; basket; price sensitivity), value tiers
by expected spend, variety seeking, attribute importance, satisfaction thresholds; expectations around the average
offer of the firms in the market; beliefs near each firm's true quality; a first firm chosen by the same logit as
later choices; a tenure, a relationship history and a wallet consistent with it; relationship managers for the
high-value customers of firms that have them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model import rules
from loyaltysim.model.state import NO_FIRM, CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.agents import Firm
    from loyaltysim.scenario import LoyaltyScenario


def clipped_normal(rng: np.random.Generator, spec, size) -> np.ndarray:
    """Draws of a scenario's ``Normal`` (mean, sd), clipped to its min and max when it has them."""
    x = spec.mean + spec.sd * rng.standard_normal(size)
    if spec.min is not None or spec.max is not None:
        x = np.clip(x, spec.min, spec.max)
    return x


def populate(st: CustomerState, scenario: LoyaltyScenario, firms: list[Firm], kano: np.ndarray, price_ref: float,
             wallet_decay: float, rng: np.random.Generator) -> None:
    """Draw every customer's traits and starting state into ``st``."""
    draw_traits(st, scenario, rng)
    start_relationships(st, scenario, firms, kano, price_ref, wallet_decay, rng)


def draw_traits(st: CustomerState, scenario: LoyaltyScenario, rng: np.random.Generator) -> None:
    """Segments, purchase rates, baskets, price sensitivity, value tiers, variety seeking, importance weights and
    satisfaction thresholds."""
    unit = scenario.time.step
    c = scenario.market.customers
    n = len(st)
    segments = c.segments
    if segments:
        st.segment[:] = rng.choice(len(segments), size=n, p=[s.share for s in segments])
    for k, seg in enumerate(segments or [None]):
        rows = np.flatnonzero(st.segment == k)
        size = rows.size
        rate = (seg.purchase_rate if seg and seg.purchase_rate else c.purchase_rate)
        mean = rate.mean.per_step(unit)
        st.purchase_rate[rows] = rng.gamma(rate.shape, mean / rate.shape, size)
        st.basket[rows] = clipped_normal(rng, seg.basket if seg and seg.basket else c.basket, size)
        sens = seg.price_sensitivity if seg and seg.price_sensitivity else c.price_sensitivity
        st.price_sensitivity[rows] = clipped_normal(rng, sens, size)
    expected_spend = st.purchase_rate * st.basket
    st.value_tier[:] = np.searchsorted(np.quantile(expected_spend, [1 / 3, 2 / 3]), expected_spend, side="right")
    st.variety[:] = clipped_normal(rng, c.variety_seeking, n)
    raw = np.column_stack([clipped_normal(rng, a.importance, n) for a in scenario.market.attributes])
    raw = np.maximum(raw, 0.0)
    total = raw.sum(axis=1, keepdims=True)
    st.weights[:] = np.where(total > 0, raw / np.where(total > 0, total, 1.0), 1.0 / raw.shape[1])
    st.threshold[:] = clipped_normal(rng, c.satisfaction_threshold, n)


def start_relationships(st: CustomerState, scenario: LoyaltyScenario, firms: list[Firm], kano: np.ndarray,
                        price_ref: float, wallet_decay: float, rng: np.random.Generator) -> None:
    """Expectations, beliefs, the first firm (by logit choice among the firms in the market), tenure, relationship
    purchases, wallet and relationship managers."""
    c = scenario.market.customers
    n, n_firms = len(st), len(firms)
    levels = np.array([f.levels for f in firms])
    available = np.array([f.available for f in firms])
    # customers take the average offer of the firms in the market for granted
    spread = c.expectation_spread * rng.standard_normal((n, levels.shape[1]))
    st.expectation[:] = np.clip(levels[available].mean(axis=0)[None, :] + spread, 0.0, 1.0)
    quality = rules.quality_index(st.weights, levels, st.expectation, kano, c.loss_aversion)
    st.perceived[:] = np.clip(quality + 0.05 * rng.standard_normal((n, n_firms)), 0.0, 1.0)
    relative_price = np.array([f.price for f in firms]) / price_ref - 1.0
    utility = c.quality_weight * st.perceived - st.price_sensitivity[:, None] * relative_price[None, :]
    utility = np.where(available[None, :], utility, -np.inf)
    st.current[:] = rules.logit_choice(utility, rng.gumbel(size=(n, n_firms)), c.choice_noise)
    st.tenure[:] = rng.integers(1, max(scenario.time.horizon.steps(scenario.time.step), 2), n)
    rows = np.arange(n)
    st.relationship_purchases[:] = np.ceil(st.tenure * st.purchase_rate).astype(np.int32)
    st.since[rows, st.current] = -st.tenure
    st.last_buy[rows, st.current] = 0
    st.wallet[rows, st.current] = st.purchase_rate * st.basket / (1.0 - wallet_decay)
    managers = np.array([f.managers for f in firms])[st.current]
    st.manager[:] = np.where((st.value_tier == 2) & (managers > 0), rows % np.maximum(managers, 1), NO_FIRM)
