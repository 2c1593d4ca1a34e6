"""A run's tables, as pandas DataFrames: what the data collector recorded (``firms``, ``market``), the customers at
the end (``customers``), and what each mechanism logged (``defections``, ``surveys``, and when they ran:
``contacts``, ``warnings``, ``programmes``, ``settlement``, ``categories``, ``panel``, ``segments`` (each firm's
customers by segment, in a market of several segments), and the event logs asked for in ``outputs.event_logs``:
``purchases``, ``service``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loyaltysim.model import classifications
from loyaltysim.model.accounts import FIRM_METRICS
from loyaltysim.model.agents import Firm
from loyaltysim.model.logs import categorical, int8_missing_at
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.scenario import VALUE_TIERS

# always written; the others when the mechanism that logs them ran
TABLES = ("firms", "market", "defections", "surveys", "customers")


def tabulate(model: LoyaltyMarket) -> dict[str, pd.DataFrame]:
    """The run's tables: firm and market time series, the defection log, survey answers, the customers, and the
    logs of campaigns, programmes, categories and the panel when there are any."""
    firms = firms_table(model)
    market = model.datacollector.get_model_vars_dataframe().reset_index(drop=True)
    market.insert(0, "step", np.arange(1, len(market) + 1, dtype=np.int32))
    firm_names = np.array([*model.firm_names, None], dtype=object)  # index -1 (no firm) maps to None
    tables = {"firms": firms, "market": market, "defections": model.accounts.defections_table(firm_names),
              "surveys": model.surveys.table(firm_names), "customers": customers_table(model)}
    tables.update(model.campaigns.tables(model.customers, model.steps, model.accounts.departures, firm_names))
    if model.programmes is not None:
        tables.update(model.programmes.tables(firm_names))
    if model.category_log:
        categories = pd.DataFrame(model.category_log)
        categories["step"] = categories["step"].astype(np.int32)
        tables["categories"] = categories
    if model.panel.rows:
        tables["panel"] = model.panel.table()
    tables.update(model.segment_log.tables())
    tables.update(model.event_logs.tables(firm_names))
    return tables


def firms_table(model: LoyaltyMarket) -> pd.DataFrame:
    """What the data collector recorded for each firm at each step so far: one row per step and firm, with ``step``,
    ``firm`` and the firm metrics (:data:`~loyaltysim.model.accounts.FIRM_METRICS`); no rows before the first step."""
    recorded = model.datacollector.get_agenttype_vars_dataframe(Firm)  # indexed by (Step, AgentID)
    if recorded.empty or "AgentID" not in recorded.index.names:  # nothing recorded yet
        return pd.DataFrame({"step": pd.Series(dtype=np.int32), "firm": pd.Series(dtype=object),
                             **{name: pd.Series(dtype=float) for name in FIRM_METRICS}})
    names = {f.unique_id: f.name for f in model.firms}
    index = recorded.index
    return pd.concat([pd.DataFrame({
        "step": index.get_level_values("Step").to_numpy().astype(np.int32),
        "firm": pd.Series(index.get_level_values("AgentID").to_numpy()).map(names),
    }), recorded.reset_index(drop=True)], axis=1)


def customers_table(model: LoyaltyMarket) -> pd.DataFrame:
    """Every customer at the end of the run, with the firm it had when the warm-up ended (its cohort)."""
    st = model.customers
    n = len(st)
    has = st.current >= 0
    names = np.array([*model.firm_names, None], dtype=object)
    last_score = np.where(st.last_score > 0, st.last_score, 0)
    frame = pd.DataFrame({
        "customer": np.arange(n, dtype=np.int32),
        "segment": categorical(st.segment.astype(int), model.segment_names),
        "value_tier": categorical(st.value_tier.astype(int), VALUE_TIERS),
        "active": st.active.copy(),
        "firm_after_warmup": names[model.firm_after_warmup],
        "firm": names[st.current],
        "tenure": st.tenure.copy(),
        "satisfaction": np.where(has, st.satisfaction[np.arange(n), np.where(has, st.current, 0)], np.nan),
        "attitude": st.attitude.copy(),
        "last_score": int8_missing_at(last_score, last_score == 0),
        **{kind: categorical(model.classify_codes(kind).astype(int), labels)
           for kind, labels in classifications.NAMES.items()},
    })
    return frame
