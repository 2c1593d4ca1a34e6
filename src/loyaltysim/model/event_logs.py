"""Per-customer event logs, kept on request (``outputs.event_logs``): one row per event, so that a hypothesis about
customers can be tested with a table query instead of stepping the model and copying arrays.

* ``purchases``: each customer's purchase in a step (in the market; categories keep their own totals): the firm,
  occasions, units, the list price, the personal-offer and programme discounts, and the revenue it brought;
* ``service``: each service failure, whether the customer complained and whether the complaint was recovered.

A log is a measurement: keeping one never changes a number of the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loyaltysim.model.logs import concat
from loyaltysim.model.state import CustomerState

EVENT_LOGS = ("purchases", "service")  # the kinds a scenario can ask for
PURCHASE_COLUMNS = ["step", "customer", "firm", "occasions", "units", "price", "discount", "member_discount",
                    "revenue"]
SERVICE_COLUMNS = ["step", "customer", "firm", "complained", "recovered"]


class EventLogs:
    """The event logs a scenario asked for, recorded after the customers step."""

    def __init__(self, kinds: list[str]):
        unknown = sorted(set(kinds) - set(EVENT_LOGS))
        if unknown:
            raise ValueError(f"unknown event logs {unknown}; known: {list(EVENT_LOGS)}")
        self.kinds = tuple(kinds)
        self.rows: dict[str, list[dict[str, np.ndarray]]] = {kind: [] for kind in self.kinds}

    def record(self, st: CustomerState, t: int, prices: np.ndarray) -> None:
        """Log the step's events of the kinds kept (``prices``: each firm's list price this step)."""
        if "purchases" in self.rows:
            who = np.flatnonzero(st.step_firm >= 0)
            firm = st.step_firm[who]
            units = st.step_units[who]
            price = prices[firm]
            discount = st.step_discount[who]
            member_discount = st.step_member_discount[who]
            self.rows["purchases"].append({
                "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32), "firm": firm,
                "occasions": st.step_purchases[who].copy(), "units": units.copy(), "price": price,
                "discount": discount.copy(), "member_discount": member_discount.copy(),
                "revenue": units * price - discount - member_discount,
            })
        if "service" in self.rows:
            who = np.flatnonzero(st.step_failed)
            self.rows["service"].append({
                "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32),
                "firm": st.step_firm[who].copy(), "complained": st.step_complained[who].copy(),
                "recovered": st.step_recovered[who].copy(),
            })

    def tables(self, firm_names: np.ndarray) -> dict[str, pd.DataFrame]:
        """One table per kind kept (firms by name)."""
        columns = {"purchases": PURCHASE_COLUMNS, "service": SERVICE_COLUMNS}
        out = {}
        for kind, parts in self.rows.items():
            raw = concat(parts, columns[kind])
            table = pd.DataFrame(raw)
            table["step"] = table["step"].astype(np.int32)
            table["customer"] = table["customer"].astype(np.int32)
            table["firm"] = firm_names[raw["firm"].astype(int)]
            out[kind] = table
        return out
