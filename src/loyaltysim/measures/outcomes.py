"""Outcomes: named numbers computed from one run's tables, for experiments to report.

Names are ``<who>.<measure>`` where ``<who>`` is ``focal``, ``market`` or ``firm[<name>]``:

* firm measures over the reported period (after the warm-up): ``share_end``, ``share_mean``, ``annual_churn``,
  ``revenue``, ``profit``, ``npv``, ``satisfaction_mean``, ``score_mean``, ``nps_mean``,
  ``satisfied_defector_share`` (as in the run summary), and the means over the period of the time series
  ``attitude``, ``satisfaction``, ``satisfaction_basic``, ``satisfaction_performance``, ``satisfaction_latent``
  (suffix ``_mean``, e.g. ``attitude_mean``);
* totals over the reported period: ``investment_cost_total``, ``acquisition_cost_total``, ``defections_total``;
* win-back campaigns, from the run's contacts: ``winback_contacts``, ``winback_rate`` (share of contacts who came
  back while the offer lasted), ``winback_cost`` (contacts x contact cost + accepted offers x offer cost; discounts
  are already netted out of the margins), ``cost_per_regain`` (that cost over the customers who came back: to
  compare with the firm's ``acquisition_cost`` of a new customer), ``second_lifetime_value`` and
  ``second_lifetime_revenue`` (margin and revenue of the second lifetimes so far), ``second_lifetime_weeks`` (their
  mean length so far, in weeks: lifetimes still running at the end are cut there) and ``return_on_regain``
  ((second-lifetime value - cost) / cost; Stauss & Friege 1999). These count every customer who came back while an
  offer lasted, including those who would have come back anyway: the campaign's incremental value is the paired
  difference of ``npv`` or ``profit`` against no campaign;
* retention campaigns and their early warning, from the run's ``warnings`` table (every customer scored on each
  round): ``retention_contacts`` and ``retention_cost`` (contacts x (contact cost + offer cost)), and the
  warning's quality against the defections that follow within its ``horizon``: ``warning_flags`` (customers
  flagged), ``warning_precision`` (share of flagged customers who left; measured on the holdout when there is
  one, as the offer changes what the others do), ``warning_recall`` (share of the scored customers who left that
  had been flagged), ``warning_lift`` (precision over the share of all untreated scored customers who left),
  ``warning_auc`` (probability that a customer who left scored higher than one who stayed, untreated customers)
  and ``warning_lead_weeks`` (mean time from a flag to the defection it foresaw); personalised campaigns (offers to
  customers ranked by the value the firm's records show, or by risk): ``personalised_contacts``,
  ``personalised_cost``. What a policy saves, net of its cost, is the paired difference of ``defections_total``,
  ``cohort_retention`` and ``npv`` against no campaign;
* loyalty programmes (the firm's own and the copies it runs), from the run's ``programmes`` table:
  ``programme_members_end`` (memberships at the end; a customer in two of its programmes counts twice),
  ``programme_active_members_mean`` (members who bought from one of the programme's sellers within the lapse
  window), totals ``points_issued_total``, ``points_redeemed_total``, ``points_expired_total``,
  ``reward_cost_total``, ``cashback_total``; ``breakage_rate`` (points expired over points expired or redeemed in
  the period: the share of resolved points never redeemed), ``liability_end`` and ``liability_net_end`` (outstanding
  points at the cost of the cheapest reward, and net of the firm's expected breakage). From the firm's books:
  ``programme_cost_total`` (rewards, cashback, operating and launch costs), ``member_discounts_total`` and
  ``discounts_total`` (revenue given up to programme and campaign discounts), ``programme_fees_total``; and
  ``share_of_wallet_mean``. A programme's effect is the paired difference of ``revenue``, ``profit``, ``npv``,
  ``cohort_retention`` or ``share_of_wallet_mean`` against no programme;
* category outlets (``market.categories``) and coalition operators (``firm[<coalition name> operator]``):
  ``revenue``, ``profit``, ``share_mean`` (share of the category's units), ``programme_cost_total``,
  ``programme_fees_total`` (settlements received) and ``member_discounts_total`` over the reported period, from
  the run's ``categories`` and ``settlement`` tables. An operator's profit is what partners paid it per point plus
  membership fees, less reimbursements and the running costs;
* cohort loyalty, measured on the customers a firm held when the warm-up ended, so that a shrinking firm's
  surviving core does not pass for loyalty: ``cohort_retention`` (the share still with the firm at the end),
  ``cohort_retention_annual`` (the same per year: retention ** (1 / years)), ``cohort_attitude`` (the mean
  attitude of the cohort, counting those who left as 0);
* market measures: ``annual_churn`` (defections per customer-year over all firms), ``satisfied_defector_share``,
  and the Jones & Sasser curve: ``retention_by_score_1`` .. ``retention_by_score_5``, the share of survey
  answers with that score (given after the warm-up, at least a year before the end) whose customer is still with
  the same firm 52 weeks later; ``defection_ratio_4_to_5`` is (1 - retention at 4) / (1 - retention at 5),
  ``retention_step_4_to_5`` is retention at 5 minus retention at 4 and ``retention_rise_to_4`` is retention at 4
  minus the lowest retention at scores 1-3 (Jones & Sasser: in competitive markets the step exceeds the rise).

A difference of two outcomes of the same run is written ``<outcome> - <outcome>``, e.g.
``focal.cohort_retention_annual - firm[Average].cohort_retention_annual``: paired within the run.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from loyaltysim.scenario import LoyaltyScenario
from loyaltysim.units import DAYS

SUMMARY_MEASURES = ("share_end", "share_mean", "annual_churn", "revenue", "profit", "npv", "satisfaction_mean",
                    "score_mean", "nps_mean", "satisfied_defector_share")
SERIES_MEASURES = ("attitude", "satisfaction_basic", "satisfaction_performance",
                   "satisfaction_latent", "retention", "share_of_wallet")
COHORT_MEASURES = ("cohort_retention", "cohort_retention_annual", "cohort_attitude")
TOTAL_MEASURES = ("investment_cost_total", "acquisition_cost_total", "defections_total", "programme_cost_total",
                  "programme_fees_total", "member_discounts_total", "discounts_total")
WINBACK_MEASURES = ("winback_contacts", "winback_rate", "winback_cost", "cost_per_regain", "second_lifetime_value",
                    "second_lifetime_revenue", "second_lifetime_weeks", "return_on_regain")
RETENTION_MEASURES = ("retention_contacts", "retention_cost", "warning_flags", "warning_precision", "warning_recall",
                      "warning_lift", "warning_auc", "warning_lead_weeks", "personalised_contacts",
                      "personalised_cost")
PROGRAMME_MEASURES = ("programme_members_end", "programme_active_members_mean", "points_issued_total",
                      "points_redeemed_total", "points_expired_total", "breakage_rate", "liability_end",
                      "liability_net_end", "reward_cost_total", "cashback_total")
MARKET_MEASURES = ("annual_churn", "satisfied_defector_share", "defection_ratio_4_to_5", "retention_step_4_to_5",
                   "retention_rise_to_4", *(f"retention_by_score_{s}" for s in range(1, 6)))
_NAME = re.compile(r"^(focal|market|firm\[(?P<firm>[^\]]+)\])\.(?P<measure>[a-z0-9_]+)$")


class OutcomeError(ValueError):
    """An outcome name that is not in the catalogue."""


def check_name(name: str, firms: list[str] | None = None) -> None:
    """Raise :class:`OutcomeError` naming what is allowed if ``name`` is not a known outcome."""
    if " - " in name:
        for part in name.split(" - ", 1):
            check_name(part.strip(), firms)
        return
    m = _NAME.match(name)
    allowed = ("focal.<measure>, firm[<name>].<measure> or market.<measure>; firm measures: "
               + ", ".join([*SUMMARY_MEASURES, *(f"{s}_mean" for s in SERIES_MEASURES), *COHORT_MEASURES,
                            *TOTAL_MEASURES, *WINBACK_MEASURES, *RETENTION_MEASURES, *PROGRAMME_MEASURES])
               + "; market measures: " + ", ".join(MARKET_MEASURES))
    if not m:
        raise OutcomeError(f"unknown outcome '{name}'; use {allowed}")
    measure = m.group("measure")
    if name.startswith("market."):
        ok = measure in MARKET_MEASURES
    else:
        ok = measure in (*SUMMARY_MEASURES, *COHORT_MEASURES, *TOTAL_MEASURES, *WINBACK_MEASURES,
                         *RETENTION_MEASURES, *PROGRAMME_MEASURES) or (
            measure.endswith("_mean") and measure.removesuffix("_mean") in SERIES_MEASURES)
    if not ok:
        raise OutcomeError(f"unknown outcome '{name}'; use {allowed}")
    firm = m.group("firm")
    if firm is not None and firms is not None and firm not in firms:
        raise OutcomeError(f"outcome '{name}' names unknown firm '{firm}'; known: {firms}")


def _years(scenario: LoyaltyScenario) -> float:
    return (scenario.steps() - scenario.warmup_steps()) * DAYS[scenario.time.step] / DAYS["year"]


PARTY_MEASURES = ("revenue", "profit", "share_mean", "programme_cost_total", "programme_fees_total",
                  "member_discounts_total")


def _party_value(name: str, measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> float:
    """A category outlet's or a coalition operator's measure over the reported period."""
    after = scenario.warmup_steps()
    outlets = tables.get("categories")
    if outlets is not None and name in set(outlets["outlet"]):
        rows = outlets[(outlets["outlet"] == name) & (outlets["step"] > after)]
        column = {"share_mean": "share"}.get(measure, measure.removesuffix("_total"))
        return float(rows[column].mean() if measure == "share_mean" else rows[column].sum())
    settlement = tables.get("settlement")
    rows = settlement[(settlement["party"] == name) & (settlement["step"] > after)] if settlement is not None else None
    if rows is None or rows.empty:
        return math.nan
    income = float(rows["received"].sum() + rows["membership_fees"].sum())
    cost = float(rows["paid"].sum() + rows["running_cost"].sum() + rows["reward_cost"].sum())
    return {"revenue": 0.0, "profit": income - cost, "share_mean": math.nan, "programme_cost_total": cost,
            "programme_fees_total": income, "member_discounts_total": 0.0}[measure]


def _firm_value(name: str, measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame],
                summary: dict) -> float:
    if name not in {f.name for f in scenario.market.firms}:  # a category outlet or a coalition's operator
        if measure not in PARTY_MEASURES:
            raise OutcomeError(f"'{measure}' is not measured for '{name}' (a category outlet or a coalition "
                               f"operator); use one of {', '.join(PARTY_MEASURES)}")
        return _party_value(name, measure, scenario, tables)
    if measure in SUMMARY_MEASURES:
        row = next(f for f in summary["firms"] if f["firm"] == name)
        value = row[measure]
        return math.nan if value is None else float(value)
    if measure in WINBACK_MEASURES:
        return _winback_value(name, measure, scenario, tables)
    if measure in RETENTION_MEASURES:
        return _retention_value(name, measure, scenario, tables)
    if measure in PROGRAMME_MEASURES:
        return _programme_value(name, measure, scenario, tables)
    if measure in COHORT_MEASURES:
        customers = tables["customers"]
        cohort = customers[customers["firm_after_warmup"] == name]
        if cohort.empty:
            return math.nan
        stayed = (cohort["firm"] == name).to_numpy()
        if measure == "cohort_attitude":
            return float(np.where(stayed, cohort["attitude"].to_numpy(), 0.0).mean())
        retention = float(stayed.mean())
        return retention if measure == "cohort_retention" else retention ** (1.0 / _years(scenario))
    firms = tables["firms"]
    rows = firms[(firms["firm"] == name) & (firms["step"] > scenario.warmup_steps())]
    if measure in TOTAL_MEASURES:
        column = {"defections_total": "defections"}.get(measure, measure.removesuffix("_total"))
        return float(rows[column].sum())
    return float(rows[measure.removesuffix("_mean")].mean())


def _winback_value(name: str, measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> float:
    contacts = tables.get("contacts")
    mine = contacts[contacts["firm"] == name] if contacts is not None else None
    if mine is None or mine.empty:
        return 0.0 if measure in ("winback_contacts", "winback_cost", "second_lifetime_value",
                                  "second_lifetime_revenue") else math.nan
    accepted = mine["accepted"].to_numpy(bool)
    cost = float(mine["contact_cost"].sum() + mine["offer_cost"].to_numpy()[accepted].sum())
    value = float(mine["second_value"].fillna(0.0).sum())
    return {
        "winback_contacts": float(len(mine)),
        "winback_rate": float(accepted.mean()),
        "winback_cost": cost,
        "cost_per_regain": cost / accepted.sum() if accepted.any() else math.nan,
        "second_lifetime_value": value,
        "second_lifetime_revenue": float(mine["second_revenue"].fillna(0.0).sum()),
        "second_lifetime_weeks": (float(mine["second_steps"].dropna().mean()) * DAYS[scenario.time.step] / DAYS["week"]
                                  if accepted.any() else math.nan),
        "return_on_regain": (value - cost) / cost if cost > 0 else math.nan,
    }[measure]


def _retention_value(name: str, measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> float:
    scored = tables.get("warnings")
    kind = "personalised" if measure.startswith("personalised_") else "retention"
    mine = None
    if scored is not None:  # tables without a campaign column hold retention campaigns only
        campaign = scored["campaign"] if "campaign" in scored.columns else pd.Series("retention", index=scored.index)
        mine = scored[(scored["firm"] == name) & (campaign == kind)]
    if mine is None or mine.empty:
        return 0.0 if measure in ("retention_contacts", "retention_cost", "warning_flags", "personalised_contacts",
                                  "personalised_cost") else math.nan
    treated = mine["treated"].to_numpy(bool)
    if measure in ("retention_contacts", "personalised_contacts"):
        return float(treated.sum())
    if measure in ("retention_cost", "personalised_cost"):
        return float(mine["contact_cost"].sum() + mine["offer_cost"].sum())
    flagged = mine["flagged"].to_numpy(bool)
    if measure == "warning_flags":
        return float(flagged.sum())
    firm = next(f for f in scenario.effective_firms() if f.name == name)
    horizon = max(c.warning.horizon.steps(scenario.time.step) for c in firm.campaigns if c.kind == "retention")
    step = mine["step"].to_numpy()
    left_at = mine["left_at"].to_numpy(dtype=float, na_value=np.nan)
    # only rounds whose horizon ends within the run can be judged
    judged = step + horizon <= scenario.steps()
    left = (left_at - step) <= horizon  # NaN (never left) compares False
    untreated = judged & ~treated
    if measure == "warning_recall":
        return float(flagged[judged & left].mean()) if (judged & left).any() else math.nan
    if measure == "warning_lead_weeks":
        hit = judged & flagged & left
        return float((left_at[hit] - step[hit]).mean() * DAYS[scenario.time.step] / DAYS["week"]) if hit.any() \
            else math.nan
    if measure == "warning_auc":
        pos, neg = mine["score"].to_numpy()[untreated & left], mine["score"].to_numpy()[untreated & ~left]
        if not pos.size or not neg.size:
            return math.nan
        from scipy.stats import mannwhitneyu

        return float(mannwhitneyu(pos, neg).statistic / (pos.size * neg.size))
    holdout = judged & flagged & ~treated
    sample = holdout if holdout.any() else judged & flagged
    precision = float(left[sample].mean()) if sample.any() else math.nan
    if measure == "warning_precision":
        return precision
    base = float(left[untreated].mean()) if untreated.any() else math.nan
    return precision / base if base > 0 else math.nan  # warning_lift


def _programme_value(name: str, measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> float:
    """A firm's loyalty programmes over the reported period (summed over its programmes, copies included)."""
    log = tables.get("programmes")
    mine = log[(log["firm"] == name) & (log["step"] > scenario.warmup_steps())] if log is not None else None
    if mine is None or mine.empty:
        return math.nan if measure == "breakage_rate" else 0.0
    end = mine[mine["step"] == mine["step"].max()]
    if measure == "programme_members_end":
        return float(end["members"].sum())
    if measure == "programme_active_members_mean":
        return float(mine.groupby("step")["active_members"].sum().mean())
    if measure in ("liability_end", "liability_net_end"):
        return float(end[measure.removesuffix("_end")].sum())
    if measure == "breakage_rate":  # points that expired, of those that expired or were redeemed in the period
        resolved = mine["points_expired"].sum() + mine["points_redeemed"].sum()
        return float(mine["points_expired"].sum() / resolved) if resolved > 0 else math.nan
    return float(mine[measure.removesuffix("_total")].sum())


def retention_by_score(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Jones & Sasser's view: for survey answers given after the warm-up and at least a year before the end,
    the share whose customer is still with the same firm 52 weeks (a year) later, by score."""
    year = round(DAYS["year"] / DAYS[scenario.time.step])
    surveys, dep = tables["surveys"], tables["defections"]
    asked = surveys[(surveys["step"] > scenario.warmup_steps()) & (surveys["step"] <= scenario.steps() - year)]
    asked = asked[["step", "customer", "firm", "score"]].reset_index(drop=True)
    asked["answer"] = np.arange(len(asked))
    left = asked.merge(dep[["customer", "firm", "step"]].rename(columns={"step": "left_at"}),
                       on=["customer", "firm"], how="inner")
    gone = left[(left["left_at"] > left["step"]) & (left["left_at"] <= left["step"] + year)]["answer"].unique()
    asked["retained"] = ~asked["answer"].isin(gone)
    out = asked.groupby("score")["retained"].agg(["mean", "size"]).reindex(range(1, 6))
    return out.rename(columns={"mean": "retention", "size": "answers"})


def _market_value(measure: str, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame], summary: dict) -> float:
    if measure == "satisfied_defector_share":
        value = summary["market"]["satisfied_defector_share"]
        return math.nan if value is None else float(value)
    if measure == "annual_churn":
        firms = tables["firms"]
        reported = firms[firms["step"] > scenario.warmup_steps()]
        customers = reported.groupby("step")["customers"].sum().mean()
        return summary["market"]["defections"] / customers / _years(scenario) if customers else math.nan
    curve = retention_by_score(scenario, tables)["retention"]
    if measure == "retention_step_4_to_5":
        return float(curve.loc[5] - curve.loc[4])
    if measure == "retention_rise_to_4":
        return float(curve.loc[4] - curve.loc[1:3].min())
    if measure == "defection_ratio_4_to_5":
        lost4, lost5 = 1.0 - curve.loc[4], 1.0 - curve.loc[5]
        return float(lost4 / lost5) if lost5 > 0 else math.nan
    return float(curve.loc[int(measure.rsplit("_", 1)[1])])


def compute(names: list[str], scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame],
            summary: dict) -> dict[str, float]:
    """The named outcomes of one run (NaN where a measure is undefined, e.g. nobody answered 5)."""
    out = {}
    for name in names:
        check_name(name)
        if " - " in name:
            a, b = (part.strip() for part in name.split(" - ", 1))
            values = compute([a, b], scenario, tables, summary)
            out[name] = values[a] - values[b]
            continue
        m = _NAME.match(name)
        measure = m.group("measure")
        if name.startswith("market."):
            out[name] = _market_value(measure, scenario, tables, summary)
        else:
            firm = scenario.policy.firm if name.startswith("focal.") else m.group("firm")
            out[name] = _firm_value(firm, measure, scenario, tables, summary)
    return out


