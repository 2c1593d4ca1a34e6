"""Loyalty classifications derived from customer state: measurement, never behaviour.

Behavioural loyalty is repeat patronage: in a contractual market, a tenure of at least ``repeat_tenure``; in a
repertoire market, at least ``repeat_share`` of the customer's recent purchases at its habitual firm.
Attitudinal loyalty is an attitude of at least ``attitude_high``. From the two:

* **Dick & Basu (1994)**: true (high attitude, high repeat), latent (high, low), spurious (low, high: inertia or
  hostages), none.
* **Jones & Sasser (1995)**: apostle (completely satisfied, loyal in attitude and behaviour), loyalist
  (satisfied, repeat buying), mercenary (satisfied, not loyal), hostage (dissatisfied, repeat buying: held by
  switching costs), defector (dissatisfied, not loyal).
* **The loyalty ladder (Griffin 1995)**: prospect (never a customer), first-time, repeat, client (a regular:
  behaviourally loyal), advocate (a client who is attitudinally loyal and satisfied enough to recommend),
  lapsed (a former customer with no firm now).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loyaltysim.model.arrays import flat_index, pick, select, take
from loyaltysim.model.rules import row_total
from loyaltysim.model.state import NO_FIRM, CustomerState

DICK_BASU = ("none", "spurious", "latent", "true")
JONES_SASSER = ("defector", "hostage", "mercenary", "loyalist", "apostle")
LADDER = ("prospect", "first_time", "repeat", "client", "advocate", "lapsed")
NAMES = {"ladder": LADDER, "dick_basu": DICK_BASU, "jones_sasser": JONES_SASSER}  # each kind's classes, by code


@dataclass(frozen=True)
class Definitions:
    contractual: bool
    repeat_steps: int
    repeat_share: float
    attitude_high: float
    delight_level: float
    advocate_level: float

    @classmethod
    def from_scenario(cls, scenario) -> Definitions:
        """The scenario's ``classification`` thresholds, in steps."""
        unit = scenario.time.step
        c = scenario.classification
        return cls(contractual=scenario.market.type == "contractual", repeat_steps=c.repeat_tenure.steps(unit),
                   repeat_share=c.repeat_share, attitude_high=c.attitude_high,
                   delight_level=scenario.market.customers.delight_level,
                   advocate_level=scenario.market.network.advocate_level)


class Classifier:
    """Each customer's classes at the current step, computed once a step however often they are asked for."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self.cached: dict = {}  # the step they were made at ("step") and each kind's codes

    def codes(self, kind: str, st: CustomerState, t: int) -> np.ndarray:
        """Each customer's class of ``kind`` (``ladder``, ``dick_basu`` or ``jones_sasser``) as codes."""
        if kind not in NAMES:
            raise KeyError(kind)
        if self.cached.get("step") != t:
            at = _at_current(st)
            sat = _current_satisfaction(st, at)
            self.cached = {"step": t, "satisfaction": sat, **classify_all(st, self.definitions, sat, at)}
        return self.cached[kind]

    def current_satisfaction(self, st: CustomerState, t: int) -> np.ndarray:
        """Each customer's satisfaction with its current firm (0 without one), at the step the classes are made at:
        worked out with them, once a step."""
        self.codes("ladder", st, t)
        return self.cached["satisfaction"]


def _at_current(st: CustomerState) -> tuple[np.ndarray, np.ndarray]:
    """(who has a firm, each customer's flat position at its current firm, firm 0 without one, in the [n, F]
    satisfaction and wallet arrays)."""
    has = st.current >= 0
    return has, flat_index(np.arange(len(st)), select(has, st.current, 0), st.satisfaction.shape[1])


def _current_satisfaction(st: CustomerState, at: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    has, own = _at_current(st) if at is None else at
    return select(has, pick(st.satisfaction, own), 0.0)


def behavioural_loyal(st: CustomerState, d: Definitions, at: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> np.ndarray:
    """(``at``: :func:`_at_current`, if known.)"""
    if at is None or st.wallet.shape[1] != st.satisfaction.shape[1]:
        at = _at_current(st)
    has, own = at
    if d.contractual:
        return has & (st.tenure >= d.repeat_steps)
    own = pick(st.wallet, own)
    total = row_total(st.wallet)
    share = np.divide(own, total, out=np.zeros_like(own), where=total > 0)
    return has & (share >= d.repeat_share) & (st.relationship_purchases >= 2)


def attitudinal_loyal(st: CustomerState, d: Definitions) -> np.ndarray:
    return (st.current >= 0) & (st.attitude >= d.attitude_high)


def classify_all(st: CustomerState, d: Definitions, sat: np.ndarray | None = None,
                 at: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The three classifications at once (codes by kind: ``dick_basu``, ``jones_sasser``, ``ladder``), sharing the
    loyalty and satisfaction they are built from (``sat``: the satisfaction with the current firm, ``at``: the
    positions at the current firm, if known)."""
    at = _at_current(st) if at is None else at
    sat = _current_satisfaction(st, at) if sat is None else sat
    loyal = behavioural_loyal(st, d, at)
    attitude = attitudinal_loyal(st, d)
    return {"dick_basu": dick_basu(st, d, loyal, attitude), "jones_sasser": jones_sasser(st, d, sat, loyal, attitude),
            "ladder": ladder_stage(st, d, sat, loyal, attitude)}


def dick_basu(st: CustomerState, d: Definitions, loyal: np.ndarray | None = None,
              attitude: np.ndarray | None = None) -> np.ndarray:
    """Codes into :data:`DICK_BASU` (``loyal``, ``attitude``: behavioural and attitudinal loyalty, if known)."""
    loyal = behavioural_loyal(st, d) if loyal is None else loyal
    attitude = attitudinal_loyal(st, d) if attitude is None else attitude
    return (loyal.astype(np.int8) + 2 * attitude.astype(np.int8)).astype(np.int8)


def jones_sasser(st: CustomerState, d: Definitions, sat: np.ndarray | None = None, loyal: np.ndarray | None = None,
                 attitude: np.ndarray | None = None) -> np.ndarray:
    """Codes into :data:`JONES_SASSER` (``sat``: satisfaction with the current firm, if known)."""
    sat = _current_satisfaction(st) if sat is None else sat
    satisfied = sat >= st.threshold
    loyal = behavioural_loyal(st, d) if loyal is None else loyal
    attitude = attitudinal_loyal(st, d) if attitude is None else attitude
    apostle = satisfied & (sat >= d.delight_level) & loyal & attitude
    # satisfied: mercenary (2), loyalist (3) or apostle (4); not: defector (0) or hostage (1)
    return (2 * satisfied + loyal + apostle).astype(np.int8)


def ladder_stage(st: CustomerState, d: Definitions, sat: np.ndarray | None = None, loyal: np.ndarray | None = None,
                 attitude: np.ndarray | None = None) -> np.ndarray:
    """Codes into :data:`LADDER`."""
    has = st.current >= 0
    client = behavioural_loyal(st, d) if loyal is None else loyal
    attitude = attitudinal_loyal(st, d) if attitude is None else attitude
    sat = _current_satisfaction(st) if sat is None else sat
    advocate = client & attitude & (sat >= d.advocate_level)
    never = st.previous == NO_FIRM
    # with a firm: first-time (1), repeat (2), client (3), advocate (4; every advocate is a client, every client a
    # repeat buyer); without one: prospect (0) or lapsed (5)
    with_firm = 1 + np.maximum(st.relationship_purchases >= 2, 2 * client) + advocate
    return select(has, with_firm, select(never, 0, 5)).astype(np.int8)


def counts_by_firm(current: np.ndarray, codes: np.ndarray, n_firms: int, n_codes: int,
                   holders: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """[F, K] counts of each code among each firm's current customers (``holders``: the customers with a firm and
    their firms, if already found)."""
    who, firm = holders if holders is not None else (np.flatnonzero(current >= 0), None)
    firm = take(current, who) if firm is None else firm
    flat = np.bincount(firm * n_codes + take(codes, who), minlength=n_firms * n_codes)
    return flat.reshape(n_firms, n_codes)


def all_counts_by_firm(current: np.ndarray, codes: dict[str, np.ndarray], n_firms: int,
                       holders: tuple[np.ndarray, np.ndarray] | None = None,
                       held_at: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`counts_by_firm` of each kind in ``codes`` (kind: codes, as :meth:`Classifier.codes` gives them), counted
    at once: each holder's firm and classes as one combined code, and each kind's [F, K] counts summed out of the
    joint counts (whole numbers: the same counts). ``held_at``: every customer's current firm, ``n_firms`` for those
    without one, if known: then every customer is counted, those without a firm in an extra firm, dropped."""
    sizes = [len(NAMES[kind]) for kind in codes]
    if held_at is not None:
        combined = held_at.astype(np.int64)
        for kind, size in zip(codes, sizes, strict=True):
            combined *= size
            combined += codes[kind]
        joint = np.bincount(combined, minlength=(n_firms + 1) * int(np.prod(sizes))).reshape(n_firms + 1, *sizes)
        joint = joint[:n_firms]
    else:
        who, firm = holders if holders is not None else (np.flatnonzero(current >= 0), None)
        firm = take(current, who) if firm is None else firm
        combined = firm.astype(np.int64)
        for kind, size in zip(codes, sizes, strict=True):
            combined *= size
            combined += take(codes[kind], who)
        joint = np.bincount(combined, minlength=n_firms * int(np.prod(sizes))).reshape(n_firms, *sizes)
    axes = range(1, len(sizes) + 1)
    return {kind: joint.sum(axis=tuple(a for a in axes if a != k)) for k, kind in zip(axes, codes, strict=True)}
