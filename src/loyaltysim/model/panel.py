"""The per-customer panel (ODD 2.11, observation): every ``outputs.panel_every`` steps, a row per customer with
its state and its purchases at each firm since the previous row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from loyaltysim.model import classifications
from loyaltysim.model.logs import concat
from loyaltysim.model.state import CustomerState
from loyaltysim.scenario import VALUE_TIERS

KINDS = ("ladder", "dick_basu", "jones_sasser")


class Panel:
    """Snapshots of every customer, taken every ``every`` steps (0: never)."""

    def __init__(self, every: int, n: int, firm_names: list[str], segment_names: list[str]):
        self.every = every
        self.firm_names = firm_names
        self.segment_names = segment_names
        self.since = np.zeros((n, len(firm_names)))  # purchases at each firm since the last snapshot
        self.rows: list[dict[str, np.ndarray]] = []

    def record(self, st: CustomerState, t: int, classify_codes: Callable[[str], np.ndarray]) -> None:
        """Count the step's purchases; on snapshot steps, add a row per customer."""
        if not self.every:
            return
        buyer = st.step_firm >= 0
        self.since[np.flatnonzero(buyer), st.step_firm[buyer]] += st.step_purchases[buyer]
        if t % self.every:
            return
        n = len(st)
        has = st.current >= 0
        row = {
            "step": np.full(n, t, np.int32), "customer": np.arange(n, dtype=np.int32), "segment": st.segment.copy(),
            "value_tier": st.value_tier.copy(), "active": st.active.copy(), "firm": st.current.copy(),
            "tenure": st.tenure.copy(),
            "satisfaction": np.where(has, st.satisfaction[np.arange(n), np.where(has, st.current, 0)], np.nan),
            "attitude": st.attitude.copy(), "last_score": st.last_score.copy(),
            **{kind: classify_codes(kind).copy() for kind in KINDS},
        }
        for j, name in enumerate(self.firm_names):
            row[f"purchases_{name}"] = self.since[:, j].copy()
        self.rows.append(row)
        self.since[:] = 0.0

    def table(self) -> pd.DataFrame:
        """The snapshots, with codes turned into readable categories."""
        raw = concat(self.rows, list(self.rows[0]))
        panel = pd.DataFrame(raw)
        panel["segment"] = pd.Categorical.from_codes(raw["segment"].astype(int), categories=self.segment_names)
        panel["value_tier"] = pd.Categorical.from_codes(raw["value_tier"].astype(int), categories=list(VALUE_TIERS))
        panel["firm"] = np.array([*self.firm_names, None], dtype=object)[raw["firm"].astype(int)]
        panel["last_score"] = pd.array(np.where(raw["last_score"] > 0, raw["last_score"], 0), dtype="Int8")
        panel.loc[panel["last_score"] == 0, "last_score"] = pd.NA
        for kind in KINDS:
            panel[kind] = pd.Categorical.from_codes(raw[kind].astype(int), categories=list(classifications.NAMES[kind]))
        return panel
