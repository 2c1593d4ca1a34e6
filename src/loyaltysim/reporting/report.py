"""Reports of an experiment: tables and figures of its outcomes over replications.

The runs reported are exactly those the experiment produces on the current code: the run keys are recomputed
from the experiment file as the sweep computes them, so runs of another code version (another key) are never
mixed in. The results become a tidy table, one row per run and outcome (the design point's labels, replication,
outcome, value), from which the report writes under ``<out>/<experiment name>/``:

* ``results.csv``: the tidy table itself;
* ``summary.csv`` and ``summary.md``: per design point and outcome, n (runs with a value: NaNs are dropped),
  mean, standard deviation and the 95% confidence interval of the mean (t distribution);
* with a ``reference``: ``differences.csv`` and ``differences.md``, the paired differences (same replication,
  so common random numbers) of each design point against its reference design point, mean and 95% CI, and with
  ``risk = true`` their 5th and 95th percentiles (numpy's linear interpolation) and P(difference < 0);
* ``figures/<outcome>.png``: mean and 95% CI by design point (first factor on the x axis, the second as hue,
  further factors as panels), and any figures the experiment names from :data:`FIGURES`.

The figures and findings checks an experiment file may name are declared in
:mod:`loyaltysim.experiments.registry`; each is implemented here by a function registered with
:func:`register_figure` or :func:`register_findings`, in a module of :data:`FIGURE_MODULES` (imported by
:func:`load_figures` whenever they are looked up)::

    @register_figure("retention_curve")
    def retention_curve(results: pd.DataFrame, experiment: Experiment, folder: Path) -> Path:
        ...  # draw from the tidy results (columns: factors, design, replication, outcome, value, key, run_dir)
        return folder / "retention_curve.png"

A module of the package may only register declared names; code outside the package declares its names by
registering them.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from loyaltysim.experiments import registry
from loyaltysim.measures.outcomes import describe_measure, parse_name

if TYPE_CHECKING:
    from loyaltysim.experiments.design import Experiment
    from loyaltysim.experiments.storage import Registry

FigureFunction = Callable[[pd.DataFrame, "Experiment", Path], Path]
FIGURES: dict[str, FigureFunction] = {}
# modules that register figures and findings when imported; :func:`load_figures` imports those that exist
FIGURE_MODULES: list[str] = [
    "loyaltysim.reporting.findings.trap",
    "loyaltysim.reporting.findings.jones_sasser",
    "loyaltysim.reporting.findings.winback",
    "loyaltysim.reporting.findings.programmes",
]
_F = TypeVar("_F", bound=FigureFunction)

CONFIDENCE = 0.95
STAT_COLUMNS = ("n", "mean", "sd", "ci_low", "ci_high")
RISK_COLUMNS = ("p05", "p95", "p_negative")


class ReportError(Exception):
    """A report that cannot be written as asked (e.g. the sweep is incomplete); the message says what to do."""


def _declare(kind: registry.Kind, name: str, fn: Callable) -> None:
    """Check that a function of the package implements a declared name; declare a name from outside it."""
    if name in registry.declared(kind):
        return
    if fn.__module__.split(".")[0] == "loyaltysim":
        raise ValueError(f"{kind} '{name}' ({fn.__module__}.{fn.__qualname__}) is not declared; declare it in "
                         f"loyaltysim.experiments.registry")
    registry.declare(kind, name, (fn.__doc__ or "").strip())


def register_figure(name: str) -> Callable[[_F], _F]:
    """Decorator: make a figure function available to experiment files as ``figures = ["<name>"]``.

    The function gets the tidy results, the experiment and the report's figure folder, and returns the path
    it wrote.
    """

    def register(fn: _F) -> _F:
        old = FIGURES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"a figure named '{name}' is already registered ({old.__module__}.{old.__qualname__})")
        _declare("figure", name, fn)
        FIGURES[name] = fn
        return fn

    return register


def unregister_figure(name: str) -> None:
    """Remove a figure registered from outside the package, and its declaration."""
    FIGURES.pop(name, None)
    registry.withdraw("figure", name)


FindingsFunction = Callable[[pd.DataFrame, "Experiment"], list[dict]]
FINDINGS: dict[str, FindingsFunction] = {}


def register_findings(name: str) -> Callable[[FindingsFunction], FindingsFunction]:
    """Decorator: make a findings check available to experiment files as ``findings = ["<name>"]``.

    The function gets the tidy results and the experiment and returns a list of checks, each a dict with
    ``effect`` (what the literature reports), ``holds`` (bool) and ``evidence`` (the numbers); the report writes
    them to ``findings.md``.
    """

    def register(fn: FindingsFunction) -> FindingsFunction:
        _declare("findings", name, fn)
        FINDINGS[name] = fn
        return fn

    return register


def unregister_findings(name: str) -> None:
    """Remove a findings check registered from outside the package, and its declaration."""
    FINDINGS.pop(name, None)
    registry.withdraw("findings", name)


def load_figures() -> dict[str, FigureFunction]:
    """The figure registry, after importing the modules in :data:`FIGURE_MODULES`, which also fill
    :data:`FINDINGS` (a missing one is skipped; an error inside one is not)."""
    for name in FIGURE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
    return FIGURES


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float]:
    """n (non-NaN values), mean, sd and the t-distribution confidence interval of the mean.

    With one value the sd and interval are NaN; with none, everything but n.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    if n >= 2:
        sd = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    else:
        sd = half = math.nan
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def _t_errorbar(values: pd.Series) -> tuple[float, float]:
    s = interval(values)
    return s["ci_low"], s["ci_high"]


def _ordered(tidy: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Categorical columns in order of first appearance (unless they already are categorical)."""
    tidy = tidy.copy()
    for c in columns:
        if not isinstance(tidy[c].dtype, pd.CategoricalDtype):
            tidy[c] = pd.Categorical(tidy[c].astype(str), categories=list(pd.unique(tidy[c].astype(str))),
                                     ordered=True)
    return tidy


def summary_table(tidy: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Per outcome and design point: n, mean, sd, ci_low, ci_high (95%, t distribution; NaNs dropped)."""
    factors = list(factors)
    tidy = _ordered(tidy, [*factors, "outcome"])
    rows = []
    for keys, g in tidy.groupby(["outcome", *factors], observed=True, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        outcome, labels = keys[0], keys[1:]
        rows.append({**dict(zip(factors, labels, strict=True)), "outcome": outcome,
                     **interval(g["value"].to_numpy(dtype=float))})
    return pd.DataFrame(rows, columns=[*factors, "outcome", *STAT_COLUMNS])


def paired_differences(tidy: pd.DataFrame, factors: Sequence[str], reference: dict[str, str],
                       risk: bool = False) -> pd.DataFrame:
    """Each design point minus its reference design point, replication by replication, per outcome.

    The reference of a design point has the ``reference`` labels for the factors named there and its own
    labels for the others; design points that are their own reference are left out. Pairs where either value
    is NaN are dropped. With ``risk``, also the 5th and 95th percentiles of the differences and the share of
    replications where the difference is negative.
    """
    factors = list(factors)
    columns = [*factors, "reference", "outcome", *STAT_COLUMNS, *(RISK_COLUMNS if risk else ())]
    if not reference or not factors:
        return pd.DataFrame(columns=columns)
    tidy = _ordered(tidy, [*factors, "outcome"])
    by_point = {keys if isinstance(keys, tuple) else (keys,): g
                for keys, g in tidy.groupby(factors, observed=True, sort=True)}
    ref_text = ", ".join(f"{k}={v}" for k, v in reference.items())
    rows = []
    for outcome in tidy["outcome"].cat.categories:
        for labels, g in by_point.items():
            point = dict(zip(factors, labels, strict=True))
            ref = tuple(reference.get(f, point[f]) for f in factors)
            if ref == labels or ref not in by_point:
                continue
            mine = g[g["outcome"] == outcome][["replication", "value"]]
            theirs = by_point[ref]
            theirs = theirs[theirs["outcome"] == outcome][["replication", "value"]]
            pairs = mine.merge(theirs, on="replication", suffixes=("", "_ref"))
            d = (pairs["value"] - pairs["value_ref"]).to_numpy(dtype=float)
            d = d[~np.isnan(d)]
            row = {**point, "reference": ref_text, "outcome": outcome, **interval(d)}
            if risk:
                p05, p95 = (np.percentile(d, [5, 95]) if d.size else (math.nan, math.nan))
                row.update(p05=float(p05), p95=float(p95), p_negative=float((d < 0).mean()) if d.size else math.nan)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return "-"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table: numbers right-aligned, 4 significant digits (large ones as whole
    numbers with thousands separators), NaN as '-'."""
    columns = list(frame.columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in columns]
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "| " + " | ".join("---:" if num else "---" for num in numeric) + " |"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def describe_outcome(name: str) -> str:
    """A readable axis label for an outcome name, with its unit where known (from the measure's declaration in
    :data:`loyaltysim.measures.outcomes.MEASURES`)."""
    if " - " in name:  # a difference of two outcomes of the same run
        first, second = (part.strip() for part in name.split(" - ", 1))
        return f"difference within the run: {describe_outcome(first)} minus {second}"
    parsed = parse_name(name)
    if parsed is None:
        return name
    who = {"focal": "focal firm", "market": "market"}.get(parsed.who, parsed.firm)
    return f"{who}: {describe_measure(parsed.measure)}"


def figure_file_name(outcome: str) -> str:
    """The outcome's figure file: characters other than letters, digits, '_', '.' and '-' become '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", outcome).strip("_") + ".png"


def outcome_figure(tidy: pd.DataFrame, outcome: str, factors: Sequence[str], path: Path,
                   title: str = "") -> Path:
    """Mean and 95% CI (t distribution, as in the summary) of one outcome by design point, as a PNG.

    The first factor is on the x axis, the second is the hue, and each combination of further factors gets a
    panel of its own.
    """
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    factors = list(factors)
    tidy = _ordered(tidy, [*factors, "outcome"])
    data = tidy[tidy["outcome"] == outcome].dropna(subset=["value"]).copy()
    if not factors:
        data["design"] = "all runs"
    x = factors[0] if factors else "design"
    hue = factors[1] if len(factors) >= 2 else None
    panels = factors[2:]
    x_order = list(tidy[x].cat.categories) if factors else ["all runs"]
    hue_order = list(tidy[hue].cat.categories) if hue else None
    combos = [()] if not panels else list(dict.fromkeys(map(tuple, tidy[panels].astype(str).to_numpy())))
    n_reps = tidy["replication"].nunique() if "replication" in tidy else 0
    long_labels = sum(len(str(v)) for v in x_order) > 36 or max(len(str(v)) for v in x_order) > 12
    width = min(5.5, 1.6 + 0.9 * len(x_order) * (1 + 0.3 * len(hue_order or []))) * len(combos)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(max(width + (2.0 if hue else 0.0), 5.0), 4.6), layout="constrained")
        axes = fig.subplots(1, len(combos), sharey=True, squeeze=False)[0]
        palette = sns.color_palette("colorblind", len(hue_order or [0]))
        for i, (ax, combo) in enumerate(zip(axes, combos, strict=True)):
            sub = data
            for f, v in zip(panels, combo, strict=True):
                sub = sub[sub[f].astype(str) == v]
            if panels:
                ax.set_title(", ".join(f"{f}={v}" for f, v in zip(panels, combo, strict=True)))
            if sub.empty:
                ax.text(0.5, 0.5, "no values\n(every run gave NaN)", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_xticks(range(len(x_order)), [str(v) for v in x_order])
                ax.set_xlim(-0.5, len(x_order) - 0.5)
            else:
                sns.pointplot(data=sub, x=x, y="value", hue=hue, order=x_order, hue_order=hue_order,
                              errorbar=_t_errorbar, dodge=0.3 if hue else False, capsize=0.08,
                              palette=palette if hue else None, color=None if hue else palette[0], ax=ax)
            ax.set_xlabel(x if factors else "")
            ax.set_ylabel("\n".join(textwrap.wrap(describe_outcome(outcome), 42)) if i == 0 else "")
            if not data.empty and data["value"].abs().max() >= 1e4:  # money: whole numbers, thousands separated
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            if long_labels:
                ax.tick_params(axis="x", labelrotation=30)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
            legend = ax.get_legend()
            if legend is not None:
                if i == len(axes) - 1:
                    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), title=hue, frameon=False)
                else:
                    legend.remove()
        reps = f" over {n_reps} replications" if n_reps else ""
        fig.suptitle(f"{title + ': ' if title else ''}{outcome}\nmean and 95% confidence interval{reps}",
                     fontsize="medium")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------
# From the registry to the files
# --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    folder: Path
    paths: list[Path] = field(default_factory=list)
    runs: int = 0  # runs reported
    total: int = 0  # runs in the experiment
    missing: int = 0  # not stored (not run, failed, damaged, or another code version)


def _outcomes_from_run_dir(run_dir: Path, names: list[str]) -> dict[str, float]:
    """Outcomes a stored run's summary lacks (it was stored for an experiment asking others), from its files."""
    from loyaltysim.experiments.storage import read_run_dir
    from loyaltysim.measures.outcomes import compute
    from loyaltysim.scenario import scenario_from_dict

    manifest, tables = read_run_dir(run_dir)
    return compute(names, scenario_from_dict(manifest["scenario"], source=str(run_dir)), tables,
                   manifest["summary"])


def collect_results(experiment: Experiment, registry: Registry, out_root: Path | str) -> tuple[pd.DataFrame, int]:
    """The tidy results of the experiment's stored runs, and how many of its runs are not stored."""
    from loyaltysim.experiments.storage import run_dir_for, run_dir_problem
    from loyaltysim.experiments.sweep import plan

    out_root = Path(out_root).resolve()
    tasks = plan(experiment, out_root)
    known = {r.key: r for r in registry.runs(experiment.name)}
    records: list[dict[str, Any]] = []
    missing = 0
    for t in tasks:
        row = known.get(t.key) or registry.get_run(t.key)
        if row is None or row.status != "done":
            missing += 1
            continue
        run_dir = Path(row.run_dir) if row.run_dir else run_dir_for(out_root, t.key)
        if run_dir_problem(run_dir) is not None:  # damaged or incomplete: the sweep runs it again
            missing += 1
            continue
        values = json.loads(row.summary_json or "{}").get("outcomes") or {}
        lacking = [n for n in experiment.outcomes if n not in values]
        if lacking:
            values = {**values, **_outcomes_from_run_dir(run_dir, lacking)}
        for name in experiment.outcomes:
            value = values.get(name)
            records.append({**t.design, "design": t.design_index, "replication": t.replication, "outcome": name,
                            "value": math.nan if value is None else float(value), "key": t.key,
                            "run_dir": str(run_dir)})
    columns = [*experiment.factors, "design", "replication", "outcome", "value", "key", "run_dir"]
    tidy = pd.DataFrame(records, columns=columns)
    for f, labels in experiment.levels.items():
        tidy[f] = pd.Categorical(tidy[f], categories=labels, ordered=True)
    tidy["outcome"] = pd.Categorical(tidy["outcome"], categories=experiment.outcomes, ordered=True)
    tidy["value"] = tidy["value"].astype(float)
    tidy = tidy.sort_values(["design", "replication", "outcome"], kind="stable").reset_index(drop=True)
    return tidy, missing


def other_version_runs(experiment: Experiment, registry: Registry, out_root: Path | str) -> int:
    """Runs stored under the experiment's name whose keys this code and file do not make: another code version
    (the package's source or the numeric libraries differ) or other settings."""
    from loyaltysim.experiments.sweep import plan

    keys = {t.key for t in plan(experiment, Path(out_root).resolve())}
    return sum(1 for r in registry.runs(experiment.name) if r.status == "done" and r.key not in keys)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_report_files(tidy: pd.DataFrame, experiment: Experiment, folder: Path | str) -> list[Path]:
    """Write the tables and figures of ``tidy`` (the tidy results) into ``folder``; return the paths."""
    folder = Path(folder)
    figures = folder / "figures"
    try:
        figures.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create report folder '{folder}': {exc.strerror or exc}") from exc
    factors = experiment.factors
    reps = tidy["replication"].nunique()
    paths = []
    tidy.to_csv(folder / "results.csv", index=False)
    paths.append(folder / "results.csv")
    summary = summary_table(tidy, factors)
    summary.to_csv(folder / "summary.csv", index=False)
    paths.append(folder / "summary.csv")
    intro = f"# {experiment.name}: summary\n\n" + (f"{experiment.description}\n\n" if experiment.description else "")
    paths.append(_write(folder / "summary.md", intro + (
        f"Mean, standard deviation and 95% confidence interval of the mean (t distribution) over {reps} "
        "replication(s); n counts the runs where the outcome has a value.\n\n") + markdown_table(summary)))
    if experiment.reference:
        diffs = paired_differences(tidy, factors, experiment.reference, risk=experiment.risk)
        diffs.to_csv(folder / "differences.csv", index=False)
        paths.append(folder / "differences.csv")
        ref = ", ".join(f"{k}={v}" for k, v in experiment.reference.items())
        # the csv keeps every row; the Markdown leaves out outcomes with no pair anywhere (undefined at the
        # reference, e.g. a win-back rate where no campaign ran) and says which
        paired = diffs.groupby("outcome", sort=False)["n"].transform("sum") > 0
        undefined = list(dict.fromkeys(diffs.loc[~paired, "outcome"]))
        text = (f"# {experiment.name}: paired differences against {ref}\n\n"
                "Each design point minus its reference design point (the reference labels for "
                f"{', '.join(experiment.reference)}, its own labels otherwise), replication by replication: both "
                "ran on the same random numbers. Mean, standard deviation and 95% confidence interval (t "
                "distribution); n counts the pairs where both have a value."
                + (" p05 and p95 are the 5th and 95th percentiles of the differences, p_negative the share of "
                   "replications where the difference is below zero." if experiment.risk else "")
                + (f" Left out, as no pair has a value: {', '.join(undefined)}." if undefined else "")
                + "\n\n" + markdown_table(diffs[paired]))
        paths.append(_write(folder / "differences.md", text))
    for outcome in experiment.outcomes:
        paths.append(outcome_figure(tidy, outcome, factors, figures / figure_file_name(outcome),
                                    title=experiment.name))
    load_figures()
    for name in experiment.figures:
        if name not in FIGURES:
            raise ReportError(f"figure '{name}' is not registered; registered: {sorted(FIGURES)}")
        paths.append(Path(FIGURES[name](tidy, experiment, figures)))
    if experiment.findings:
        paths.append(_write(folder / "findings.md", findings_text(tidy, experiment)))
    return paths


def findings_text(tidy: pd.DataFrame, experiment: Experiment) -> str:
    """The experiment's findings checks as Markdown: each effect, whether it holds, and the numbers."""
    lines = [f"# {experiment.name}: findings\n"]
    for name in experiment.findings:
        if name not in FINDINGS:
            raise ReportError(f"findings '{name}' are not registered; registered: {sorted(FINDINGS)}")
        checks = FINDINGS[name](tidy, experiment)
        held = sum(bool(c["holds"]) for c in checks)
        lines.append(f"## {name}: {held} of {len(checks)} hold\n")
        frame = pd.DataFrame(checks)
        frame["holds"] = frame["holds"].map({True: "yes", False: "NO"})
        lines.append(markdown_table(frame[[c for c in frame.columns if c != "evidence"] + ["evidence"]]))
    return "\n".join(lines)


def write_report(experiment: Experiment, out_root: Path | str, db_url: str, *, partial: bool = False) -> Report:
    """Collect the experiment's stored runs from the registry and write the report under
    ``<out_root>/<experiment name>/``.

    Raises :class:`ReportError` if runs are missing (unless ``partial``) or none is stored, and
    :class:`~loyaltysim.experiments.storage.StorageError` if the database is unusable.
    """
    from loyaltysim.experiments.storage import Registry, rebuild_registry

    out_root = Path(out_root).resolve()
    folder = out_root / experiment.name
    with Registry(db_url) as registry:
        registry.check()
        if registry.is_empty():  # a registry lost or emptied while its run folders stay: index them again
            rebuild_registry(out_root, registry)
        registry.mark_abandoned()  # rows left running by processes that are gone: failed, not "still running"
        tidy, missing = collect_results(experiment, registry, out_root)
        others = other_version_runs(experiment, registry, out_root)
    total = experiment.runs
    stored = total - missing
    elsewhere = (f"; {others} run(s) of '{experiment.name}' are stored for another code version or other settings "
                 "(their keys differ), and are not reported" if others else "")
    if stored == 0:
        raise ReportError(f"no run of experiment '{experiment.name}' is stored for the current code{elsewhere}; "
                          f"run `loyaltysim sweep {experiment.path}` first")
    if missing and not partial:
        raise ReportError(f"{missing} of {total} runs of experiment '{experiment.name}' are not stored for the "
                          "current code (not run yet, failed, damaged, or run by another code version)"
                          f"{elsewhere}; run `loyaltysim sweep {experiment.path}` to complete them, or pass "
                          f"--partial to report on the {stored} stored")
    paths = write_report_files(tidy, experiment, folder)
    return Report(folder, paths, runs=stored, total=total, missing=missing)
