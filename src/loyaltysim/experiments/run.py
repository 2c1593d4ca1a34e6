"""One simulation run: simulate, tabulate, summarise, and store with its identity.

:func:`simulate` is pure (a scenario and a seed in, tables and a summary out). :func:`execute_run` adds the
run's identity (a key hashing the effective scenario, the seed and the code version), writes the run
directory and records the run in the registry. The registry and the output directory are checked before
simulating, so a bad database URL or an unwritable directory costs nothing and leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loyaltysim import __version__
from loyaltysim.experiments.storage import (
    CodeIdentity,
    RunRecord,
    code_identity,
    open_results,
    read_run_dir,
    run_dir_for,
    run_key,
    write_run_dir,
)
from loyaltysim.measures.outcomes import compute as compute_outcomes
from loyaltysim.model import classifications
from loyaltysim.model.agents import Firm
from loyaltysim.model.market import CAMPAIGN_CODES, CAUSE_NAMES, LoyaltyMarket
from loyaltysim.scenario import LoyaltyScenario
from loyaltysim.units import DAYS

# always written; "panel" too when outputs.panel_every is set
TABLES = ("firms", "market", "defections", "surveys", "customers")


@dataclass
class RunResult:
    scenario: LoyaltyScenario
    seed_entropy: int
    spawn_key: tuple[int, ...]
    tables: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def simulate(scenario: LoyaltyScenario, *, seed: int = 0, spawn_key: tuple[int, ...] = ()) -> RunResult:
    """Run a scenario from a root seed (and the spawn key of a sweep's child seed)."""
    t0 = time.perf_counter()
    model = LoyaltyMarket(scenario, seed=np.random.SeedSequence(seed, spawn_key=spawn_key))
    t1 = time.perf_counter()
    model.run()
    t2 = time.perf_counter()
    tables = tabulate(model)
    summary = summarize(scenario, tables)
    t3 = time.perf_counter()
    timings = {"build_s": t1 - t0, "simulate_s": t2 - t1, "tabulate_s": t3 - t2}
    return RunResult(scenario, seed, tuple(spawn_key), tables, summary, timings)


def _concat(parts: list[dict[str, np.ndarray]], columns: list[str]) -> dict[str, np.ndarray]:
    if not parts:
        return {c: np.array([]) for c in columns}
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}


def tabulate(model: LoyaltyMarket) -> dict[str, pd.DataFrame]:
    """The run's tables: firm time series, market time series, defection log and survey answers."""
    names = {f.unique_id: f.name for f in model.firms}
    firms = model.datacollector.get_agenttype_vars_dataframe(Firm).reset_index()
    firms = firms.rename(columns={"Step": "step"})
    firms["step"] = firms["step"].astype(np.int32)
    firms.insert(1, "firm", firms.pop("AgentID").map(names))
    market = model.datacollector.get_model_vars_dataframe().reset_index(drop=True)
    market.insert(0, "step", np.arange(1, len(market) + 1, dtype=np.int32))
    firm_names = np.array([*model.firm_names, None], dtype=object)  # index -1 (no firm) maps to None

    dep = _concat(model.departures, ["step", "customer", "firm", "destination", "cause", "last_score", "tenure",
                                     "satisfaction", "value", "revenue", "second_lifetime"])
    defections = pd.DataFrame({
        "step": dep["step"].astype(np.int32),
        "customer": dep["customer"].astype(np.int32),
        "firm": firm_names[dep["firm"].astype(int)],
        "destination": firm_names[dep["destination"].astype(int)],
        "cause": pd.Categorical.from_codes(dep["cause"].astype(int), categories=CAUSE_NAMES),
        "last_score": pd.array(np.where(dep["last_score"] > 0, dep["last_score"], 0), dtype="Int8"),
        "tenure": dep["tenure"].astype(np.int32),
        "satisfaction": dep["satisfaction"].astype(np.float64),
        "value": dep["value"].astype(np.float64),
        "revenue": dep["revenue"].astype(np.float64),
        "second_lifetime": dep["second_lifetime"].astype(bool),
    })
    defections.loc[defections["last_score"] == 0, "last_score"] = pd.NA
    srv = _concat(model.responses, ["step", "customer", "firm", "score", "recommend", "true_satisfaction"])
    surveys = pd.DataFrame({
        "step": srv["step"].astype(np.int32),
        "customer": srv["customer"].astype(np.int32),
        "firm": firm_names[srv["firm"].astype(int)],
        "score": srv["score"].astype(np.int8),
        "recommend": srv["recommend"].astype(np.int8),
        "true_satisfaction": srv["true_satisfaction"].astype(np.float64),
    })
    tables = {"firms": firms, "market": market, "defections": defections, "surveys": surveys,
              "customers": _customers_table(model)}
    if model.contact_log:
        tables["contacts"] = _contacts_table(model, firm_names)
    if model.warning_log:
        tables["warnings"] = _warnings_table(model, firm_names)
    if model.programmes is not None:
        programmes = pd.DataFrame(model.programmes.log)
        programmes["step"] = programmes["step"].astype(np.int32)
        programmes["firm"] = firm_names[programmes["firm"].astype(int)]
        tables["programmes"] = programmes
        if model.programmes.settlement:
            settlement = pd.DataFrame(model.programmes.settlement)
            settlement["step"] = settlement["step"].astype(np.int32)
            tables["settlement"] = settlement
    if model.category_log:
        categories = pd.DataFrame(model.category_log)
        categories["step"] = categories["step"].astype(np.int32)
        tables["categories"] = categories
    if model.panel:
        tables["panel"] = _panel_table(model)
    return tables


def _warnings_table(model: LoyaltyMarket, firm_names: np.ndarray) -> pd.DataFrame:
    """Every customer a retention or personalised campaign scored (``campaign``): its score (early-warning risk, or
    the value the firm's records show), whether the target flagged it, whether it was given the offer (and at what
    cost), and the step it next left the firm (``left_at``, if it did)."""
    cols = list(model.warning_log[0])
    raw = _concat(model.warning_log, cols)
    table = pd.DataFrame(raw)
    table["campaign"] = pd.Categorical.from_codes(raw["campaign"].astype(int), categories=list(CAMPAIGN_CODES))
    table["firm"] = firm_names[raw["firm"].astype(int)]
    dep = _concat(model.departures, ["step", "customer", "firm"])
    left = pd.DataFrame({"customer": dep["customer"].astype(np.int32), "firm": dep["firm"].astype(np.int32),
                         "left_at": dep["step"].astype(np.int32)})
    scored = pd.DataFrame({"index": np.arange(len(table)), "customer": raw["customer"].astype(np.int32),
                           "firm": raw["firm"].astype(np.int32), "step": raw["step"]})
    later = scored.merge(left, on=["customer", "firm"])
    later = later[later["left_at"] > later["step"]].groupby("index")["left_at"].min()
    table["left_at"] = later.reindex(np.arange(len(table))).astype("Int32").to_numpy()
    return table


def _contacts_table(model: LoyaltyMarket, firm_names: np.ndarray) -> pd.DataFrame:
    """Every win-back contact: who, when, what the firm knew (cause, time since lapse, first-lifetime value), the
    offer, whether the customer came back while it lasted, and the margin, revenue and length (in steps) of the
    second lifetime so far: to the customer's next departure from the firm (``second_ended``), or to the end of the
    run."""
    cols = list(model.contact_log[0])
    raw = _concat(model.contact_log, cols)
    contacts = pd.DataFrame(raw)
    contacts["firm"] = firm_names[raw["firm"].astype(int)]
    contacts["cause"] = pd.Categorical.from_codes(raw["cause"].astype(int), categories=CAUSE_NAMES)
    regains = _concat(model.regain_log, ["step", "customer", "firm"])
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
    st = model.customers
    dep = _concat(model.departures, ["step", "customer", "firm", "value", "revenue", "second_lifetime"])
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
    length[running["index"][still]] = (model.steps - running["regained_at"][still]).to_numpy()
    contacts["second_value"] = value
    contacts["second_revenue"] = revenue
    contacts["second_steps"] = length  # to the next departure, or to the end of the run (censored)
    contacts["second_ended"] = pd.Series(contacts.index.isin(later.index), index=contacts.index) & contacts[
        "accepted"]
    return contacts.drop(columns=["offer_until"])


def _customers_table(model: LoyaltyMarket) -> pd.DataFrame:
    """Every customer at the end of the run, with the firm it had when the warm-up ended (its cohort)."""
    st = model.customers
    n = len(st)
    has = st.current >= 0
    names = np.array([*model.firm_names, None], dtype=object)
    frame = pd.DataFrame({
        "customer": np.arange(n, dtype=np.int32),
        "segment": pd.Categorical.from_codes(st.segment.astype(int), categories=model.segment_names),
        "value_tier": pd.Categorical.from_codes(st.value_tier.astype(int), categories=["low", "medium", "high"]),
        "active": st.active.copy(),
        "firm_after_warmup": names[model.firm_after_warmup],
        "firm": names[st.current],
        "tenure": st.tenure.copy(),
        "satisfaction": np.where(has, st.satisfaction[np.arange(n), np.where(has, st.current, 0)], np.nan),
        "attitude": st.attitude.copy(),
        "last_score": pd.array(np.where(st.last_score > 0, st.last_score, 0), dtype="Int8"),
    })
    frame.loc[frame["last_score"] == 0, "last_score"] = pd.NA
    for kind, names_ in (("ladder", classifications.LADDER), ("dick_basu", classifications.DICK_BASU),
                         ("jones_sasser", classifications.JONES_SASSER)):
        frame[kind] = pd.Categorical.from_codes(model.classify_codes(kind).astype(int), categories=list(names_))
    return frame


def _panel_table(model: LoyaltyMarket) -> pd.DataFrame:
    """Per-customer snapshots, with codes turned into readable categories."""
    cols = list(model.panel[0])
    raw = _concat(model.panel, cols)
    panel = pd.DataFrame(raw)
    panel["segment"] = pd.Categorical.from_codes(raw["segment"].astype(int), categories=model.segment_names)
    panel["value_tier"] = pd.Categorical.from_codes(raw["value_tier"].astype(int),
                                                    categories=["low", "medium", "high"])
    panel["firm"] = np.array([*model.firm_names, None], dtype=object)[raw["firm"].astype(int)]
    panel["last_score"] = pd.array(np.where(raw["last_score"] > 0, raw["last_score"], 0), dtype="Int8")
    panel.loc[panel["last_score"] == 0, "last_score"] = pd.NA
    for col, names in (("ladder", classifications.LADDER), ("dick_basu", classifications.DICK_BASU),
                       ("jones_sasser", classifications.JONES_SASSER)):
        panel[col] = pd.Categorical.from_codes(raw[col].astype(int), categories=list(names))
    return panel


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(scenario: LoyaltyScenario, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Outcomes per firm over the reported period (after the warm-up).

    Annual churn is defections per customer-year: defections over the period divided by mean customers and
    by the period's length in years. NPV discounts each step's profit to the end of the warm-up.
    """
    warm = scenario.warmup_steps()
    steps = scenario.steps()
    step_years = DAYS[scenario.time.step] / DAYS["year"]
    years = (steps - warm) * step_years
    rate = scenario.economics.discount_rate
    per_year = rate.value * DAYS["year"] / DAYS[rate.unit]
    firms = tables["firms"][tables["firms"]["step"] > warm]
    dep = tables["defections"][tables["defections"]["step"] > warm]
    focal = scenario.policy.firm
    out = []
    for name, g in firms.groupby("firm", sort=False):
        discount = (1.0 + per_year) ** (-(g["step"].to_numpy() - warm) * step_years)
        d = dep[dep["firm"] == name]
        scored = d["last_score"].dropna()
        answers = g[[f"score_{s}" for s in range(1, 6)]].sum()
        asked = answers.sum()
        mean_customers = g["customers"].mean()
        out.append({
            "firm": name,
            "focal": name == focal,
            "customers_end": int(g["customers"].iloc[-1]),
            "share_end": _nan_to_none(g["share"].iloc[-1]),
            "share_mean": _nan_to_none(g["share"].mean()),
            "annual_churn": _nan_to_none(len(d) / mean_customers / years if mean_customers else float("nan")),
            "revenue": float(g["revenue"].sum()),
            "profit": float(g["profit"].sum()),
            "npv": float((g["profit"].to_numpy() * discount).sum()),
            "satisfaction_mean": _nan_to_none(g["satisfaction"].mean()),
            "score_mean": _nan_to_none(
                float((answers.to_numpy() * np.arange(1, 6)).sum() / asked) if asked else float("nan")),
            "nps_mean": _nan_to_none(g["nps"].mean()),
            "satisfied_defector_share": _nan_to_none(
                float((scored >= 4).mean()) if len(scored) else float("nan")),
        })
    scored = dep["last_score"].dropna()
    causes = dep["cause"].value_counts()
    return {
        "scenario": scenario.name,
        "steps": steps,
        "warmup_steps": warm,
        "step": scenario.time.step,
        "firms": out,
        "market": {
            "defections": len(dep),
            "satisfied_defector_share": _nan_to_none(float((scored >= 4).mean()) if len(scored) else float("nan")),
            "defection_causes": {c: int(causes.get(c, 0)) for c in CAUSE_NAMES if c != "none"},
        },
    }


@dataclass
class StoredRun:
    key: str
    run_dir: Path
    summary: dict[str, Any]
    reused: bool


def with_outcomes(result: RunResult, names: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> dict:
    """The run's summary plus ``extra`` fields (e.g. an experiment's name, design labels and replication) and,
    when ``names`` are given, the named outcomes (:func:`loyaltysim.outcomes.compute`; NaN stored as None)."""
    summary = {**result.summary, **(extra or {})}
    if names:
        values = compute_outcomes(list(names), result.scenario, result.tables, result.summary)
        summary["outcomes"] = {k: _nan_to_none(v) for k, v in values.items()}
    return summary


def build_manifest(key: str, effective: dict, result: RunResult, code: CodeIdentity, started: datetime,
                   summary: dict, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run directory's ``manifest.json``: the effective scenario, the seed, the code, timings and summary.

    ``extra`` fields (an experiment run's name, design labels, replication, outcomes) go in at the top level.
    """
    return {
        "run_key": key,
        "scenario": effective,
        "seed": {"entropy": result.seed_entropy, "spawn_key": list(result.spawn_key)},
        "package": {"name": "loyaltysim", "version": __version__},
        "code": {"commit": code.commit, "dirty": code.dirty, "source_digest": code.source_digest},
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "mesa": _mesa_version(), "pandas": pd.__version__},
        "tables": list(result.tables),
        "timings": result.timings,
        "created_at": started.isoformat(),
        "summary": summary,
        **(extra or {}),
    }


def execute_run(scenario: LoyaltyScenario, *, seed: int, out_root: Path, db_url: str,
                spawn_key: tuple[int, ...] = (), experiment: str | None = None, force: bool = False,
                outcomes: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> StoredRun:
    """Simulate and store one run, unless the same run (same key) is already stored and complete.

    ``outcomes`` (names from :mod:`loyaltysim.measures.outcomes`) and ``extra`` fields are added to the summary and the
    manifest, as a sweep stores its runs, so that a run of an experiment replayed from its manifest is stored
    the same way.
    """
    out_root, registry = open_results(out_root, db_url)
    try:
        code = code_identity()
        effective = scenario.to_dict()
        key = run_key(effective, seed, spawn_key, code)
        run_dir = run_dir_for(out_root, key)
        existing = registry.get_run(key)
        if existing is not None and existing.status == "done" and not force and run_dir.exists():
            manifest, _ = read_run_dir(run_dir)
            return StoredRun(key, run_dir, manifest["summary"], reused=True)
        started = datetime.now(UTC)
        record = RunRecord(key=key, experiment_name=experiment, scenario_name=scenario.name, seed_entropy=str(seed),
                           spawn_key=json.dumps(list(spawn_key)), version=code.version, commit=code.commit,
                           dirty=code.dirty, status="running", started_at=started, run_dir=str(run_dir))
        registry.upsert_run(record)
        try:
            result = simulate(scenario, seed=seed, spawn_key=spawn_key)
            summary = with_outcomes(result, outcomes, extra)
            fields = {**(extra or {}), **({"outcomes": summary["outcomes"]} if outcomes else {})}
            manifest = build_manifest(key, effective, result, code, started, summary, fields)
            write_run_dir(out_root, key, manifest, result.tables)
        except BaseException as err:
            record.status = "failed"
            record.error = f"{type(err).__name__}: {err}"
            record.finished_at = datetime.now(UTC)
            registry.upsert_run(record)
            raise
        record.status = "done"
        record.finished_at = datetime.now(UTC)
        record.duration_s = sum(result.timings.values())
        record.summary_json = json.dumps(summary, sort_keys=True)
        registry.upsert_run(record)
        return StoredRun(key, run_dir, summary, reused=False)
    finally:
        registry.close()


def _mesa_version() -> str:
    import mesa

    return mesa.__version__
