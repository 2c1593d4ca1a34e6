"""Per-customer event logs, kept on request (``outputs.event_logs``): one row per event, so that a hypothesis about
customers can be tested with a table query instead of stepping the model and copying arrays.

* ``purchases``: each customer's purchase in a step (in the market; categories keep their own totals): the firm,
  occasions, units, the list price, the personal-offer and programme discounts, and the revenue it brought;
* ``service``: each service failure, whether the customer complained and whether the complaint was recovered;
* ``programme_events``: each customer who joined or left a loyalty programme, or redeemed points, in a step: the
  programme, the event, the points redeemed, and its balance and status tier after the step.

A log is a measurement: keeping one never changes a number of the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loyaltysim.model.logs import concat
from loyaltysim.model.state import CustomerState

EVENT_LOGS = ("purchases", "service", "programme_events")  # the kinds a scenario can ask for
PURCHASE_COLUMNS = ["step", "customer", "firm", "occasions", "units", "price", "discount", "member_discount",
                    "revenue"]
SERVICE_COLUMNS = ["step", "customer", "firm", "complained", "recovered"]
PROGRAMME_COLUMNS = ["step", "customer", "programme", "event", "points", "balance", "tier"]
PROGRAMME_EVENTS = ("joined", "left", "redeemed")


class EventLogs:
    """The event logs a scenario asked for, recorded after the customers step."""

    def __init__(self, kinds: list[str]):
        unknown = sorted(set(kinds) - set(EVENT_LOGS))
        if unknown:
            raise ValueError(f"unknown event logs {unknown}; known: {list(EVENT_LOGS)}")
        self.kinds = tuple(kinds)
        self.rows: dict[str, list[dict[str, np.ndarray]]] = {kind: [] for kind in self.kinds}
        self.programme_names: list[str] = []
        self.was_member: list[np.ndarray] = []  # each programme's members at the end of the previous step

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

    def record_programmes(self, ledgers: list, t: int) -> None:
        """Log who joined, left or redeemed in each programme (``ledgers``: the programme book's) this step."""
        if "programme_events" not in self.rows:
            return
        if not self.was_member:
            self.programme_names = [ledger.name for ledger in ledgers]
            self.was_member = [np.zeros_like(ledger.member) for ledger in ledgers]
        for k, ledger in enumerate(ledgers):
            member, was = ledger.member, self.was_member[k]
            redeemed = getattr(ledger, "step_points_redeemed", None)
            happened = {"joined": member & ~was, "left": was & ~member,
                        "redeemed": np.zeros_like(member) if redeemed is None else redeemed > 0}
            balance = ledger.balance() if hasattr(ledger, "balance") else None
            tier = ledger.status.tier if ledger.status is not None else None
            for code, event in enumerate(PROGRAMME_EVENTS):
                who = np.flatnonzero(happened[event])
                self.rows["programme_events"].append({
                    "step": np.full(who.size, t, np.int32), "customer": who.astype(np.int32),
                    "programme": np.full(who.size, k, np.int32), "event": np.full(who.size, code, np.int8),
                    "points": redeemed[who] if event == "redeemed" else np.full(who.size, np.nan),
                    "balance": balance[who] if balance is not None else np.full(who.size, np.nan),
                    "tier": tier[who].astype(np.int8) if tier is not None else np.full(who.size, -1, np.int8),
                })
            self.was_member[k] = member.copy()

    def tables(self, firm_names: np.ndarray) -> dict[str, pd.DataFrame]:
        """One table per kind kept (firms and programmes by name), rows in step order."""
        columns = {"purchases": PURCHASE_COLUMNS, "service": SERVICE_COLUMNS, "programme_events": PROGRAMME_COLUMNS}
        out = {}
        for kind, parts in self.rows.items():
            raw = concat(parts, columns[kind])
            table = pd.DataFrame(raw)
            table["step"] = table["step"].astype(np.int32)
            table["customer"] = table["customer"].astype(np.int32)
            if kind == "programme_events":
                names = np.array(self.programme_names, dtype=object)
                table["programme"] = names[raw["programme"].astype(int)] if names.size else raw["programme"]
                table["event"] = pd.Categorical.from_codes(raw["event"].astype(int), categories=PROGRAMME_EVENTS)
                table["tier"] = pd.array(np.where(raw["tier"] >= 0, raw["tier"], 0), dtype="Int8")
                table.loc[raw["tier"] < 0, "tier"] = pd.NA
                table = table.sort_values(["step", "customer"], kind="stable", ignore_index=True)
            else:
                table["firm"] = firm_names[raw["firm"].astype(int)]
            out[kind] = table
        return out
