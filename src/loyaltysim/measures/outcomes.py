"""Outcomes: named numbers computed from one run's tables, for experiments to report.

Names are ``<who>.<measure>`` where ``<who>`` is ``focal``, ``market`` or ``firm[<name>]``. Each measure is declared
once, in :data:`MEASURES` (name, label and unit, the kinds of party it applies to and the function computing it for
each); the name checks (:func:`check_name`), :func:`compute` and the report's axis labels all read that table. The
catalogue below describes them (a test checks that it names every declared measure and nothing else):

* firm measures over the reported period (after the warm-up), as in the run summary: ``share_end``, ``share_mean``,
  ``annual_churn``, ``revenue``, ``profit``, ``npv``, ``satisfaction_mean``, ``score_mean``, ``nps_mean``,
  ``satisfied_defector_share``; ``profit_per_customer`` and ``npv_per_customer`` (profit and NPV over
  ``market.customers.population``, the customers of the whole market: the economics that compare across market
  sizes, see :mod:`loyaltysim.economics`); and the means over the period of the firm's time series: ``attitude_mean``,
  ``satisfaction_basic_mean``, ``satisfaction_performance_mean``, ``satisfaction_latent_mean``,
  ``retention_mean`` (retention per step) and ``share_of_wallet_mean``;
* totals over the reported period: ``investment_cost_total``, ``acquisition_cost_total``, ``defections_total``;
* win-back campaigns, from the run's contacts: ``winback_contacts``, ``winback_rate`` (share of contacts who came
  back while the offer lasted), ``winback_cost`` (contacts x contact cost + accepted offers x offer cost; discounts
  are already netted out of the margins), ``cost_per_regain`` (that cost over the customers who came back: to
  compare with the firm's ``acquisition_cost`` of a new customer), ``second_lifetime_value`` and
  ``second_lifetime_revenue`` (margin and revenue of the second lifetimes so far), ``second_lifetime_weeks`` (their
  mean length so far, in weeks: lifetimes still running at the end are cut there, so it understates the length),
  ``second_lifetime_median_weeks`` (the Kaplan-Meier median length, in weeks, with lifetimes still running at the
  end as censored observations; NaN while more than half are still running) and ``return_on_regain``
  ((second-lifetime value - cost) / cost; Stauss & Friege 1999; NaN when the campaign cost nothing). These count
  every customer who came back while an offer lasted, including those who would have come back anyway: the
  campaign's incremental value is the paired difference of ``npv`` or ``profit`` against no campaign;
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
* a firm's records and surveys, over the reported period (firm and market): ``purchase_rate_annual`` (purchase
  occasions per customer-year: the firm's purchases over its mean number of customers) and ``score_share_1``,
  ``score_share_2``, ``score_share_3``, ``score_share_4``, ``score_share_5`` (the share of the survey answers, about
  the firm or all of them, that are that score): the purchase frequency and score distribution a firm has, as
  calibration targets;
* switching, measured apart from exits from the market: ``satisfied_switcher_share`` (firm and market: the share of
  the defections after the warm-up that are switches, not life events taking the customer out of the market, whose
  last survey answer about the firm left was 4 or 5, among those ever asked about it; ``satisfied_defector_share``
  counts every defection and the last answer whatever firm it was about);
* market measures: ``annual_churn`` (defections per customer-year over all firms), ``satisfied_defector_share``,
  and the Jones & Sasser curve: ``retention_by_score_1`` .. ``retention_by_score_5``, the share of survey
  answers with that score (given after the warm-up, at least a year before the end) whose customer is still with
  the same firm 52 weeks later; ``defection_ratio_4_to_5`` is (1 - retention at 4) / (1 - retention at 5),
  ``retention_step_4_to_5`` is retention at 5 minus retention at 4 and ``retention_rise_to_4`` is retention at 4
  minus the lowest retention at scores 1-3 (Jones & Sasser: in competitive markets the step exceeds the rise).

By segment, in a market that declares segments (``market.customers.segments``; firm and market):
``annual_churn[segment=<name>]``, e.g. ``focal.annual_churn[segment=heavy]``, the annual churn among that segment's
customers (defections of the segment's customers over its mean number of customers, from the run's ``segments``
table): churn by segment, as a firm's records give it, for calibration targets.

A firm that ran no campaign or programme gets 0 for counts, costs and values of it and NaN for rates and ratios
(each measure's ``absent``).

A difference of two outcomes of the same run is written ``<outcome> - <outcome>``, e.g.
``focal.cohort_retention_annual - firm[Average].cohort_retention_annual``: paired within the run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loyaltysim.measures.value import return_on_regain
from loyaltysim.scenario import LoyaltyScenario
from loyaltysim.units import DAYS

KINDS = ("firm", "party", "market")
"""Whom a measure is computed for: ``firm`` (``focal`` or ``firm[<name>]`` naming one of the market's firms),
``party`` (``firm[<name>]`` naming a category outlet or a coalition's operator) and ``market``."""


class OutcomeError(ValueError):
    """An outcome name that is not in the catalogue."""


@dataclass(frozen=True)
class RunData:
    """What a measure reads: one run's scenario, its tables and its summary."""

    scenario: LoyaltyScenario
    tables: dict[str, pd.DataFrame]
    summary: dict


MeasureFunction = Callable[[RunData, str | None, str], float]
"""``function(run, who, measure)``: the measure of the firm or party called ``who`` (None for the market)."""


@dataclass(frozen=True)
class Measure:
    """One measure: its name, its label and unit (the report's axis label), and for each kind of party it applies to
    (firm, party, market) the function that computes it.

    ``absent`` is what a firm gets when the measure's records are empty (no contacts, no scored customers, no
    programme): 0 for counts, costs and values, NaN for rates.
    """

    name: str
    section: str
    label: str = ""  # empty: the name in words
    unit: str = ""
    firm: MeasureFunction | None = None
    party: MeasureFunction | None = None
    market: MeasureFunction | None = None
    absent: float = math.nan

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of party it is computed for, from :data:`KINDS`."""
        return tuple(kind for kind in KINDS if self.function(kind) is not None)

    def function(self, kind: str) -> MeasureFunction | None:
        return {"firm": self.firm, "party": self.party, "market": self.market}[kind]

    @property
    def description(self) -> str:
        """The label with its unit, e.g. ``mean market share (fraction)``."""
        return self.described()

    def unit_in(self, currency: str | None = None) -> str:
        """The unit, with money named in ``currency`` (e.g. ``EUR per customer``); as declared without one."""
        if currency and self.unit in MONEY_UNITS:
            return currency + self.unit.removeprefix(MONEY)
        return self.unit

    def described(self, currency: str | None = None) -> str:
        """The label with its unit, money in ``currency`` when one is given: ``NPV of profit ... (EUR)``."""
        text = self.label or self.name.replace("_", " ")
        unit = self.unit_in(currency)
        return f"{text} ({unit})" if unit else text


# --------------------------------------------------------------------------------------------------
# The functions the declarations name
# --------------------------------------------------------------------------------------------------


def _years(scenario: LoyaltyScenario) -> float:
    return (scenario.steps() - scenario.warmup_steps()) * DAYS[scenario.time.step] / DAYS["year"]


def _summary(run: RunData, firm: str | None, measure: str) -> float:
    """The firm's row of the run summary."""
    row = next(f for f in run.summary["firms"] if f["firm"] == firm)
    value = row[measure]
    return math.nan if value is None else float(value)


def _per_customer(run: RunData, firm: str | None, measure: str) -> float:
    """A firm's measure of the run summary over the market's population."""
    return _summary(run, firm, measure.removesuffix("_per_customer")) / run.scenario.market.customers.population


def _reported(run: RunData, firm: str | None) -> pd.DataFrame:
    """The firm's rows of the ``firms`` table after the warm-up."""
    firms = run.tables["firms"]
    return firms[(firms["firm"] == firm) & (firms["step"] > run.scenario.warmup_steps())]


def _series_mean(column: str) -> MeasureFunction:
    """The mean over the reported period of the ``firms`` table's ``column``."""

    def series_mean(run: RunData, firm: str | None, measure: str) -> float:
        return float(_reported(run, firm)[column].mean())

    return series_mean


def _total(column: str) -> MeasureFunction:
    """The sum over the reported period of the ``firms`` table's ``column``."""

    def total(run: RunData, firm: str | None, measure: str) -> float:
        return float(_reported(run, firm)[column].sum())

    return total


def _cohort_stayed(run: RunData, firm: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The customers the firm held when the warm-up ended, and which of them are still with it at the end."""
    customers = run.tables["customers"]
    cohort = customers[customers["firm_after_warmup"] == firm]
    return cohort, (cohort["firm"] == firm).to_numpy()


def _cohort_retention(run: RunData, firm: str | None, measure: str) -> float:
    cohort, stayed = _cohort_stayed(run, firm)
    return math.nan if cohort.empty else float(stayed.mean())


def _cohort_retention_annual(run: RunData, firm: str | None, measure: str) -> float:
    cohort, stayed = _cohort_stayed(run, firm)
    return math.nan if cohort.empty else float(stayed.mean()) ** (1.0 / _years(run.scenario))


def _cohort_attitude(run: RunData, firm: str | None, measure: str) -> float:
    cohort, stayed = _cohort_stayed(run, firm)
    return math.nan if cohort.empty else float(np.where(stayed, cohort["attitude"].to_numpy(), 0.0).mean())


def _winback(run: RunData, firm: str | None, measure: str) -> float:
    """A firm's win-back campaigns, from the run's contacts."""
    contacts = run.tables.get("contacts")
    mine = contacts[contacts["firm"] == firm] if contacts is not None else None
    if mine is None or mine.empty:
        return MEASURES[measure].absent
    accepted = mine["accepted"].to_numpy(bool)
    cost = float(mine["contact_cost"].sum() + mine["offer_cost"].to_numpy()[accepted].sum())
    value = float(mine["second_value"].fillna(0.0).sum())
    step = run.scenario.time.step
    return {
        "winback_contacts": float(len(mine)),
        "winback_rate": float(accepted.mean()),
        "winback_cost": cost,
        "cost_per_regain": cost / accepted.sum() if accepted.any() else math.nan,
        "second_lifetime_value": value,
        "second_lifetime_revenue": float(mine["second_revenue"].fillna(0.0).sum()),
        "second_lifetime_weeks": (float(mine["second_steps"].dropna().mean()) * DAYS[step] / DAYS["week"]
                                  if accepted.any() else math.nan),
        "second_lifetime_median_weeks": (median_lifetime(mine["second_steps"][accepted].to_numpy(float),
                                                         mine["second_ended"][accepted].to_numpy(bool))
                                         * DAYS[step] / DAYS["week"]),
        "return_on_regain": return_on_regain(value, cost, without_cost="nan"),
    }[measure]


def median_lifetime(length: np.ndarray, ended: np.ndarray) -> float:
    """The Kaplan-Meier median of lifetimes ``length`` of which those not ``ended`` are still running (right-censored
    at their length so far): the first length at which the estimated survival falls to 0.5 or below; NaN without
    lifetimes or while the survival stays above 0.5 (more than half still running)."""
    if length.size == 0:
        return math.nan
    from scipy import stats  # (imported here: a run that asks for no median lifetime does without scipy.stats)

    data = stats.CensoredData(uncensored=length[ended], right=length[~ended])
    survival = stats.ecdf(data).sf
    below = np.flatnonzero(survival.probabilities <= 0.5)
    return float(survival.quantiles[below[0]]) if below.size else math.nan


def _switches(run: RunData, firm: str | None) -> pd.DataFrame:
    """The defections after the warm-up that are switches (not exits from the market by a life event), of ``firm``
    (every firm's for ``None``)."""
    dep = run.tables["defections"]
    dep = dep[(dep["step"] > run.scenario.warmup_steps()) & (dep["cause"] != "natural_churn")]
    return dep if firm is None else dep[dep["firm"] == firm]


def _satisfied_switchers(run: RunData, firm: str | None, measure: str) -> float:
    scored = _switches(run, firm)["score_about_left"].dropna()
    return float((scored >= 4).mean()) if len(scored) else math.nan


def _retention(run: RunData, firm: str | None, measure: str) -> float:
    """A firm's retention or personalised campaigns and their early warning, from the run's ``warnings`` table."""
    scenario = run.scenario
    scored = run.tables.get("warnings")
    kind = "personalised" if measure.startswith("personalised_") else "retention"
    mine = None
    if scored is not None:  # tables without a campaign column hold retention campaigns only
        campaign = scored["campaign"] if "campaign" in scored.columns else pd.Series("retention", index=scored.index)
        mine = scored[(scored["firm"] == firm) & (campaign == kind)]
    if mine is None or mine.empty:
        return MEASURES[measure].absent
    treated = mine["treated"].to_numpy(bool)
    if measure in ("retention_contacts", "personalised_contacts"):
        return float(treated.sum())
    if measure in ("retention_cost", "personalised_cost"):
        return float(mine["contact_cost"].sum() + mine["offer_cost"].sum())
    flagged = mine["flagged"].to_numpy(bool)
    if measure == "warning_flags":
        return float(flagged.sum())
    spec = next(f for f in scenario.effective_firms() if f.name == firm)
    horizon = max(c.warning.horizon.steps(scenario.time.step) for c in spec.campaigns if c.kind == "retention")
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


def _programme(run: RunData, firm: str | None, measure: str) -> float:
    """A firm's loyalty programmes over the reported period (summed over its programmes, copies included)."""
    log = run.tables.get("programmes")
    mine = log[(log["firm"] == firm) & (log["step"] > run.scenario.warmup_steps())] if log is not None else None
    if mine is None or mine.empty:
        return MEASURES[measure].absent
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


def _party(run: RunData, name: str | None, measure: str) -> float:
    """A category outlet's or a coalition operator's measure over the reported period."""
    after = run.scenario.warmup_steps()
    outlets = run.tables.get("categories")
    if outlets is not None and name in set(outlets["outlet"]):
        rows = outlets[(outlets["outlet"] == name) & (outlets["step"] > after)]
        column = {"share_mean": "share"}.get(measure, measure.removesuffix("_total"))
        return float(rows[column].mean() if measure == "share_mean" else rows[column].sum())
    settlement = run.tables.get("settlement")
    rows = settlement[(settlement["party"] == name) & (settlement["step"] > after)] if settlement is not None else None
    if rows is None or rows.empty:
        return math.nan
    income = float(rows["received"].sum() + rows["membership_fees"].sum())
    cost = float(rows["paid"].sum() + rows["running_cost"].sum() + rows["reward_cost"].sum())
    return {"revenue": 0.0, "profit": income - cost, "share_mean": math.nan, "programme_cost_total": cost,
            "programme_fees_total": income, "member_discounts_total": 0.0}[measure]


def retention_by_score(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Jones & Sasser's view: for survey answers given after the warm-up and at least a year before the end,
    the share whose customer is still with the same firm 52 weeks (a year) later, by score. Jones & Sasser's is a
    fact about switching: an answer whose customer left the market by a life event within the year (cause
    ``natural_churn``; it neither stayed nor chose another firm) is left out, unless it had switched before."""
    year = round(DAYS["year"] / DAYS[scenario.time.step])
    surveys, dep = tables["surveys"], tables["defections"]
    asked = surveys[(surveys["step"] > scenario.warmup_steps()) & (surveys["step"] <= scenario.steps() - year)]
    asked = asked[["step", "customer", "firm", "score"]].reset_index(drop=True)
    asked["answer"] = np.arange(len(asked))
    left = asked.merge(dep[["customer", "firm", "step", "cause"]].rename(columns={"step": "left_at"}),
                       on=["customer", "firm"], how="inner")
    within = left[(left["left_at"] > left["step"]) & (left["left_at"] <= left["step"] + year)]
    first = within.sort_values(["answer", "left_at"]).drop_duplicates("answer")  # the first departure decides
    asked["retained"] = ~asked["answer"].isin(first["answer"])
    asked = asked[~asked["answer"].isin(first.loc[first["cause"] == "natural_churn", "answer"])]
    out = asked.groupby("score")["retained"].agg(["mean", "size"]).reindex(range(1, 6))
    return out.rename(columns={"mean": "retention", "size": "answers"})


def _score_share(score: int) -> MeasureFunction:
    """The share of the survey answers given after the warm-up (about the firm, or all) that are ``score``."""

    def share(run: RunData, who: str | None, measure: str) -> float:
        answers = run.tables["surveys"]
        answers = answers[answers["step"] > run.scenario.warmup_steps()]
        if who is not None:
            answers = answers[answers["firm"] == who]
        return float((answers["score"] == score).mean()) if len(answers) else math.nan

    return share


def _purchase_rate(run: RunData, who: str | None, measure: str) -> float:
    """Purchase occasions after the warm-up per customer-year: the firm's, or every firm's, over its (their) mean
    number of customers."""
    firms = _reported(run, who) if who is not None else run.tables["firms"][
        run.tables["firms"]["step"] > run.scenario.warmup_steps()]
    customers = firms.groupby("step")["customers"].sum().mean()
    years = _years(run.scenario)
    return float(firms["purchases"].sum() / (customers * years)) if customers > 0 and years > 0 else math.nan


def _market_summary(run: RunData, who: str | None, measure: str) -> float:
    value = run.summary["market"][measure]
    return math.nan if value is None else float(value)


def _market_churn(run: RunData, who: str | None, measure: str) -> float:
    firms = run.tables["firms"]
    reported = firms[firms["step"] > run.scenario.warmup_steps()]
    customers = reported.groupby("step")["customers"].sum().mean()
    return run.summary["market"]["defections"] / customers / _years(run.scenario) if customers else math.nan


def _segment_churn(run: RunData, who: str | None, segment: str) -> float:
    """Annual churn of the firm ``who`` (every firm's, for None) among the customers of ``segment``: their
    defections after the warm-up over the segment's mean number of the firm's customers and the years, as
    ``annual_churn`` is for all customers (the exposure is the ``segments`` table)."""
    warm = run.scenario.warmup_steps()
    counts = run.tables.get("segments")
    if counts is None:
        raise OutcomeError(f"segment '{segment}': the run has no segments table (a run of a market with one "
                           "segment, or written before the table was kept)")
    counts = counts[(counts["step"] > warm) & (counts["segment"] == segment)]
    if who is not None:
        counts = counts[counts["firm"] == who]
    customers = counts.groupby("step")["customers"].sum().mean() if len(counts) else 0.0
    dep = run.tables["defections"]
    dep = dep[dep["step"] > warm]
    if who is not None:
        dep = dep[dep["firm"] == who]
    in_segment = run.tables["customers"].set_index("customer")["segment"]
    defections = int((in_segment.reindex(dep["customer"]).to_numpy() == segment).sum())
    return defections / customers / _years(run.scenario) if customers else math.nan


BY_SEGMENT: dict[str, Callable[[RunData, str | None, str], float]] = {"annual_churn": _segment_churn}
"""Measures that can be restricted to one segment of the market's customers (``market.customers.segments``),
written ``<who>.<measure>[segment=<name>]``; each computes the measure for the firm or the market from the
run's ``segments`` table."""


def _curve(run: RunData) -> pd.Series:
    return retention_by_score(run.scenario, run.tables)["retention"]


def _retention_at_score(score: int) -> MeasureFunction:
    def retention_at_score(run: RunData, who: str | None, measure: str) -> float:
        return float(_curve(run).loc[score])

    return retention_at_score


def _retention_step(run: RunData, who: str | None, measure: str) -> float:
    curve = _curve(run)
    return float(curve.loc[5] - curve.loc[4])


def _retention_rise(run: RunData, who: str | None, measure: str) -> float:
    curve = _curve(run)
    return float(curve.loc[4] - curve.loc[1:3].min())


def _defection_ratio(run: RunData, who: str | None, measure: str) -> float:
    curve = _curve(run)
    lost4, lost5 = 1.0 - curve.loc[4], 1.0 - curve.loc[5]
    return float(lost4 / lost5) if lost5 > 0 else math.nan


# --------------------------------------------------------------------------------------------------
# The declarations
# --------------------------------------------------------------------------------------------------

MONEY, FRACTION = "money", "fraction"
MONEY_PER_CUSTOMER = "money per customer"
MONEY_UNITS = (MONEY, MONEY_PER_CUSTOMER)  # amounts of money: labelled with the scenario's currency in reports
_DECLARED = (
    # the run summary's measures of a firm (two of them also of the market)
    Measure("share_end", "summary", "market share at the end", FRACTION, firm=_summary),
    Measure("share_mean", "summary", "mean market share", FRACTION, firm=_summary, party=_party),
    Measure("annual_churn", "summary", "annual churn", "defections per customer-year", firm=_summary,
            market=_market_churn),
    Measure("revenue", "summary", "revenue after the warm-up", MONEY, firm=_summary, party=_party),
    Measure("profit", "summary", "profit after the warm-up", MONEY, firm=_summary, party=_party),
    Measure("npv", "summary", "NPV of profit at the end of the warm-up", MONEY, firm=_summary),
    Measure("profit_per_customer", "summary", "profit after the warm-up per customer of the market",
            MONEY_PER_CUSTOMER, firm=_per_customer),
    Measure("npv_per_customer", "summary", "NPV of profit per customer of the market", MONEY_PER_CUSTOMER,
            firm=_per_customer),
    Measure("satisfaction_mean", "summary", "mean satisfaction", "0 = expectations met", firm=_summary),
    Measure("score_mean", "summary", "mean survey score", "1-5", firm=_summary),
    Measure("nps_mean", "summary", "mean NPS", "points, -100 to 100", firm=_summary),
    Measure("satisfied_defector_share", "summary", "defectors whose last score was 4 or 5", FRACTION,
            firm=_summary, market=_market_summary),
    # what a firm's own records and surveys give, for calibration targets
    Measure("purchase_rate_annual", "records", "purchase occasions per customer-year", "per customer-year",
            firm=_purchase_rate, market=_purchase_rate),
    *(Measure(f"score_share_{s}", "records", f"survey answers that are {s}", FRACTION, firm=_score_share(s),
              market=_score_share(s)) for s in range(1, 6)),
    # switches, apart from exits from the market
    Measure("satisfied_switcher_share", "switching", "switchers whose last score about the firm left was 4 or 5",
            FRACTION, firm=_satisfied_switchers, market=_satisfied_switchers),
    # means over the reported period of a firm's time series
    Measure("attitude_mean", "series", "mean attitudinal loyalty", "0-1", firm=_series_mean("attitude")),
    Measure("satisfaction_basic_mean", "series", "mean satisfaction, must-be attributes",
            firm=_series_mean("satisfaction_basic")),
    Measure("satisfaction_performance_mean", "series", "mean satisfaction, one-dimensional attributes",
            firm=_series_mean("satisfaction_performance")),
    Measure("satisfaction_latent_mean", "series", "mean satisfaction, attractive attributes",
            firm=_series_mean("satisfaction_latent")),
    Measure("retention_mean", "series", "mean retention per step", FRACTION, firm=_series_mean("retention")),
    Measure("share_of_wallet_mean", "series", firm=_series_mean("share_of_wallet")),
    # the customers a firm held when the warm-up ended
    Measure("cohort_retention", "cohort", "warm-up cohort still with the firm at the end", FRACTION,
            firm=_cohort_retention),
    Measure("cohort_retention_annual", "cohort", "warm-up cohort retention", "fraction per year",
            firm=_cohort_retention_annual),
    Measure("cohort_attitude", "cohort", "mean attitude of the warm-up cohort, leavers as 0", "0-1",
            firm=_cohort_attitude),
    # totals over the reported period, from a firm's books
    Measure("investment_cost_total", "totals", "investment spending after the warm-up", MONEY,
            firm=_total("investment_cost")),
    Measure("acquisition_cost_total", "totals", "acquisition spending after the warm-up", MONEY,
            firm=_total("acquisition_cost")),
    Measure("defections_total", "totals", "defections after the warm-up", "customers", firm=_total("defections")),
    Measure("programme_cost_total", "totals", firm=_total("programme_cost"), party=_party),
    Measure("programme_fees_total", "totals", firm=_total("programme_fees"), party=_party),
    Measure("member_discounts_total", "totals", firm=_total("member_discounts"), party=_party),
    Measure("discounts_total", "totals", firm=_total("discounts")),
    # win-back campaigns
    Measure("winback_contacts", "winback", "win-back contacts", "customers", firm=_winback, absent=0.0),
    Measure("winback_rate", "winback", "contacts won back while the offer lasted", FRACTION, firm=_winback),
    Measure("winback_cost", "winback", "win-back contacts and accepted offers", MONEY, firm=_winback, absent=0.0),
    Measure("cost_per_regain", "winback", firm=_winback),
    Measure("second_lifetime_value", "winback", "margin of second lifetimes", MONEY, firm=_winback, absent=0.0),
    Measure("second_lifetime_revenue", "winback", firm=_winback, absent=0.0),
    Measure("second_lifetime_weeks", "winback", "mean length of second lifetimes so far (cut at the end)", "weeks",
            firm=_winback),
    Measure("second_lifetime_median_weeks", "winback", "median length of second lifetimes (Kaplan-Meier)", "weeks",
            firm=_winback),
    Measure("return_on_regain", "winback", "return on regain investment", "ratio", firm=_winback),
    # retention and personalised campaigns, and the early warning
    Measure("retention_contacts", "retention", firm=_retention, absent=0.0),
    Measure("retention_cost", "retention", firm=_retention, absent=0.0),
    Measure("warning_flags", "retention", firm=_retention, absent=0.0),
    Measure("warning_precision", "retention", firm=_retention),
    Measure("warning_recall", "retention", firm=_retention),
    Measure("warning_lift", "retention", firm=_retention),
    Measure("warning_auc", "retention", firm=_retention),
    Measure("warning_lead_weeks", "retention", firm=_retention),
    Measure("personalised_contacts", "retention", firm=_retention, absent=0.0),
    Measure("personalised_cost", "retention", firm=_retention, absent=0.0),
    # loyalty programmes
    Measure("programme_members_end", "programmes", firm=_programme, absent=0.0),
    Measure("programme_active_members_mean", "programmes", firm=_programme, absent=0.0),
    Measure("points_issued_total", "programmes", firm=_programme, absent=0.0),
    Measure("points_redeemed_total", "programmes", firm=_programme, absent=0.0),
    Measure("points_expired_total", "programmes", firm=_programme, absent=0.0),
    Measure("breakage_rate", "programmes", firm=_programme),
    Measure("liability_end", "programmes", firm=_programme, absent=0.0),
    Measure("liability_net_end", "programmes", firm=_programme, absent=0.0),
    Measure("reward_cost_total", "programmes", firm=_programme, absent=0.0),
    Measure("cashback_total", "programmes", firm=_programme, absent=0.0),
    # the market's Jones & Sasser curve
    Measure("defection_ratio_4_to_5", "market", "defection rate at score 4 / at score 5", "ratio",
            market=_defection_ratio),
    Measure("retention_step_4_to_5", "market", "retention at score 5 minus at score 4", FRACTION,
            market=_retention_step),
    Measure("retention_rise_to_4", "market", "retention at score 4 minus the lowest at scores 1-3", FRACTION,
            market=_retention_rise),
    *(Measure(f"retention_by_score_{s}", "market", f"retained a year after scoring {s}", FRACTION,
              market=_retention_at_score(s)) for s in range(1, 6)),
)
MEASURES: dict[str, Measure] = {m.name: m for m in _DECLARED}
"""Every measure by name, in the order of the catalogue."""
assert len(MEASURES) == len(_DECLARED), "a measure is declared twice"


def measure_names(kind: str, section: str | None = None) -> tuple[str, ...]:
    """The measures computed for ``kind`` (from :data:`KINDS`), in declaration order; only ``section``'s if given."""
    return tuple(m.name for m in MEASURES.values()
                 if m.function(kind) is not None and (section is None or m.section == section))


def describe_measure(measure: str, currency: str | None = None) -> str:
    """The label of a measure with its unit (money in ``currency`` when one is given); an unknown name in words."""
    declared = MEASURES.get(measure)
    return declared.described(currency) if declared is not None else measure.replace("_", " ")


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

_NAME = re.compile(r"^(?P<who>focal|market|firm\[(?P<firm>[^\]]+)\])\.(?P<measure>[a-z0-9_]+)"
                   r"(?:\[segment=(?P<segment>[^\]]+)\])?$")


@dataclass(frozen=True)
class OutcomeName:
    """A parsed ``<who>.<measure>``: ``who`` is ``focal``, ``market`` or ``firm`` (then ``firm`` is its name);
    ``segment`` names a segment of the market's customers for the measures of :data:`BY_SEGMENT`."""

    who: str
    firm: str | None
    measure: str
    segment: str | None = None


def parse_name(name: str) -> OutcomeName | None:
    """``firm[Rival A].npv`` -> ``OutcomeName("firm", "Rival A", "npv")``; ``focal.annual_churn[segment=heavy]`` ->
    ``OutcomeName("focal", None, "annual_churn", "heavy")``; None if it is not of that form (the measure is not
    checked: see :func:`check_name`)."""
    m = _NAME.match(name)
    if not m:
        return None
    who = m["who"] if m["firm"] is None else "firm"
    return OutcomeName(who, m["firm"], m["measure"], m["segment"])


def check_name(name: str, firms: list[str] | None = None, segments: list[str] | None = None) -> None:
    """Raise :class:`OutcomeError` naming what is allowed if ``name`` is not a known outcome (``firms`` and
    ``segments``: the names the market knows, checked when given)."""
    if " - " in name:
        for part in name.split(" - ", 1):
            check_name(part.strip(), firms, segments)
        return
    parsed = parse_name(name)
    allowed = ("focal.<measure>, firm[<name>].<measure> or market.<measure>; firm measures: "
               + ", ".join(measure_names("firm")) + "; market measures: " + ", ".join(measure_names("market")))
    if parsed is None:
        raise OutcomeError(f"unknown outcome '{name}'; use {allowed}")
    declared = MEASURES.get(parsed.measure)
    kind = "market" if parsed.who == "market" else "firm"
    if declared is None or declared.function(kind) is None:
        raise OutcomeError(f"unknown outcome '{name}'; use {allowed}")
    if parsed.firm is not None and firms is not None and parsed.firm not in firms:
        raise OutcomeError(f"outcome '{name}' names unknown firm '{parsed.firm}'; known: {firms}")
    if parsed.segment is not None:
        if parsed.measure not in BY_SEGMENT:
            raise OutcomeError(f"outcome '{name}': '{parsed.measure}' is not measured by segment; measures by "
                               f"segment: {', '.join(BY_SEGMENT)}")
        if segments is not None and parsed.segment not in segments:
            known = (f"known: {segments}" if len(segments) > 1 else
                     "the market declares no segments (market.customers.segments)")
            raise OutcomeError(f"outcome '{name}' names unknown segment '{parsed.segment}'; {known}")


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def measure_value(measure: str, who: str | None, scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame],
                  summary: dict | None = None, segment: str | None = None) -> float:
    """One measure of the firm, category outlet or coalition operator called ``who``, or of the market (``who``
    None); of the customers of ``segment`` only, for the measures of :data:`BY_SEGMENT`."""
    declared = MEASURES.get(measure)
    if declared is None:
        raise OutcomeError(f"unknown measure '{measure}'; use one of {', '.join(MEASURES)}")
    if segment is not None:
        if measure not in BY_SEGMENT:
            raise OutcomeError(f"'{measure}' is not measured by segment; use one of {', '.join(BY_SEGMENT)}")
        names = [s.name for s in scenario.market.customers.segments]
        if segment not in names:
            raise OutcomeError(f"unknown segment '{segment}'; known: {names}" if names else
                               f"segment '{segment}': the market declares no segments (market.customers.segments)")
        return BY_SEGMENT[measure](RunData(scenario, tables, summary if summary is not None else {}), who, segment)
    if who is None:
        kind = "market"
    elif who in {f.name for f in scenario.market.firms}:
        kind = "firm"
    else:  # a category outlet or a coalition's operator
        kind = "party"
        if declared.party is None:
            raise OutcomeError(f"'{measure}' is not measured for '{who}' (a category outlet or a coalition "
                               f"operator); use one of {', '.join(measure_names('party'))}")
    function = declared.function(kind)
    if function is None:
        raise OutcomeError(f"'{measure}' is not a {kind} measure; use one of {', '.join(measure_names(kind))}")
    return function(RunData(scenario, tables, summary if summary is not None else {}), who, measure)


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
        parsed = parse_name(name)
        assert parsed is not None
        who = {"market": None, "focal": scenario.policy.firm}.get(parsed.who, parsed.firm)
        out[name] = measure_value(parsed.measure, who, scenario, tables, summary, parsed.segment)
    return out
