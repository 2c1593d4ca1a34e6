"""Membership, departures and the firms' books (ODD 3.3.17-3.3.18): who is a firm's customer, who left it this
step and why, and each firm's step in numbers (its row of the ``firms`` table: customers, flows, satisfaction,
survey answers, loyalty classes, and its profit and loss).

A firm's customers are its current providers' customers in a contractual market, and in a repertoire market those
who bought there within the lapse window; a repertoire customer is lost to a firm when its last purchase there is
exactly the lapse window old.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loyaltysim.model import classifications, rules
from loyaltysim.model.agents import Firm
from loyaltysim.model.arrays import flat_index, pick, select, take
from loyaltysim.model.logs import categorical, concat, int8_missing_at
from loyaltysim.model.mechanisms.surveys import Surveys
from loyaltysim.model.state import ATTRACTIVE, CAUSE_NAMES, MUST_BE, NO_FIRM, ONE_DIMENSIONAL, Cause, CustomerState

LADDER_COLUMNS = tuple(f"stage_{s}" for s in classifications.LADDER[1:5])  # a firm's own customers' stages
DICK_BASU_COLUMNS = tuple(f"db_{s}" for s in classifications.DICK_BASU)
JONES_SASSER_COLUMNS = tuple(f"js_{s}" for s in classifications.JONES_SASSER)
BOOKS = (
    "price", "revenue", "cost_of_goods", "recovery_cost", "marketing_cost", "fixed_cost", "acquisition_cost",
    "investment_cost", "campaign_cost", "discounts", "member_discounts", "programme_cost", "programme_fees", "profit",
)
FIRM_METRICS = (
    "available", "customers", "share", "gained", "defections", "retention", "purchases", "units",
    "share_of_wallet", "satisfaction", "satisfaction_basic", "satisfaction_performance", "satisfaction_latent",
    "attitude", "failures", "complaints", "recovered", "contacts", "regained", "surveyed",
    "score_1", "score_2", "score_3", "score_4", "score_5", "nps",
    *LADDER_COLUMNS, *DICK_BASU_COLUMNS, *JONES_SASSER_COLUMNS, *BOOKS,
)
DEPARTURE_COLUMNS = ["step", "customer", "firm", "destination", "cause", "last_score", "score_about_left", "tenure",
                     "satisfaction", "value", "revenue", "second_lifetime"]


class Membership:
    """Who each firm's customers are (see the module docstring), in both kinds of market."""

    def __init__(self, contractual: bool, lapse_steps: int, n_firms: int):
        self.contractual = contractual
        self.lapse_steps = lapse_steps
        self.n_firms = n_firms

    def counts(self, st: CustomerState, t: int) -> np.ndarray:
        """Customers of each firm."""
        if self.contractual:
            return np.bincount(st.current[st.current >= 0], minlength=self.n_firms)
        return ((t - st.last_buy) < self.lapse_steps).sum(axis=0)

    def pairs(self, st: CustomerState, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(customer, firm) for each firm's customers, in customer order."""
        if self.contractual:
            who = np.flatnonzero(st.current >= 0)
            return who, take(st.current, who)
        return np.nonzero((t - st.last_buy) < self.lapse_steps)

    def departures(self, st: CustomerState, t: int) -> dict[str, np.ndarray]:
        """This step's defections: who left which firm, for whom, why, and their history."""
        if self.contractual:
            who = np.flatnonzero(st.step_left >= 0)
            firm = st.step_left[who]
            cause = st.step_cause[who]
            tenure = t - st.since[who, firm]
        else:  # lost when the last purchase at a firm is exactly the lapse window old
            who, firm = np.nonzero((t - st.last_buy) == self.lapse_steps)
            firm = firm.astype(np.int32)
            # the habit moved away from this firm: the cause recorded at that switch; a store visited now and
            # then lost to the customer's habitual firm: pushed if dissatisfied with it, else pulled away
            moved = (st.current[who] >= 0) & (st.current[who] != firm)
            # (or went elsewhere: to the outside option, after which a customer in the market has no firm)
            switched_away = (moved | (st.active[who] & (st.current[who] < 0))) & (st.previous[who] == firm)
            dissatisfied = st.satisfaction[who, firm] < st.threshold[who]
            cause = np.select(
                [switched_away, ~st.active[who], moved & dissatisfied, moved, dissatisfied],
                [st.switch_cause[who], Cause.NATURAL_CHURN, Cause.NEEDS_NOT_MET, Cause.COMPETITOR_OFFER,
                 Cause.NEEDS_NOT_MET],
                default=Cause.MARKET_FLUCTUATION,
            ).astype(np.int8)
            tenure = st.last_buy[who, firm] - st.since[who, firm]
        dest = st.current[who]
        contractual = self.contractual
        return {
            "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32), "firm": firm,
            "destination": np.where(dest == firm, NO_FIRM, dest).astype(np.int32), "cause": cause,
            "last_score": st.last_score[who], "score_about_left": st.scores[who, firm],
            "tenure": tenure.astype(np.int32),
            "satisfaction": st.satisfaction[who, firm],
            "value": st.step_lifetime_value[who] if contractual else np.full(who.size, np.nan),
            "revenue": st.step_lifetime_revenue[who] if contractual else np.full(who.size, np.nan),
            "second_lifetime": st.step_second_ended[who] if contractual else np.zeros(who.size, bool),
        }


def firm_books(firm: Firm, units: float, complaints: float, gained: float, discounts: float = 0.0,
               offer_costs: float = 0.0, member_discounts: float = 0.0, programme_cost: float = 0.0,
               programme_fees: float = 0.0) -> dict[str, float]:
    """A firm's profit and loss of the step from its volumes (discounts: revenue given up to personal offers; offer
    costs: what accepted offers cost besides; member discounts: revenue given up to programme discounts; programme
    cost: rewards redeemed, cashback paid, operating and launch costs, and what it pays per point to a coalition's
    operator or a co-brand card's issuer; programme fees: membership fees, a coalition's reimbursements and a
    co-brand partner's fees received). A firm not (yet) in the market books no revenue and no cost."""
    revenue = units * firm.price - discounts - member_discounts
    cogs = units * firm.unit_cost
    recovery = complaints * firm.recovery_cost
    acquisition = gained * firm.acquisition_cost
    campaign = firm.contact_spend + offer_costs
    cost = (cogs + recovery + firm.marketing_spend + firm.fixed_cost + acquisition + firm.invested + campaign
            + programme_cost)
    if not firm.available:
        revenue = cost = cogs = recovery = acquisition = 0.0
    return {
        "price": firm.price,
        "revenue": revenue,
        "cost_of_goods": cogs,
        "recovery_cost": recovery,
        "marketing_cost": firm.marketing_spend if firm.available else 0.0,
        "fixed_cost": firm.fixed_cost if firm.available else 0.0,
        "acquisition_cost": acquisition,
        "investment_cost": firm.invested,
        "campaign_cost": campaign,
        "discounts": discounts,
        "member_discounts": member_discounts,
        "programme_cost": programme_cost,
        "programme_fees": programme_fees,
        "profit": revenue + programme_fees - cost,
    }


class Accounts:
    """The departures log and each firm's step in numbers (``Firm.books`` and ``Firm.metrics``)."""

    def __init__(self, membership: Membership, st: CustomerState):
        self.membership = membership
        self.members_prev = membership.counts(st, 0)
        self.departures: list[dict[str, np.ndarray]] = []

    def settle(self, st: CustomerState, firms: list[Firm], t: int, kano: np.ndarray, loss_aversion: float,
               classify_codes: Callable[[str], np.ndarray], responses: dict[str, np.ndarray] | None,
               programme_totals: dict[str, np.ndarray] | None) -> None:
        """Log the step's departures and write each firm's books and metrics (from the survey answers of the
        step, ``responses``, and the programmes' costs and fees by seller, ``programme_totals``)."""
        members = self.membership.counts(st, t)
        dep = self.membership.departures(st, t)
        self.departures.append(dep)
        sums = step_sums(st, firms, self.membership.pairs(st, t), dep, kano, loss_aversion, classify_codes)
        for f in firms:
            j = f.index
            f.books = firm_books(f, sums["units"][j], sums["complaints"][j], sums["gained"][j],
                                 sums["discounts"][j], sums["offer_costs"][j], sums["member_discounts"][j],
                                 programme_totals["programme_cost"][j] if programme_totals else 0.0,
                                 programme_totals["programme_fees"][j] if programme_totals else 0.0)
            f.metrics = {**firm_metrics(f, sums, members, self.members_prev), **Surveys.firm_metrics(responses, j),
                         **class_counts(sums, j), **f.books}
        self.members_prev = members

    def defections_table(self, firm_names: np.ndarray) -> pd.DataFrame:
        """Every departure: step, customer, the firm left and the destination, the cause, the last survey answer
        (about whichever firm) and the last answer about the firm left, tenure, satisfaction with the firm left, and
        (contractual) the relationship's value and revenue."""
        dep = concat(self.departures, DEPARTURE_COLUMNS)
        last_score = np.where(dep["last_score"] > 0, dep["last_score"], 0)
        defections = pd.DataFrame({
            "step": dep["step"].astype(np.int32),
            "customer": dep["customer"].astype(np.int32),
            "firm": firm_names[dep["firm"].astype(int)],
            "destination": firm_names[dep["destination"].astype(int)],
            "cause": categorical(dep["cause"].astype(int), CAUSE_NAMES),
            "last_score": int8_missing_at(last_score, last_score == 0),
            "score_about_left": int8_missing_at(dep["score_about_left"], dep["score_about_left"] == 0),
            "tenure": dep["tenure"].astype(np.int32),
            "satisfaction": dep["satisfaction"].astype(np.float64),
            "value": dep["value"].astype(np.float64),
            "revenue": dep["revenue"].astype(np.float64),
            "second_lifetime": dep["second_lifetime"].astype(bool),
        })
        return defections


def step_sums(st: CustomerState, firms: list[Firm], pairs: tuple[np.ndarray, np.ndarray],
              departures: dict[str, np.ndarray], kano: np.ndarray, loss_aversion: float,
              classify_codes: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """The step's sums by firm: sales, service, flows of customers, and the sums behind its means (satisfaction of
    its customers ``pairs``, attitude and satisfaction by Kano class of those it holds, share of wallet), and the
    counts of each loyalty class. Every sum runs in customer order, as a masked column sum would."""
    n_firms = len(firms)
    who, firm = pairs
    firm = firm.astype(np.intp, copy=False)
    # sales by firm: non-buyers are counted in an extra bin, dropped (the same sums, without gathering buyers)
    # (bin indices as np.bincount counts them, intp: converted once for the sums that share them)
    sold_at = select(st.step_firm >= 0, st.step_firm, n_firms).astype(np.intp)

    def sales(x: np.ndarray) -> np.ndarray:
        return np.bincount(sold_at, weights=x, minlength=n_firms + 1)[:n_firms]

    def by_firm(of: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(of, weights=weights, minlength=n_firms)

    # the holders' sums likewise: each customer's current firm, customers without one in an extra bin, dropped (the
    # same sums, in customer order, without gathering the holders)
    held_at = select(st.current >= 0, st.current, n_firms).astype(np.intp)

    def by_holder(x: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(held_at, weights=x, minlength=n_firms + 1)[:n_firms]

    own = flat_index(who, firm, n_firms)  # each pair's element of the [n, F] arrays
    won_back = st.step_regained
    components = satisfaction_components(st, firms, kano, loss_aversion)
    sums = {
        "purchases": sales(st.step_purchases),
        "units": sales(st.step_units),
        "failures": by_firm(st.step_firm[st.step_failed]),
        "complaints": by_firm(st.step_firm[st.step_complained]),
        "recovered": by_firm(st.step_firm[st.step_recovered]),
        "gained": by_firm(st.step_gained[st.step_gained >= 0]),
        "discounts": sales(st.step_discount),
        "regained": by_firm(st.current[won_back]),
        "offer_costs": by_firm(st.current[won_back], st.offer_cost[won_back]),
        "defections": by_firm(departures["firm"]),
        "satisfaction": by_firm(firm, pick(st.satisfaction, own)),
        "attitude": by_holder(st.attitude),
        "holders": by_holder(),
        **{f"satisfaction_{kind}": by_holder(c)
           for kind, c in zip(("basic", "performance", "latent"), components, strict=True)},
        "wallet_own": by_firm(firm, pick(st.wallet, own)),
        "wallet_all": by_firm(firm, take(rules.row_total(st.wallet), who)),
        "member_discounts": sales(st.step_member_discount),
    }
    codes = {kind: classify_codes(kind) for kind in classifications.NAMES}
    sums.update(classifications.all_counts_by_firm(st.current, codes, n_firms, held_at=held_at))  # kinds' [F, K]
    return sums


def firm_metrics(f: Firm, sums: dict[str, np.ndarray], members: np.ndarray, members_before: np.ndarray) -> dict:
    """Firm ``f``'s customers, flows, sales, service and means of the step (its row of the ``firms`` table, but for
    the survey answers, the loyalty classes and the books)."""
    j = f.index
    nan = float("nan")
    total = members.sum()
    holders = sums["holders"][j]
    held_mean = {f"satisfaction_{kind}": sums[f"satisfaction_{kind}"][j] / holders if holders else nan
                 for kind in ("basic", "performance", "latent")}
    return {
        "available": f.available,
        "customers": int(members[j]),
        "share": members[j] / total if total else nan,
        "gained": int(sums["gained"][j]),
        "defections": int(sums["defections"][j]),
        "retention": 1.0 - sums["defections"][j] / members_before[j] if members_before[j] else nan,
        "purchases": float(sums["purchases"][j]),
        "units": float(sums["units"][j]),
        "share_of_wallet": sums["wallet_own"][j] / sums["wallet_all"][j] if sums["wallet_all"][j] > 0 else nan,
        "satisfaction": sums["satisfaction"][j] / members[j] if members[j] else nan,
        **held_mean,
        "attitude": sums["attitude"][j] / holders if holders else nan,
        "failures": int(sums["failures"][j]),
        "complaints": int(sums["complaints"][j]),
        "recovered": int(sums["recovered"][j]),
        "contacts": int(f.contacts),
        "regained": int(sums["regained"][j]),
    }


def class_counts(sums: dict[str, np.ndarray], j: int) -> dict[str, int]:
    """Firm ``j``'s customers by ladder stage (first-time to advocate), Dick & Basu and Jones & Sasser class."""
    out = {col: int(sums["ladder"][j, k + 1]) for k, col in enumerate(LADDER_COLUMNS)}
    out.update({col: int(sums["dick_basu"][j, k]) for k, col in enumerate(DICK_BASU_COLUMNS)})
    out.update({col: int(sums["jones_sasser"][j, k]) for k, col in enumerate(JONES_SASSER_COLUMNS)})
    return out


def satisfaction_components(st: CustomerState, firms: list[Firm], kano: np.ndarray, loss_aversion: float,
                            who: np.ndarray | None = None) -> list[np.ndarray]:
    """For customers ``who`` (who have a firm; every customer if None, meaningful only for those with a firm, at
    firm 0 for the others): the current firm's offer against their expectations, summed over
    the attributes of each Kano class (must-be, one-dimensional, attractive), weighted by importance: how far
    each kind of need is met now (measurement; the customer's smoothed satisfaction is the behavioural state)."""
    levels = np.ascontiguousarray(np.array([f.levels for f in firms]).T)  # [A, F]
    # attribute-major ([A, n]), as the state keeps weights and expectations: each attribute's row is contiguous
    gap = take(levels, np.maximum(st.current, 0), axis=1) - st.expectation.T
    sums = [rules.attribute_sum(st.weights.T, gap, kano, loss_aversion, c)
            for c in (MUST_BE, ONE_DIMENSIONAL, ATTRACTIVE)]
    return sums if who is None else [take(c, who) for c in sums]
