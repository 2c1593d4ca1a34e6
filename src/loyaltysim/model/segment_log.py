"""Each firm's customers by segment, step by step: the exposure that churn by segment is measured against.

Kept when the market declares more than one segment (``market.customers.segments``): after each step, the number
of customers in the market with each firm in each segment. Defections are in the ``defections`` log with their
customer (whose segment never changes), so a firm's annual churn in a segment is its defections of that segment's
customers over the segment's mean number of customers and the period's years (``annual_churn[segment=<name>]``,
:mod:`loyaltysim.measures.outcomes`).

A log is a measurement: keeping it never changes a number of the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loyaltysim.model.state import CustomerState

COLUMNS = ["step", "firm", "segment", "customers"]


class SegmentLog:
    """Counts of customers by firm and segment after each step (nothing when there is one segment)."""

    def __init__(self, firm_names: list[str], segment_names: list[str]):
        self.firm_names = list(firm_names)
        self.segment_names = list(segment_names)
        self.kept = len(self.segment_names) > 1
        self.steps: list[int] = []
        self.counts: list[np.ndarray] = []  # one [firms x segments] array per step

    def record(self, st: CustomerState, t: int) -> None:
        if not self.kept:
            return
        with_firm = np.flatnonzero(st.current >= 0)
        s = len(self.segment_names)
        cells = st.current[with_firm].astype(np.int64) * s + st.segment[with_firm]
        self.counts.append(np.bincount(cells, minlength=len(self.firm_names) * s)
                           .reshape(len(self.firm_names), s))
        self.steps.append(t)

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{"segments": ...}`` (step, firm, segment, customers), or nothing when the log is not kept."""
        if not self.kept:
            return {}
        f, s = len(self.firm_names), len(self.segment_names)
        counts = np.stack(self.counts) if self.counts else np.zeros((0, f, s), np.int64)
        steps = len(self.counts)
        return {"segments": pd.DataFrame({
            "step": np.repeat(np.asarray(self.steps, np.int32), f * s),
            "firm": np.tile(np.repeat(np.asarray(self.firm_names, dtype=object), s), steps),
            "segment": pd.Categorical.from_codes(np.tile(np.arange(s), f * steps), categories=self.segment_names),
            "customers": counts.reshape(-1).astype(np.int32),
        })}
