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

A sampled design (``[design] kind = "lhs" | "sobol" | "saltelli" | "morris"``) has a numeric column per factor
in the tidy table instead of labels; its summary has a row per design point and outcome with the point's factor
values, ``figures/<outcome>.png`` plots each point's mean against each factor, and
:mod:`loyaltysim.reporting.sensitivity` adds ``sensitivity.csv``, ``sensitivity.md`` and
``figures/sensitivity_<outcome>.png`` (the indices as bars with their intervals). When the sampled design crosses
its points with labelled factors (arms), their labels are columns of the tables as in a grid, the scatter figures
colour each point by its arm, and the sensitivity is analysed per arm: a column per arm in ``sensitivity.csv``, a
sub-section per arm in ``sensitivity.md`` and ``figures/sensitivity_<outcome>_<arm labels>.png``.

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
from loyaltysim.measures.intervals import CONFIDENCE, interval
from loyaltysim.measures.outcomes import describe_measure, parse_name
from loyaltysim.reporting.sensitivity import (
    MAIN_INDEX,
    METHOD,
    RESAMPLES,
    OutcomeSensitivity,
    analyse,
    morris_step,
    sensitivity_table,
)

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


def point_summary(tidy: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """A sampled design's summary: per outcome and design point, its factor values and n, mean, sd, ci_low,
    ci_high as in :func:`summary_table`."""
    summary = summary_table(tidy, ["design"])
    summary["design"] = summary["design"].astype(int)
    points = tidy.drop_duplicates("design")[["design", *factors]]
    return summary.merge(points, on="design", how="left")[["design", *factors, "outcome", *STAT_COLUMNS]]


def _by_point_and_outcome(tidy: pd.DataFrame, factors: list[str]) -> dict[tuple, tuple[pd.Index, np.ndarray]]:
    """Per (design point's labels, outcome): its replications (an index) and values, in the table's row order."""
    out = {}
    for keys, g in tidy.groupby([*factors, "outcome"], observed=True, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        out[keys] = (pd.Index(g["replication"].to_numpy()), g["value"].to_numpy(dtype=float))
    return out


def _paired(mine: tuple[pd.Index, np.ndarray] | None, theirs: tuple[pd.Index, np.ndarray] | None) -> np.ndarray:
    """``mine`` minus ``theirs``, replication by replication (the replications both have, in ``mine``'s order, as
    an inner join on the replication), pairs with a NaN dropped."""
    if mine is None or theirs is None:
        return np.empty(0)
    (mine_reps, mine_values), (their_reps, their_values) = mine, theirs
    if not their_reps.is_unique:  # a replication twice: every pairing, as a merge makes them
        pairs = pd.DataFrame({"replication": mine_reps, "value": mine_values}).merge(
            pd.DataFrame({"replication": their_reps, "value": their_values}), on="replication", suffixes=("", "_ref"))
        d = (pairs["value"] - pairs["value_ref"]).to_numpy(dtype=float)
    else:
        at = their_reps.get_indexer(mine_reps)
        found = at >= 0
        d = mine_values[found] - their_values[at[found]]
    return d[~np.isnan(d)]


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
    values = _by_point_and_outcome(tidy, factors)
    points = list(dict.fromkeys(keys[:-1] for keys in values))  # design order, as the groupby sorts them
    known = set(points)
    ref_text = ", ".join(f"{k}={v}" for k, v in reference.items())
    rows = []
    for outcome in tidy["outcome"].cat.categories:
        for labels in points:
            point = dict(zip(factors, labels, strict=True))
            ref = tuple(reference.get(f, point[f]) for f in factors)
            if ref == labels or ref not in known:
                continue
            d = _paired(values.get((*labels, outcome)), values.get((*ref, outcome)))
            row = {**point, "reference": ref_text, "outcome": outcome, **interval(d)}
            if risk:
                p05, p95 = (np.percentile(d, [5, 95]) if d.size else (math.nan, math.nan))
                row.update(p05=float(p05), p95=float(p95), p_negative=float((d < 0).mean()) if d.size else math.nan)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def pairwise_differences(tidy: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Every pair of design points (A, B), B after A in design order: B minus A, replication by replication, per
    outcome, with the 95% interval, the 5th and 95th percentiles and the share of replications where B is below A
    (``p_negative``): one table answers "A or B?" for every pair."""
    factors = list(factors)
    columns = ["a", "b", "outcome", *STAT_COLUMNS, *RISK_COLUMNS]
    if not factors:
        return pd.DataFrame(columns=columns)
    tidy = _ordered(tidy, [*factors, "outcome"])
    values = _by_point_and_outcome(tidy, factors)
    points = [(", ".join(f"{f}={v}" for f, v in zip(factors, keys, strict=True)), keys)
              for keys in dict.fromkeys(keys[:-1] for keys in values)]  # design order, as the groupby sorts them
    rows = []
    for outcome in tidy["outcome"].cat.categories:
        for i, (label_a, keys_a) in enumerate(points):
            a = values.get((*keys_a, outcome))
            for label_b, keys_b in points[i + 1:]:
                d = _paired(values.get((*keys_b, outcome)), a)
                p05, p95 = np.percentile(d, [5, 95]) if d.size else (math.nan, math.nan)
                rows.append({"a": label_a, "b": label_b, "outcome": outcome, **interval(d), "p05": float(p05),
                             "p95": float(p95), "p_negative": float((d < 0).mean()) if d.size else math.nan})
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


def describe_outcome(name: str, currency: str | None = None) -> str:
    """A readable axis label for an outcome name, with its unit where known (from the measure's declaration in
    :data:`loyaltysim.measures.outcomes.MEASURES`; money in ``currency`` when one is given)."""
    if " - " in name:  # a difference of two outcomes of the same run
        first, second = (part.strip() for part in name.split(" - ", 1))
        return f"difference within the run: {describe_outcome(first, currency)} minus {second}"
    parsed = parse_name(name)
    if parsed is None:
        return name
    who = {"focal": "focal firm", "market": "market"}.get(parsed.who, parsed.firm)
    among = f", segment {parsed.segment}" if parsed.segment is not None else ""
    return f"{who}{among}: {describe_measure(parsed.measure, currency)}"


def figure_file_name(outcome: str) -> str:
    """The outcome's figure file: characters other than letters, digits, '_', '.' and '-' become '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", outcome).strip("_") + ".png"


LABEL_WRAP = 30  # a design point's label longer than this is written upright on a figure's x axis


def outcome_figure(tidy: pd.DataFrame, outcome: str, factors: Sequence[str], path: Path,
                   title: str = "", currency: str | None = None) -> Path:
    """Mean and 95% CI (t distribution, as in the summary) of one outcome by design point, as a PNG (money labelled
    in ``currency`` when one is given).

    The first factor is on the x axis, the second is the hue, and each combination of further factors gets a
    panel of its own. Design points are joined by lines only when the first factor's levels are all numbers (a
    quantity varied in steps); arms that are categories (designs, strategies, markets) are points.
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
    quantity = all(_is_number_text(v) for v in x_order) and len(x_order) > 1
    hue_order = list(tidy[hue].cat.categories) if hue else None
    combos = [()] if not panels else list(dict.fromkeys(map(tuple, tidy[panels].astype(str).to_numpy())))
    n_reps = tidy["replication"].nunique() if "replication" in tidy else 0
    longest = max(len(str(v)) for v in x_order)
    long_labels = sum(len(str(v)) for v in x_order) > 36 or longest > 12
    width = min(5.5, 1.6 + 0.9 * len(x_order) * (1 + 0.3 * len(hue_order or []))) * len(combos)
    # slanted labels take height from the panel: give it back, so that the y label still fits beside the panel
    height = 4.6 + ((0.075 if longest > LABEL_WRAP else 0.045) * longest if long_labels else 0.0)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(max(width + (2.0 if hue else 0.0), 5.0), height), layout="constrained")
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
                              errorbar=_t_errorbar, dodge=0.3 if len(hue_order or []) > 1 else False, capsize=0.08,
                              palette=palette if hue else None, color=None if hue else palette[0], ax=ax,
                              linestyle="-" if quantity else "none")
            ax.set_xlabel(x if factors else "")
            ax.set_ylabel("\n".join(textwrap.wrap(describe_outcome(outcome, currency), 42)) if i == 0 else "")
            if not data.empty and data["value"].abs().max() >= 1e4:  # money: whole numbers, thousands separated
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            if long_labels and longest > LABEL_WRAP:  # slanted, a very long label would reach out of the figure
                ax.tick_params(axis="x", labelrotation=90)
            elif long_labels:
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
        heading = textwrap.fill(f"{title + ': ' if title else ''}{describe_outcome(outcome, currency)}",
                                max(30, int(12 * fig.get_figwidth())))
        fig.suptitle(f"{heading}\nmean and 95% confidence interval{reps}", fontsize="medium")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return path


def _is_number_text(label: object) -> bool:
    """Whether a design label reads as a number (``"0.5"``, ``"40000"``; not ``"40k"`` or ``"basic"``)."""
    try:
        float(str(label))
    except ValueError:
        return False
    return True


def is_money(outcome: str) -> bool:
    """Whether an outcome (or the first term of a difference) is measured in money."""
    from loyaltysim.measures.outcomes import MEASURES, MONEY_UNITS

    parsed = parse_name(outcome.split(" - ", 1)[0].strip())
    declared = MEASURES.get(parsed.measure) if parsed is not None else None
    return declared is not None and declared.unit in MONEY_UNITS


def decision_figure(differences: pd.DataFrame, outcome: str, factors: Sequence[str], path: Path,
                    title: str = "", currency: str | None = None) -> Path:
    """The decision chart of one outcome (:func:`decision_chart`) as a PNG."""
    fig = decision_chart(differences, outcome, factors, title, currency)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def decision_chart(differences: pd.DataFrame, outcome: str, factors: Sequence[str], title: str = "",
                   currency: str | None = None):
    """The decision chart of one outcome (a matplotlib Figure): for each design point against its reference, the
    mean paired difference, its 95% confidence interval (thick), the 5th-95th percentiles of the replications'
    differences (thin), a zero line, and the probability that the difference is below zero (for money, of a loss).

    ``differences`` are :func:`paired_differences` with ``risk=True``.
    """
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = differences[(differences["outcome"] == outcome) & (differences["n"] > 0)]
    labels = [", ".join(f"{f}={r[f]}" for f in factors) or "all" for _, r in rows.iterrows()]
    n = max(len(rows), 1)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(7.5, 1.9 + 0.55 * n), layout="constrained")
        ax = fig.subplots()
        ax.axvline(0.0, color="0.3", lw=1.0)
        y = np.arange(len(rows))[::-1]
        color = sns.color_palette("colorblind", 1)[0]
        for yi, (_, r) in zip(y, rows.iterrows(), strict=True):
            ax.plot([r["p05"], r["p95"]], [yi, yi], color=color, lw=1.2, alpha=0.6,
                    label="5th-95th percentile of the runs" if yi == y[0] else None)
            ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=color, lw=5,
                    label="95% confidence interval of the mean" if yi == y[0] else None)
            ax.plot([r["mean"]], [yi], "o", color="white", mec=color, mew=1.5, ms=7,
                    label="mean difference" if yi == y[0] else None)
            loss = "loss" if is_money(outcome) else "a value below zero"
            ax.annotate(f"P({loss}) = {r['p_negative']:.0%}", xy=(1.0, yi), xycoords=("axes fraction", "data"),
                        xytext=(6, 0), textcoords="offset points", va="center", fontsize="small")
        ax.set_yticks(y, ["\n".join(textwrap.wrap(text, 28)) for text in labels])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        reference = rows["reference"].iloc[0] if len(rows) else ""
        ax.set_xlabel("\n".join(textwrap.wrap(f"difference from {reference}, paired run by run", 70)))
        if len(rows) and rows[["p05", "p95"]].abs().to_numpy().max() >= 1e4:
            from matplotlib.ticker import MaxNLocator

            # few enough ticks that wide amounts (e.g. -600,000) do not collide on a narrow axis
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        if len(rows):
            fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize="small")
        else:
            ax.text(0.5, 0.5, "no pair has a value", ha="center", va="center", transform=ax.transAxes)
        heading = f"{title + ': ' if title else ''}{describe_outcome(outcome, currency)}"
        fig.suptitle("\n".join(textwrap.wrap(heading, 80)), fontsize="medium")
    return fig


def scatter_figure(tidy: pd.DataFrame, outcome: str, factors: Sequence[str], path: Path, title: str = "",
                   currency: str | None = None, arms: Sequence[str] = ()) -> Path:
    """A sampled design's outcome against each (sampled) factor: one panel per factor, one dot per design point (the
    mean over its replications, the value the sensitivity analysis reads), as a PNG; with ``arms``, each dot
    coloured by its combination of the arms' labels."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    factors, arms = list(factors), list(arms)
    data = tidy[tidy["outcome"] == outcome].groupby("design", observed=True).agg(
        {**{f: "first" for f in [*factors, *arms]}, "value": "mean"})
    columns = min(3, len(factors))
    rows = -(-len(factors) // columns)
    if arms:
        arm = data[arms].astype(str).apply(lambda r: ", ".join(f"{a}={r[a]}" for a in arms), axis=1)
        groups = list(pd.unique(arm))
    else:
        arm, groups = None, [None]
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(3.4 * columns + 0.6, 3.0 * rows + 0.9 + (0.25 * len(groups) if arms else 0.0)),
                     layout="constrained")
        axes = fig.subplots(rows, columns, sharey=True, squeeze=False).ravel()
        palette = sns.color_palette("colorblind", len(groups))
        for i, (ax, factor) in enumerate(zip(axes, factors, strict=False)):
            for group, color in zip(groups, palette, strict=True):
                shown = data if arm is None else data[arm == group]
                ax.scatter(shown[factor], shown["value"], s=12, alpha=0.7, color=color, edgecolors="none",
                           label=group)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # a narrow panel: few ticks, so their labels fit
            ax.set_xlabel(factor)
            ax.set_ylabel("\n".join(textwrap.wrap(describe_outcome(outcome, currency), 36)) if i % columns == 0
                          else "")
        for ax in axes[len(factors):]:
            ax.set_visible(False)
        if arms:
            handles, names = axes[0].get_legend_handles_labels()
            fig.legend(handles, names, loc="outside lower center", ncols=min(3, len(groups)), fontsize="small",
                       frameon=False)
        fig.suptitle(f"{title + ': ' if title else ''}{outcome}\nmean over replications at each of {len(data)} "
                     "design points", fontsize="medium")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return path


_INDEX_NAMES = {"S1": "first-order S1", "ST": "total ST", "mu_star": "mu*", "sigma": "sigma", "SRC": "SRC"}


def sensitivity_figure(result: OutcomeSensitivity, path: Path, title: str = "") -> Path:
    """One outcome's sensitivity indices as horizontal bars with their confidence intervals, factors sorted by the
    design's main index (ST, mu* or |SRC|) with the largest on top; the replication-noise level as a dashed line
    (Sobol': the noise share, which an inert factor's ST reaches; Morris: the noise floor of mu*)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    main = MAIN_INDEX[result.kind]
    shown = {"saltelli": ["S1", "ST"], "morris": ["mu_star", "sigma"]}.get(result.kind, ["SRC"])
    table = result.indices[result.indices["index"].isin(shown)]
    order = (table[table["index"] == main].assign(size=lambda d: d["estimate"].abs())
             .sort_values("size", kind="stable")["factor"].tolist())  # bottom to top: the largest on top
    height = 0.8 / len(shown)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig = Figure(figsize=(7.0, 1.6 + 0.45 * len(order) * len(shown)), layout="constrained")
        ax = fig.subplots()
        palette = sns.color_palette("colorblind", len(shown))
        y = np.arange(len(order))
        for j, index in enumerate(shown):
            rows = table[table["index"] == index].set_index("factor").loc[order]
            err = np.vstack([rows["estimate"] - rows["ci_low"], rows["ci_high"] - rows["estimate"]])
            offset = (j - (len(shown) - 1) / 2) * height
            ax.barh(y + offset, rows["estimate"], height=height * 0.9, color=palette[j], label=_INDEX_NAMES[index],
                    xerr=None if np.isnan(err).all() else np.nan_to_num(err), capsize=3,
                    error_kw={"elinewidth": 1.0})
        noise = result.noise_share if result.kind == "saltelli" else result.noise_floor
        if result.kind in ("saltelli", "morris") and np.isfinite(noise):
            ax.axvline(noise, color="0.3", linestyle="--", linewidth=1.0,
                       label="replication noise share" if result.kind == "saltelli" else "noise floor of mu*")
        ax.axvline(0.0, color="0.2", linewidth=0.8)
        ax.set_yticks(y, order)
        ax.set_xlabel({"saltelli": "share of the outcome's variance", "morris": "outcome units per whole range",
                       }.get(result.kind, "standardized regression coefficient"))
        ax.legend(loc="lower right", frameon=True, fontsize="small")
        extra = f", R\u00b2 = {result.r2:.2f}" if np.isfinite(result.r2) else ""
        arm = "".join(f", {a}={label}" for a, label in result.arm.items())
        lines = [f"{title + ': ' if title else ''}{result.outcome}{arm}",
                 f"{METHOD[result.kind]}, {int(CONFIDENCE * 100)}% bootstrap intervals{extra}"]
        fig.suptitle("\n".join(textwrap.fill(line, 80) for line in lines), fontsize="medium")
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
    known = registry.runs_by_key(t.key for t in tasks)  # a few queries, whatever experiment name stored them
    factor_values = {point.index: point.values for point in experiment.design}  # a sampled design's factors
    records: list[dict[str, Any]] = []
    missing = 0
    for t in tasks:
        row = known.get(t.key)
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
            records.append({**t.design, **factor_values[t.design_index], "design": t.design_index,
                            "replication": t.replication, "outcome": name,
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
    return sum(1 for key in registry.keys(experiment.name, status="done") if key not in keys)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_report_files(tidy: pd.DataFrame, experiment: Experiment, folder: Path | str, *,
                       xlsx: bool = False, compare_all: bool = False) -> list[Path]:
    """Write the tables and figures of ``tidy`` (the tidy results) into ``folder``, with ``compare_all`` every pair
    of design points compared (``comparisons.csv``/``.md``), and with ``xlsx`` an Excel workbook of them
    (:mod:`loyaltysim.reporting.workbook`); return the paths."""
    folder = Path(folder)
    figures = folder / "figures"
    try:
        figures.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create report folder '{folder}': {exc.strerror or exc}") from exc
    factors = experiment.factors
    currency = experiment.base.economics.currency  # money's label (None: "money")
    reps = tidy["replication"].nunique()
    paths = []
    tidy.to_csv(folder / "results.csv", index=False)
    paths.append(folder / "results.csv")
    sampled = experiment.sampling is not None
    summary = point_summary(tidy, factors) if sampled else summary_table(tidy, factors)
    summary.to_csv(folder / "summary.csv", index=False)
    paths.append(folder / "summary.csv")
    intro = f"# {experiment.name}: summary\n\n" + (f"{experiment.description}\n\n" if experiment.description else "")
    paths.append(_write(folder / "summary.md", intro + (
        f"Mean, standard deviation and 95% confidence interval of the mean (t distribution) over {reps} "
        "replication(s); n counts the runs where the outcome has a value."
        + (" One row per sampled design point and outcome, with the point's factor values"
           + (" and arms' labels" if experiment.arms else "") + "; sensitivity.md analyses them." if sampled else "")
        + "\n\n") + markdown_table(summary)))
    diffs = comparisons = None
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
        path = figures / figure_file_name(outcome)
        if sampled:
            paths.append(scatter_figure(tidy, outcome, experiment.sampled_factors, path, title=experiment.name,
                                        currency=currency, arms=experiment.arms))
        else:
            paths.append(outcome_figure(tidy, outcome, factors, path, title=experiment.name, currency=currency))
    if compare_all:
        if sampled:
            raise ReportError("--compare all compares labelled design points; a sampled design's points are "
                              "analysed by sensitivity.md instead")
        pairs = pairwise_differences(tidy, factors)
        comparisons = pairs
        pairs.to_csv(folder / "comparisons.csv", index=False)
        paths.append(folder / "comparisons.csv")
        paths.append(_write(folder / "comparisons.md", (
            f"# {experiment.name}: every pair of design points\n\n"
            "Each row is b minus a, replication by replication (both ran on the same random numbers): mean, standard "
            "deviation and 95% confidence interval (t distribution), the 5th and 95th percentiles of the runs' "
            "differences and p_negative, the share of replications where b is below a (for money, where choosing b "
            "over a loses).\n\n" + markdown_table(pairs))))
    if experiment.reference:  # a decision chart of every money outcome against the reference
        risky = paired_differences(tidy, factors, experiment.reference, risk=True)
        for outcome in experiment.outcomes:
            if is_money(outcome):
                paths.append(decision_figure(risky, outcome, factors,
                                             figures / ("decision_" + figure_file_name(outcome)),
                                             title=experiment.name, currency=currency))
    if experiment.sampling is not None:
        paths += write_sensitivity(tidy, experiment, folder)
    load_figures()
    for name in experiment.figures:
        if name not in FIGURES:
            raise ReportError(f"figure '{name}' is not registered; registered: {sorted(FIGURES)}")
        paths.append(Path(FIGURES[name](tidy, experiment, figures)))
    if experiment.findings:
        paths.append(_write(folder / "findings.md", findings_text(tidy, experiment, folder)))
    if xlsx:
        from loyaltysim.reporting.workbook import write_workbook

        paths.append(write_workbook(tidy, experiment, folder, summary, diffs, comparisons))
    return paths


def _ci(low: float, high: float) -> str:
    return "-" if math.isnan(low) or math.isnan(high) else f"[{_cell(low)}, {_cell(high)}]"


def _design_text(experiment: Experiment) -> str:
    """What a sampled design is: its kind, size, seed, factors and arms."""
    sampling = experiment.sampling
    assert sampling is not None
    spec, k, points = experiment.spec.design, len(sampling.factors), len(sampling.unit)
    size = {"saltelli": f"{spec.samples} base samples x ({2 * k + 2 if spec.second_order else k + 2}) = {points} "
                        f"design points{', second order included' if spec.second_order else ''}",
            "morris": f"{spec.trajectories} trajectories x ({k} + 1) = {points} design points on a grid of "
                      f"{sampling.levels} levels (step: {morris_step(sampling.levels or 2):.3g} of each range)",
            }.get(sampling.kind, f"{points} design points")
    factors = "; ".join(f"{f.name} ({' and '.join(f.targets)}, {f.type} in [{_cell(f.bounds[0])}, "
                        f"{_cell(f.bounds[1])}]{', ' + f.unit if f.unit else ''})"
                        for f in sampling.factors if f.bounds is not None)
    text = ""
    if experiment.arms:
        size = size.replace("design points", "sampled points")
        levels = "; ".join(f"{a} ({', '.join(experiment.levels[a])})" for a in experiment.arms)
        text = (f" Arms: {levels}. Each sampled point is run at each of their {len(experiment.arm_combinations)} "
                f"combination(s), {len(experiment.design)} design points in all, and each combination is analysed "
                f"on its own over its {points} points: its indices say what moves the outcome within that arm.")
    return (f"{METHOD[sampling.kind]}: {size}, design seed {sampling.seed}, {experiment.replications} "
            f"replication(s) per point on common random numbers. Factors: {factors}.{text}")


_READING = {
    "saltelli": "S1 is the share of the outcome's variance over the design that a factor explains alone, ST the "
                "share it explains with all its interactions (ST - S1: through interactions; S2: a pair's "
                "interaction alone). A factor whose ST interval reaches the noise share (or 0) can be fixed "
                "anywhere in its bounds without changing the outcome measurably.",
    "morris": "mu* is the mean absolute elementary effect: the outcome's change when a factor takes one step, "
              "divided by the step as a share of the factor's range (so in the outcome's units per whole range); "
              "a large mu* marks an influential factor. sigma is the spread of the effects: large against mu*, "
              "the effect depends on where the other factors are (interactions) or is not linear. mu (signed) "
              "below mu* means the effect changes sign. Morris ranks factors; it does not apportion variance.",
    "lhs": "SRC is the change of the outcome, in standard deviations, when a factor moves one standard deviation, "
           "in a linear fit; its square is the share of variance the factor explains linearly. When R^2 is "
           "below about 0.7 the fit explains little: read the scatter figures instead.",
}
_READING["sobol"] = _READING["lhs"]


def sensitivity_text(results: Sequence[OutcomeSensitivity], experiment: Experiment) -> str:
    """sensitivity.md: the design, how to read the indices, and per outcome the indices with their intervals and
    the replication noise behind them."""
    sampling = experiment.sampling
    assert sampling is not None
    kind = sampling.kind
    lines = [f"# {experiment.name}: sensitivity\n", _design_text(experiment) + "\n",
             "The value analysed at each design point is the outcome's mean over the point's replications. "
             f"Intervals: {int(CONFIDENCE * 100)}% bootstrap intervals over the design points ({RESAMPLES} "
             f"resamples, seeded by the design seed). {_READING[kind]}\n",
             "Replication noise: the *noise share* is the share of the variance of the points' means that "
             "replication noise accounts for (the variance between replications, pooled over the points, over the "
             "number of replications, against the variance of the means over the design). "
             + {"saltelli": "A factor without effect gets an ST of about the noise share, not 0, and every S1 "
                            "shrinks by it: an index whose interval does not clear the noise share cannot be told "
                            "from noise.",
                "morris": "The *noise floor* is the mu* a factor without any effect would get from noise alone "
                          "if the noise were independent between points (common random numbers make it alike at "
                          "neighbouring points, so it is an upper bound; a factor that changes nothing in the runs "
                          "gets exactly 0): a factor whose mu* interval does not clear it may be noise."}.get(
                 kind, "R^2 cannot exceed one minus the noise share.")
             + " More replications lower both.\n"]
    main = MAIN_INDEX[kind]
    outcome = None
    for r in results:
        if r.outcome != outcome:  # results come outcome by outcome, with arms one per arm
            outcome = r.outcome
            lines.append(f"## {r.outcome}\n")
            lines.append(f"{describe_outcome(r.outcome, experiment.base.economics.currency)}.\n")
        if r.arm:
            lines.append(f"### {', '.join(f'{a}={label}' for a, label in r.arm.items())}\n")
        if r.note:
            lines.append(r.note + "\n")
            continue
        noise = "- (one replication: noise not measured)" if math.isnan(r.noise_share) else f"{r.noise_share:.3g}"
        facts = [f"{r.points} design points", f"up to {r.replications} replication(s) each", f"noise share {noise}"]
        if kind == "morris":
            facts.append(f"noise floor of mu* {_cell(r.noise_floor)}")
        if kind in ("lhs", "sobol"):
            facts.append(f"R^2 {r.r2:.3g}")
        lines.append(", ".join(facts) + ".\n")
        wide = r.indices[r.indices["index"] != "S2"]
        order = (wide[wide["index"] == main].assign(size=lambda d: d["estimate"].abs())
                 .sort_values("size", ascending=False, kind="stable")["factor"].tolist())
        table = pd.DataFrame({"factor": order})
        for index in dict.fromkeys(wide["index"]):
            rows = wide[wide["index"] == index].set_index("factor").loc[order]
            table[_INDEX_NAMES.get(index, index)] = rows["estimate"].to_numpy()
            if rows["ci_low"].notna().any():
                table[f"{_INDEX_NAMES.get(index, index)} {int(CONFIDENCE * 100)}% CI"] = [
                    _ci(lo, hi) for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)]
        lines.append(markdown_table(table))
        pairs = r.indices[r.indices["index"] == "S2"]
        if not pairs.empty:
            lines.append("Second-order indices (a pair's interaction alone):\n")
            lines.append(markdown_table(pd.DataFrame({
                "pair": pairs["factor"], "S2": pairs["estimate"],
                f"S2 {int(CONFIDENCE * 100)}% CI": [_ci(lo, hi) for lo, hi in zip(pairs["ci_low"], pairs["ci_high"],
                                                                                     strict=True)]})))
    return "\n".join(lines)


def sensitivity_file_name(outcome: str, arm: dict[str, str] | None = None) -> str:
    """The file of an outcome's sensitivity figure: ``sensitivity_<outcome>.png``, with arms
    ``sensitivity_<outcome>_<label>_<label>.png`` (the arms' labels in factor order), sanitised as
    :func:`figure_file_name`."""
    return "sensitivity_" + figure_file_name("_".join([outcome, *(arm or {}).values()]))


def write_sensitivity(tidy: pd.DataFrame, experiment: Experiment, folder: Path) -> list[Path]:
    """A sampled design's sensitivity analysis: ``sensitivity.csv`` (every index, long), ``sensitivity.md`` and
    ``figures/sensitivity_<outcome>.png`` per outcome analysed; with arms, per outcome and arm (each combination of
    the arms' labels analysed over its own points)."""
    sampling = experiment.sampling
    assert sampling is not None
    arms = experiment.arm_combinations if experiment.arms else [None]
    results = [analyse(tidy, sampling, outcome, CONFIDENCE, None if arm is None else experiment.arm_points(arm), arm)
               for outcome in experiment.outcomes for arm in arms]
    paths = [folder / "sensitivity.csv"]
    sensitivity_table(results).to_csv(paths[0], index=False)
    paths.append(_write(folder / "sensitivity.md", sensitivity_text(results, experiment)))
    taken: set[str] = set()
    for j, r in enumerate(results):
        if not r.indices.empty:
            name = sensitivity_file_name(r.outcome, r.arm)
            if name in taken:  # labels that differ only in characters the file name cannot hold
                name = name.removesuffix(".png") + f"_{j % len(arms)}.png"
            taken.add(name)
            paths.append(sensitivity_figure(r, folder / "figures" / name, title=experiment.name))
    return paths


def findings_text(tidy: pd.DataFrame, experiment: Experiment, folder: Path | None = None) -> str:
    """The experiment's findings checks as Markdown: each effect, whether it holds, and the numbers.

    A findings function returns its checks (a list of ``{"effect", "holds", "evidence"}``), or, over a sampled
    design, a :class:`~loyaltysim.reporting.regions.Region` (where the finding holds); a region's points and figure
    are written into ``folder``.
    """
    from loyaltysim.reporting import regions

    lines = [f"# {experiment.name}: findings\n"]
    for name in experiment.findings:
        if name not in FINDINGS:
            raise ReportError(f"findings '{name}' are not registered; registered: {sorted(FINDINGS)}")
        checks = FINDINGS[name](tidy, experiment)
        if isinstance(checks, regions.Region):
            lines.append(regions.markdown(checks, markdown_table))
            if folder is not None:
                regions.write(checks, folder)
            continue
        held = sum(bool(c["holds"]) for c in checks)
        lines.append(f"## {name}: {held} of {len(checks)} hold\n")
        frame = pd.DataFrame(checks)
        frame["holds"] = frame["holds"].map({True: "yes", False: "NO"})
        lines.append(markdown_table(frame[[c for c in frame.columns if c != "evidence"] + ["evidence"]]))
    return "\n".join(lines)


def write_report(experiment: Experiment, out_root: Path | str, db_url: str, *, partial: bool = False,
                 xlsx: bool = False, compare_all: bool = False) -> Report:
    """Collect the experiment's stored runs from the registry and write the report under
    ``<out_root>/<experiment name>/`` (with ``xlsx``, also as an Excel workbook).

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
    paths = write_report_files(tidy, experiment, folder, xlsx=xlsx, compare_all=compare_all)
    return Report(folder, paths, runs=stored, total=total, missing=missing)
