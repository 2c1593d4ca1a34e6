"""An experiment's report as an Excel workbook (``loyaltysim report --xlsx``), for strategy teams who take numbers
into their own models and slides.

One file, ``OUT/<experiment>/<experiment>.xlsx`` (written with openpyxl through pandas), with sheets:

* ``summary``: one row per design point; per outcome its mean and 95% confidence interval over the replications,
  and n;
* ``differences`` (with a reference): one row per design point compared, per outcome the mean paired difference
  and its 95% interval and, with ``risk``, the 5th and 95th percentiles and P(difference < 0), the share of
  replications where the difference is below zero (for a money outcome, the probability of a loss);
* ``comparisons`` (with ``--compare all``): every pair of design points, b minus a, with the same statistics;
* ``runs``: one row per run (design labels, replication, run key), one column per outcome;
* ``about``: the experiment, its replications and seed, the reference, the package's version.

Every outcome column's header carries the outcome's unit, e.g. ``focal.npv: mean (money)``, money named in the
scenario's ``economics.currency`` when it has one (``focal.npv: mean (EUR)``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loyaltysim.experiments.design import Experiment
from loyaltysim.measures.outcomes import MEASURES, parse_name
from loyaltysim.version import __version__


def unit(outcome: str, currency: str | None = None) -> str:
    """The outcome's unit as declared with its measure (of the first term of a difference), money in ``currency``
    when one is given; "" if none."""
    first = outcome.split(" - ", 1)[0].strip()
    parsed = parse_name(first)
    declared = MEASURES.get(parsed.measure) if parsed is not None else None
    return declared.unit_in(currency) if declared is not None else ""


def header(outcome: str, what: str, currency: str | None = None) -> str:
    u = unit(outcome, currency)
    return f"{outcome}: {what}" + (f" ({u})" if u else "")


def _wide(frame: pd.DataFrame, keys: list[str], stats: dict[str, str], currency: str | None = None) -> pd.DataFrame:
    """One row per ``keys``; per outcome (in their order) one column per statistic, headed with its unit."""
    rows: dict[tuple, dict] = {}
    for record in frame.to_dict("records"):
        key = tuple(str(record[k]) for k in keys)
        row = rows.setdefault(key, dict(zip(keys, key, strict=True)))
        for column, what in stats.items():
            row[header(str(record["outcome"]), what, currency)] = record[column]
    return pd.DataFrame(list(rows.values()))


def write_workbook(tidy: pd.DataFrame, experiment: Experiment, folder: Path | str,
                   summary: pd.DataFrame, differences: pd.DataFrame | None,
                   comparisons: pd.DataFrame | None = None) -> Path:
    """Write the workbook (see the module's docstring) from the report's tidy results, summary and differences."""
    folder = Path(folder)
    path = folder / f"{experiment.name}.xlsx"
    keys = ["design", *experiment.factors] if experiment.sampling is not None else list(experiment.factors)
    keys = keys or ["design"]
    summary = summary.copy()
    if "design" in keys and "design" not in summary:
        summary["design"] = 0
    currency = experiment.base.economics.currency
    sheets = {"summary": _wide(summary, keys, {"mean": "mean", "ci_low": "95% CI low", "ci_high": "95% CI high",
                                              "n": "n"}, currency)}
    if differences is not None and len(differences):
        stats = {"mean": "mean difference", "ci_low": "95% CI low", "ci_high": "95% CI high"}
        if "p_negative" in differences:
            stats.update(p05="5th percentile", p95="95th percentile", p_negative="P(difference < 0)")
        stats["n"] = "n"
        sheets["differences"] = _wide(differences, [*experiment.factors, "reference"], stats, currency)
    if comparisons is not None and len(comparisons):
        sheets["comparisons"] = _wide(comparisons, ["a", "b"], {
            "mean": "mean of b - a", "ci_low": "95% CI low", "ci_high": "95% CI high", "p05": "5th percentile",
            "p95": "95th percentile", "p_negative": "P(b below a)", "n": "n"}, currency)
    runs, run_keys = tidy, [*experiment.factors, "design", "replication"]
    if "key" in tidy:
        runs, run_keys = tidy.assign(run=tidy["key"].str[:16]), [*run_keys, "run"]
    sheets["runs"] = _wide(runs, run_keys, {"value": "value"}, currency)
    about = [("experiment", experiment.name), ("description", experiment.description),
             ("replications", experiment.replications), ("root seed", experiment.root_seed),
             ("reference", ", ".join(f"{k}={v}" for k, v in (experiment.reference or {}).items()) or "(none)"),
             ("runs reported", int(tidy.drop_duplicates(["design", "replication"]).shape[0])),
             ("intervals", "95% confidence intervals of the mean over the replications (t distribution)"),
             ("differences", "each design point minus its reference, replication by replication (same random "
                             "numbers)"),
             ("loyaltysim", __version__)]
    sheets["about"] = pd.DataFrame(about, columns=["field", "value"])
    tmp = path.with_name(path.name + ".tmp")
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
            sheet = writer.sheets[name]
            for column in sheet.columns:  # wide enough for the headers
                width = max(len(str(c.value)) if c.value is not None else 0 for c in column[:50])
                sheet.column_dimensions[column[0].column_letter].width = min(max(width + 2, 8), 60)
    tmp.replace(path)
    return path
