"""Firms' campaigns (ODD 3.3.21-3.3.22): win-back of lapsed customers, retention save offers on an early warning,
and personalised offers; one machinery of selection, offer, budget and recontact rule.

Each round a firm picks customers (:class:`Campaigns`: ``win_back`` by lapse, cause and first-lifetime value;
``retention`` and ``personalised`` by a score from the firm's own records, :mod:`~loyaltysim.model.mechanisms.crm`),
and gives them its offer: the customer holds it (a later offer replaces an earlier one), and whether a lapsed
customer accepts, or a saved one stays, is its own choice, made by the customer rules like any other. Random draws
(a win-back ``share``, retention tie-breaks and holdouts) come from the firm's own policy stream, so one firm's
campaigns never shift another firm's or the customers' draws. The module keeps every contact (``contacts``
table), every customer a retention or personalised campaign scored (``warnings`` table) and every customer won
back (second lifetimes).

Adding a campaign kind is its schema in ``scenario.py`` and a selector registered in :data:`SELECTORS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loyaltysim.model.agents import Firm
from loyaltysim.model.logs import concat
from loyaltysim.model.mechanisms import crm
from loyaltysim.model.mechanisms.crm import CRM
from loyaltysim.model.state import CAUSE_NAMES, NEVER, Cause, CustomerState
from loyaltysim.model.streams import Streams
from loyaltysim.scenario import VALUE_TIERS
from loyaltysim.units import DAYS

CAMPAIGN_CODES = {"retention": 0, "personalised": 1}  # the warnings table's campaign column


class Campaigns:
    """Every firm's campaigns: their rounds, the firms' records they read and the logs of what they did."""

    def __init__(self, firms: list[Firm], st: CustomerState, unit: str, segment_names: list[str],
                 contractual: bool, lapse_steps: int, streams: Streams):
        self.unit = unit
        self.segment_names = segment_names
        self.contractual = contractual
        self.lapse_steps = lapse_steps
        self.streams = streams
        n, n_firms = len(st), len(firms)
        windows = [c.warning.window.steps(unit) for f in firms for c in f.campaigns
                   if getattr(c, "warning", None) is not None]  # campaigns that read the firms' records
        # the firms' records of their customers, kept only when an early warning reads them
        self.crm = CRM(st, max(windows)) if windows else None
        # each firm's last contact with each customer, for its own recontact rule (allocated only with campaigns)
        has_campaigns = any(f.campaigns for f in firms)
        self.contacted_by = np.full((n, n_firms) if has_campaigns else (0, 0), NEVER, np.int32)
        self.contact_log: list[dict[str, np.ndarray]] = []  # win-back contacts, with what was known of each
        self.regain_log: list[dict[str, np.ndarray]] = []  # customers won back by an offer
        self.warning_log: list[dict[str, np.ndarray]] = []  # retention/personalised: every customer scored, the offers

    # --- before customers step -----------------------------------------------------------------------------------
    def run_rounds(self, firms: list[Firm], st: CustomerState, t: int) -> None:
        """Each firm's campaigns, in list order, on their rounds: every ``every`` after ``start`` until ``stop``."""
        unit = self.unit
        for f in firms:
            f.contacts, f.contact_spend = 0, 0.0
            for c in f.campaigns:
                start, every = c.start.steps(unit), max(c.every.steps(unit), 1)
                if t <= start or (c.stop is not None and t > c.stop.steps(unit)) or (t - start - 1) % every:
                    continue
                SELECTORS[c.kind](self, firms, st, f, c, t)

    def in_segments(self, st: CustomerState, target) -> np.ndarray | bool:
        """Customers in the target's value tiers and customer segments (True where the target names none)."""
        keep: np.ndarray | bool = True
        if target.value_tiers is not None:
            keep = keep & np.isin(st.value_tier, [VALUE_TIERS.index(v) for v in target.value_tiers])
        if target.segments is not None:
            keep = keep & np.isin(st.segment, [self.segment_names.index(name) for name in target.segments])
        return keep

    @staticmethod
    def affordable(campaign, committed: float) -> int | None:
        """How many customers a round's budget pays for at ``committed`` per contact (None: no limit)."""
        if campaign.budget is None or committed <= 0:
            return None
        return int(campaign.budget // committed)

    def make_offer(self, st: CustomerState, f: Firm, campaign, who: np.ndarray, t: int) -> None:
        """The customers ``who`` now hold the campaign's offer from firm ``f``."""
        offer = campaign.offer
        st.offer_firm[who] = f.index
        st.offer_until[who] = t + offer.duration.steps(self.unit) - 1
        st.offer_discount[who] = offer.discount
        st.offer_upgrade[who] = offer.upgrade
        st.offer_cost[who] = offer.cost
        st.contacted_at[who] = t
        self.contacted_by[who, f.index] = t
        f.contacts += who.size

    # --- after customers step ------------------------------------------------------------------------------------
    def observe(self, st: CustomerState, t: int) -> None:
        """The firms' records book the step's purchases and complaints."""
        if self.crm is not None:
            self.crm.observe(st, t)

    def record_regains(self, st: CustomerState, t: int) -> None:
        """Customers won back by an offer this step (the start of a second lifetime)."""
        back = np.flatnonzero(st.step_regained)
        if back.size:
            self.regain_log.append({"step": np.full(back.size, t, np.int32), "customer": back.astype(np.int32),
                                    "firm": st.current[back].copy()})

    # --- tables --------------------------------------------------------------------------------------------------
    def tables(self, st: CustomerState, t: int, departures: list[dict[str, np.ndarray]],
               firm_names: np.ndarray) -> dict[str, pd.DataFrame]:
        """``contacts`` (win-back) and ``warnings`` (retention and personalised) at step ``t``, when campaigns
        ran."""
        out = {}
        if self.contact_log:
            out["contacts"] = self.contacts_table(st, t, departures, firm_names)
        if self.warning_log:
            out["warnings"] = self.warnings_table(departures, firm_names)
        return out

    def warnings_table(self, departures: list[dict[str, np.ndarray]], firm_names: np.ndarray) -> pd.DataFrame:
        """Every customer a retention or personalised campaign scored (``campaign``): its score (early-warning
        risk, or the value the firm's records show), whether the target flagged it, whether it was given the offer
        (and at what cost), and the step it next left the firm (``left_at``, if it did)."""
        cols = list(self.warning_log[0])
        raw = concat(self.warning_log, cols)
        table = pd.DataFrame(raw)
        table["campaign"] = pd.Categorical.from_codes(raw["campaign"].astype(int), categories=list(CAMPAIGN_CODES))
        table["firm"] = firm_names[raw["firm"].astype(int)]
        dep = concat(departures, ["step", "customer", "firm"])
        left = pd.DataFrame({"customer": dep["customer"].astype(np.int32), "firm": dep["firm"].astype(np.int32),
                             "left_at": dep["step"].astype(np.int32)})
        scored = pd.DataFrame({"index": np.arange(len(table)), "customer": raw["customer"].astype(np.int32),
                               "firm": raw["firm"].astype(np.int32), "step": raw["step"]})
        later = scored.merge(left, on=["customer", "firm"])
        later = later[later["left_at"] > later["step"]].groupby("index")["left_at"].min()
        table["left_at"] = later.reindex(np.arange(len(table))).astype("Int32").to_numpy()
        return table

    def contacts_table(self, st: CustomerState, t: int, departures: list[dict[str, np.ndarray]],
                       firm_names: np.ndarray) -> pd.DataFrame:
        """Every win-back contact: who, when, what the firm knew (cause, time since lapse, first-lifetime value),
        the offer, whether the customer came back while it lasted, and the margin, revenue and length (in steps) of
        the second lifetime so far: to the customer's next departure from the firm (``second_ended``), or to the
        end of the run."""
        cols = list(self.contact_log[0])
        raw = concat(self.contact_log, cols)
        contacts = pd.DataFrame(raw)
        contacts["firm"] = firm_names[raw["firm"].astype(int)]
        contacts["cause"] = pd.Categorical.from_codes(raw["cause"].astype(int), categories=CAUSE_NAMES)
        regains = concat(self.regain_log, ["step", "customer", "firm"])
        won = pd.DataFrame({"customer": regains["customer"].astype(np.int32), "regained_at": regains["step"],
                            "regained_firm": regains["firm"]})
        merged = contacts.reset_index().merge(won, on="customer", how="left")
        inside = ((merged["regained_firm"] == raw["firm"][merged["index"]])
                  & (merged["regained_at"] >= merged["step"]) & (merged["regained_at"] <= merged["offer_until"]))
        first = merged[inside].groupby("index")["regained_at"].min()
        contacts["regained_at"] = first.reindex(contacts.index).astype("Int32")
        contacts["accepted"] = contacts["regained_at"].notna()
        # second-lifetime margin: the value of the relationship when the regained customer next left the firm, or
        # its value at the end of the run if it is still there
        dep = concat(departures, ["step", "customer", "firm", "value", "revenue", "second_lifetime"])
        ended = pd.DataFrame({"customer": dep["customer"].astype(np.int32), "firm": dep["firm"].astype(np.int32),
                              "left_at": dep["step"], "value": dep["value"], "revenue": dep["revenue"]}
                             )[dep["second_lifetime"].astype(bool)]
        accepted = pd.DataFrame({"index": np.flatnonzero(contacts["accepted"].to_numpy())})
        accepted["customer"] = raw["customer"][accepted["index"]].astype(np.int32)
        accepted["firm"] = raw["firm"][accepted["index"]].astype(np.int32)
        accepted["regained_at"] = contacts["regained_at"].to_numpy()[accepted["index"]].astype(np.int64)
        later = accepted.merge(ended, on=["customer", "firm"])
        later = later[later["left_at"] > later["regained_at"]].sort_values("left_at").groupby("index").first()
        value = pd.Series(np.nan, index=contacts.index)
        value[later.index] = later["value"].to_numpy()
        revenue = pd.Series(np.nan, index=contacts.index)
        revenue[later.index] = later["revenue"].to_numpy()
        length = pd.Series(pd.NA, index=contacts.index, dtype="Int32")
        length[later.index] = (later["left_at"] - later["regained_at"]).to_numpy()
        running = accepted[~accepted["index"].isin(later.index)]
        still = (st.current[running["customer"]] == running["firm"]) & (st.regained_at[running["customer"]]
                                                                        == running["regained_at"])
        value[running["index"][still]] = st.relationship_value[running["customer"][still]]
        revenue[running["index"][still]] = st.relationship_revenue[running["customer"][still]]
        length[running["index"][still]] = (t - running["regained_at"][still]).to_numpy()
        contacts["second_value"] = value
        contacts["second_revenue"] = revenue
        contacts["second_steps"] = length  # to the next departure, or to the end of the run (censored)
        contacts["second_ended"] = pd.Series(contacts.index.isin(later.index), index=contacts.index) & contacts[
            "accepted"]
        return contacts.drop(columns=["offer_until"])


Selector = Callable[[Campaigns, list[Firm], CustomerState, Firm, object, int], None]


def win_back(campaigns: Campaigns, firms: list[Firm], st: CustomerState, f: Firm, c, t: int) -> None:
    """Contact lapsed customers: active, whose last firm was this one and who have another firm or none now,
    lapsed within the target's window, with a recorded cause and first-lifetime value the target accepts,
    and not contacted within ``recontact_after``. A share of them is drawn at random; ``max_contacts`` and
    the budget (contact costs only: the offer is paid when accepted) cap a round, the most valuable first."""
    unit = campaigns.unit
    lapsed = t - st.lost_at
    target = c.target
    eligible = (st.active & (st.previous == f.index) & (st.current != f.index)
                & (lapsed >= target.lapsed_at_least.steps(unit))
                & (st.lost_value >= target.min_value)
                & (t - campaigns.contacted_by[:, f.index] >= c.recontact_after.steps(unit)))
    if target.lapsed_at_most is not None:
        eligible &= lapsed <= target.lapsed_at_most.steps(unit)
    if target.causes is not None:
        codes = [Cause[name.upper()] for name in target.causes]
        eligible &= np.isin(st.switch_cause, codes)
    eligible &= campaigns.in_segments(st, target)
    who = np.flatnonzero(eligible)
    if target.share < 1.0:
        who = who[campaigns.streams.policy(f.index).random(who.size) < target.share]
    cap = min(x for x in (target.max_contacts, campaigns.affordable(c, c.contact_cost), who.size) if x is not None)
    if who.size > cap:
        who = who[np.argsort(-st.lost_value[who], kind="stable")[:cap]]
    campaigns.make_offer(st, f, c, who, t)
    campaigns.contact_log.append({
        "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32),
        "firm": np.full(who.size, f.index, np.int32), "cause": st.switch_cause[who].copy(),
        "lapsed": (t - st.lost_at[who]).astype(np.int32), "first_value": st.lost_value[who].copy(),
        "discount": np.full(who.size, c.offer.discount), "upgrade": np.full(who.size, c.offer.upgrade),
        "offer_until": st.offer_until[who].copy(), "contact_cost": np.full(who.size, c.contact_cost),
        "offer_cost": np.full(who.size, c.offer.cost),
    })
    f.contact_spend += who.size * c.contact_cost


def scored_offer(campaigns: Campaigns, firms: list[Firm], st: CustomerState, f: Firm, c, t: int) -> None:
    """A retention or personalised round. Score the firm's customers (its current providers' customers; in a
    repertoire market, those who bought there within the lapse window) with the campaign's early warning
    (observable data only: see :mod:`loyaltysim.model.mechanisms.crm`), flag those the target selects (the riskiest
    share, or all at or above the threshold; ties in random order), leave a random ``holdout`` of them alone, and
    give the rest the save offer, riskiest first, within ``max_contacts`` and the budget (contact and offer costs),
    skipping customers contacted within ``recontact_after``. Every scored customer is logged (``warnings`` table),
    so the warning's precision, recall and lead time can be measured against the defections that follow.

    A personalised campaign works the same way, ranking by the value the firm's records show (occasions in the
    warning window) when its target says ``rank_by = "value"``, and by the risk score otherwise."""
    unit = campaigns.unit
    target = c.target
    if campaigns.contractual:
        mine = st.active & (st.current == f.index)
    else:  # a firm's customers in a repertoire market: those who bought from it within the lapse window
        mine = st.active & ((t - 1 - st.last_buy[:, f.index]) < campaigns.lapse_steps)
    mine &= campaigns.in_segments(st, target)
    rows = np.flatnonzero(mine)
    rivals = [g.price for g in firms if g.available and g is not f]
    gap = (f.price - min(rivals)) / f.price if rivals else 0.0
    year = round(DAYS["year"] / DAYS[unit])
    window = c.warning.window.steps(unit)
    if c.kind == "personalised" and target.rank_by == "value":  # the value its records show: recent purchases
        score = campaigns.crm.recent_purchases(rows, f.index, t - 1, window).astype(np.float64)
    else:
        score = crm.risk_scores(st, campaigns.crm, rows, f.index, t, c.warning, window, year, gap)
    rng = campaigns.streams.policy(f.index)
    order = np.lexsort((rng.random(rows.size), -score))  # riskiest first, ties at random
    if target.top_share is not None:
        chosen = order[:int(np.ceil(target.top_share * rows.size))]
    else:
        chosen = order[:int((score >= target.threshold).sum())]
    held = rng.random(chosen.size) < target.holdout if target.holdout > 0 else np.zeros(chosen.size, bool)
    due = (t - campaigns.contacted_by[rows[chosen], f.index]) >= c.recontact_after.steps(unit)
    treat = chosen[~held & due]
    cap = min(x for x in (target.max_contacts, campaigns.affordable(c, c.contact_cost + c.offer.cost), treat.size)
              if x is not None)
    treat = treat[:cap]
    who = rows[treat]
    campaigns.make_offer(st, f, c, who, t)
    if c.offer.manager:  # a manager serves the customer at its current firm: this one's customers only
        own = who[(st.current[who] == f.index) & (st.manager[who] < 0)]
        st.manager[own] = own % max(f.managers, 1)
    flagged = np.zeros(rows.size, bool)
    flagged[chosen] = True
    treated = np.zeros(rows.size, bool)
    treated[treat] = True
    campaigns.warning_log.append({
        "step": np.full(rows.size, t, np.int32), "customer": rows.astype(np.int32),
        "firm": np.full(rows.size, f.index, np.int32),
        "campaign": np.full(rows.size, CAMPAIGN_CODES[c.kind], np.int8),
        "score": score, "flagged": flagged, "treated": treated,
        "contact_cost": np.where(treated, c.contact_cost, 0.0), "offer_cost": np.where(treated, c.offer.cost, 0.0),
    })
    f.contact_spend += who.size * (c.contact_cost + c.offer.cost)


SELECTORS: dict[str, Selector] = {"win_back": win_back, "retention": scored_offer, "personalised": scored_offer}
