"""Transaction logs: read and check a customer purchase log, and compute the moments a calibration compares.

**The file.** A CSV file (UTF-8, comma-separated, a header line first) with at least the columns ``customer``,
``date`` and ``amount`` (in any order; other columns are ignored):

* ``customer``: any non-empty text (an id);
* ``date``: ``YYYY-MM-DD`` or ``YYYYMMDD``, optionally followed by a time of day (``T`` or a space, then
  ``HH:MM``, ``HH:MM:SS`` or ``HH:MM:SS.fff``), which is dropped: a log is read at the resolution of a day;
* ``amount``: what the transaction was worth, a finite number >= 0.

:func:`read_log` raises :class:`TransactionLogError` (a :class:`~loyaltysim.scenario.ScenarioError`, printed by the
command line as one message naming the file) for a missing or unreadable file, missing columns, a short line, an
empty customer, an unparseable date and a missing, non-numeric or negative amount, each problem naming the line,
the column and what is allowed.

**Same-day purchases are one transaction.** As the literature does with the CDNOW data (Fader, Hardie & Lee 2005,
"Counting your customers the easy way", Marketing Science 24(2): 275-284; Fader, Hardie & Lee 2005, "RFM and CLV",
Journal of Marketing Research 42(4): 415-430), several orders a customer places on one day count as one
transaction, worth their sum. More generally, every moment here is computed on one transaction per customer and
*period*: a day for a dated log, a step for a simulated one.

**The tidy frame.** One row per transaction, columns ``customer``, ``time`` and ``amount``: ``time`` in weeks since
the start of week 1 (the start of the period the transaction fell in: a multiple of 1/7 for a dated log), so that
week w covers the times [w - 1, w). :func:`from_dates` makes it from a read log, :func:`tidy` from any customer,
time and amount columns (a simulated purchase log with weekly steps: ``tidy(customer, step - first_step, revenue,
period=1.0)``), so a simulated log and an observed one go through the same code. A customer's first transaction is
its trial; every later one is a *repeat* transaction.

**The moments** (each a function of a tidy frame; restrict it to a cohort first with :func:`cohort`):

* :func:`rfm`: each customer's frequency x (repeat transactions in the window), recency t_x (the time of its last
  transaction since its first) and age T (from its first transaction to the end of the window), in weeks: the
  summary the BG/NBD model is fitted to (:mod:`loyaltysim.measures.bgnbd`). The window ends at the start of week
  ``end + 1``; its last period starts at ``end - period``, so T = end - period - first (CDNOW, weeks 1-39: a
  customer who first bought on 1 January 1997 has T = 272 / 7 = 38.86 weeks, as in Fader, Hardie & Lee);
* :func:`repeat_histogram`: how many customers made 0, 1, ..., 6 and 7 or more repeat transactions in a window;
* :func:`weekly_repeats`: the cohort's repeat transactions in each calendar week since week 1, and their running
  total (the tracking curve of Fader, Hardie & Lee's Figure 3);
* :func:`interpurchase_times`: the times between a customer's consecutive transactions;
* :func:`cohort_decay`: the share of the cohort making a repeat transaction in each week;
* :func:`spend`: what each transaction was worth.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.scenario import ScenarioError, read_text_file

DAY = 1.0 / 7.0  # a day, in weeks: the period of a dated log
HISTOGRAM_TOP = 7  # the histogram's last bin is "7+"
COLUMNS = ("customer", "date", "amount")
LOG_MAX_BYTES = 1024 * 2**20  # a log is read whole into memory: at most 1 GiB
MAX_PROBLEMS = 10  # a bad log lists at most this many problems, then how many more there are
DATES_ALLOWED = "YYYY-MM-DD or YYYYMMDD, optionally followed by a time of day, which is dropped"
_DATE = (r"^\s*(?:(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
         r"|(?P<y2>\d{4})(?P<m2>\d{2})(?P<d2>\d{2}))\s*$")


class TransactionLogError(ScenarioError):
    """A transaction log that cannot be used; the message names the file and lists every problem (line, column,
    what is allowed)."""


def read_log(path: str | Path) -> pd.DataFrame:
    """Read and check a transaction log (the module's docstring gives the format): one row per line, in the file's
    order, with columns ``customer`` (str), ``date`` (datetime64, the day) and ``amount`` (float). Same-day
    purchases are still separate rows here; :func:`from_dates` makes them one transaction."""
    path = Path(path)
    try:
        text = read_text_file(path, "a transaction log (.csv)", max_bytes=LOG_MAX_BYTES)
    except ValueError as err:
        raise TransactionLogError(str(path), [str(err)]) from None
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    names = [h.strip().lower() for h in header or []]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        found = ", ".join(repr(h) for h in header) if header else "nothing"
        raise TransactionLogError(str(path), [
            f"line 1 (the header): missing column(s) {', '.join(missing)}; found {found}; a log needs the columns "
            f"{', '.join(COLUMNS)}"])
    where = [names.index(c) for c in COLUMNS]
    rows, lines, problems = [], [], []
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # a blank line
        if len(row) <= max(where):
            problems.append(f"line {reader.line_num}: {len(row)} field(s), the header has {len(header)}")
            continue
        rows.append([row[i].strip() for i in where])
        lines.append(reader.line_num)
    if not rows and not problems:
        raise TransactionLogError(str(path), ["no transactions after the header"])
    raw = pd.DataFrame(rows, columns=list(COLUMNS), dtype=str)
    parts = raw["date"].str.extract(_DATE)
    ymd = parts["y"].fillna(parts["y2"]) + parts["m"].fillna(parts["m2"]) + parts["d"].fillna(parts["d2"])
    dates = pd.to_datetime(ymd, format="%Y%m%d", errors="coerce")
    amounts = pd.to_numeric(raw["amount"], errors="coerce")
    for i, line in enumerate(lines):
        if not raw.at[i, "customer"]:
            problems.append(f"line {line}, column customer: empty (allowed: any non-empty id)")
        if pd.isna(dates.iat[i]):
            problems.append(f"line {line}, column date: {raw.at[i, 'date']!r} is not a date (allowed: "
                            f"{DATES_ALLOWED})")
        amount = amounts.iat[i]
        if not np.isfinite(amount) or amount < 0:
            what = "is negative" if amount < 0 else "is not a number"
            problems.append(f"line {line}, column amount: {raw.at[i, 'amount']!r} {what} (allowed: a finite "
                            "number >= 0)")
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise TransactionLogError(str(path), problems[:MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else []))
    return pd.DataFrame({"customer": raw["customer"], "date": dates, "amount": amounts.astype(np.float64)})


def tidy(customer, time, amount, period: float = DAY) -> pd.DataFrame:
    """The tidy frame (customer, time, amount) of a purchase log given as columns: one transaction per customer and
    period (purchases in the same period summed), ``time`` in weeks since the start of week 1, set to the start of
    its period (``period`` in weeks: ``DAY`` for a dated log, 1.0 for weekly steps). Sorted by customer and time."""
    time = np.asarray(time, dtype=np.float64)
    slot = np.floor(np.round(time / period, 9)).astype(np.int64)
    frame = pd.DataFrame({"customer": np.asarray(customer), "slot": slot, "amount": np.asarray(amount, np.float64)})
    frame = frame.groupby(["customer", "slot"], sort=True, as_index=False)["amount"].sum()
    return pd.DataFrame({"customer": frame["customer"].to_numpy(), "time": frame["slot"].to_numpy() * period,
                         "amount": frame["amount"].to_numpy()})


def from_dates(log: pd.DataFrame, origin: str | pd.Timestamp | None = None) -> pd.DataFrame:
    """The tidy frame of a read log (:func:`read_log`): same-day purchases made one transaction, time in weeks since
    ``origin``, the first day of week 1 (default: the log's first date)."""
    origin = log["date"].min() if origin is None else pd.Timestamp(origin)
    days = (log["date"] - origin).dt.days.to_numpy()
    if (days < 0).any():
        raise ValueError(f"the log has transactions before its origin {origin.date()}")
    return tidy(log["customer"].to_numpy(), days * DAY, log["amount"].to_numpy(), DAY)


def _first_times(frame: pd.DataFrame) -> pd.Series:
    """Each row's customer's first transaction time."""
    return frame.groupby("customer")["time"].transform("min")


def _repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """The repeat transactions: every transaction but each customer's first."""
    return frame[frame["time"] > _first_times(frame)]


def cohort(frame: pd.DataFrame, first_before: float) -> pd.DataFrame:
    """The transactions of the customers whose first transaction is before time ``first_before`` (weeks)."""
    return frame[_first_times(frame) < first_before]


def rfm(frame: pd.DataFrame, end: float, period: float = DAY) -> pd.DataFrame:
    """Per customer whose first transaction is before ``end`` (weeks), from its transactions before ``end``:
    frequency ``x`` (repeat transactions), recency ``t_x`` and age ``T`` (weeks; see the module's docstring).
    Indexed by customer."""
    window = frame[frame["time"] < end]
    g = window.groupby("customer", sort=True)["time"]
    first, last = g.min(), g.max()
    return pd.DataFrame({"x": g.size() - 1, "t_x": last - first, "T": end - period - first})


def histogram_labels(top: int = HISTOGRAM_TOP) -> list[str]:
    """The histogram's bins: "0", "1", ..., "top - 1", "top+"."""
    return [*map(str, range(top)), f"{top}+"]


def repeat_histogram(frame: pd.DataFrame, start: float = 0.0, end: float = np.inf,
                     top: int = HISTOGRAM_TOP) -> pd.Series:
    """How many customers made 0, 1, ..., top - 1 and ``top`` or more repeat transactions in the window [start,
    end) (weeks); the customers counted are those of the frame whose first transaction is before ``end``."""
    customers = frame.loc[_first_times(frame) < end, "customer"].unique()
    repeats = _repeats(frame)
    inside = repeats[(repeats["time"] >= start) & (repeats["time"] < end)]
    counts = inside.groupby("customer").size().reindex(customers, fill_value=0).clip(upper=top)
    return pd.Series(np.bincount(counts.to_numpy(), minlength=top + 1), index=histogram_labels(top), name="customers")


def weekly_repeats(frame: pd.DataFrame, weeks: int) -> pd.DataFrame:
    """The repeat transactions of the frame's customers in each week 1..``weeks`` (``repeats``) and since week 1
    (``cumulative``), indexed by week."""
    repeats = _repeats(frame)
    week = np.floor(repeats["time"].to_numpy()).astype(np.int64) + 1
    counts = np.bincount(week[week <= weeks], minlength=weeks + 1)[1:]
    return pd.DataFrame({"repeats": counts, "cumulative": np.cumsum(counts)},
                        index=pd.RangeIndex(1, weeks + 1, name="week"))


def interpurchase_times(frame: pd.DataFrame) -> pd.Series:
    """The times (weeks) between each customer's consecutive transactions, one value per repeat transaction."""
    ordered = frame.sort_values(["customer", "time"], kind="stable")
    gaps = ordered.groupby("customer")["time"].diff().dropna()
    return gaps.rename("weeks").reset_index(drop=True)


def cohort_decay(frame: pd.DataFrame, weeks: int) -> pd.Series:
    """The share of the frame's customers (the cohort) making at least one repeat transaction in each week
    1..``weeks``, indexed by week."""
    repeats = _repeats(frame)
    week = np.floor(repeats["time"]).astype(np.int64) + 1
    buyers = repeats[week <= weeks].assign(week=week).groupby("week")["customer"].nunique()
    total = frame["customer"].nunique()
    return (buyers.reindex(pd.RangeIndex(1, weeks + 1, name="week"), fill_value=0) / total).rename("share")


def spend(frame: pd.DataFrame, repeat_only: bool = False) -> pd.Series:
    """What each transaction was worth (same-period purchases summed), all of them or the repeat ones only."""
    return (_repeats(frame) if repeat_only else frame)["amount"].reset_index(drop=True)
