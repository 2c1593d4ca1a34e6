"""Where a finding holds over a sampled design: each design point's verdict, and the region of the factors' space
where the finding holds, found by PRIM.

A finding checked on one market says nothing about the markets around it. A *region* finding is checked at every
point of a sampled design (``[design] kind = "sobol"`` or ``"lhs"``, whose factors are the parameters the finding
hinges on, crossed with the arms it compares): at each point its statistic's 95% interval over the replications
gives a verdict, *holds*, *fails* or *unclear* (the interval straddles the bound). The report then describes where
the finding holds:

* **the region**: the Patient Rule Induction Method (PRIM; Friedman & Fisher 1999), as EMA Workbench implements it
  for scenario discovery (Bryant & Lempert 2010), peels the factors' box towards the points where the finding holds.
  Of the boxes on its peeling trajectory the report keeps the one with the largest *coverage* (the share of all
  holding points inside it) among those whose *density* (the share of its points that hold) is at least
  :data:`MIN_DENSITY`, and of those that cover as much the densest. Each limit of that box has PRIM's quasi-p value
  (a binomial test of the restriction; small is significant); a limit whose quasi-p value is :data:`QP_MAX` or more
  is dropped, as scenario discovery does with restrictions the points do not support, and the box's coverage and
  density are those of the box kept. A factor the box leaves at its full range is one the finding does not hinge on
  within the design.
* **the marginal shares**: for each factor, the share of points that hold in each quarter of its range, which
  shows a threshold PRIM's box cuts at and how sharp it is.

The verdicts are judged on intervals over replications, so a point can be *unclear* because it has too few
replications; the report counts them. The box is a description of the design's points, not a proof: its limits
move with the design's points and seed, and its coverage and density say how well it describes them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

VERDICTS = ("holds", "unclear", "fails")
MIN_DENSITY = 0.9  # the share of a box's points that must hold for the box to describe where the finding holds
MASS_MIN = 0.05  # PRIM stops peeling below this share of the points
QP_MAX = 0.05  # a restriction is kept only if PRIM's quasi-p value is below this
QUARTERS = 4


@dataclass
class Region:
    """Where one finding holds over a sampled design.

    ``points`` has a row per sampled point: the factors' values, the statistic's mean and 95% interval (``mean``,
    ``ci_low``, ``ci_high``), the verdict, whatever else the finding reports there (the arms' numbers behind it) and
    ``in_box``. ``box`` has a row per factor: the factor's bounds, the region's limits, whether the box restricts it,
    the quasi-p value of its restriction, and the limits PRIM found that the points do not support (``dropped``).
    """

    finding: str
    statement: str  # what holds, in words ("the trap: basic investment lifts loyalty at most to the average ...")
    statistic: str  # what the interval is of
    factors: list[str]
    bounds: dict[str, tuple[float, float]]
    units: dict[str, str]
    points: pd.DataFrame
    box: pd.DataFrame = field(default_factory=pd.DataFrame)
    coverage: float = math.nan
    density: float = math.nan
    mass: float = math.nan
    note: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return {v: int((self.points["verdict"] == v).sum()) for v in VERDICTS}

    @property
    def restricted(self) -> list[str]:
        """The factors the box restricts, most significant (smallest quasi-p value) first."""
        if self.box.empty:
            return []
        rows = self.box[self.box["restricted"]].sort_values("qp", kind="stable")
        return list(rows["factor"])


def verdict(low: float, high: float, bound: float, *, above: bool = True) -> str:
    """"holds" if the interval [low, high] clears ``bound`` on the claimed side (above it, or below it with
    ``above=False``), "fails" if it clears it on the other side, "unclear" otherwise (or without an interval)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "unclear"
    if above:
        return "holds" if low > bound else "fails" if high < bound else "unclear"
    return "holds" if high < bound else "fails" if low > bound else "unclear"


def by_point(results: pd.DataFrame, experiment, statistic: Callable[[pd.DataFrame], dict]
             ) -> tuple[pd.DataFrame, list]:
    """One row per sampled point of ``experiment``'s design: the point's factor values and what ``statistic`` returns
    from the point's results (all its arms and replications); and the sampled factors."""
    sampled = [f for f in experiment.spec.factors if f.sampled]
    names = [f.name for f in sampled]
    rows = [{**dict(zip(names, key, strict=True)), **statistic(point)}
            for key, point in results.groupby(names, sort=False, observed=True)]
    return pd.DataFrame(rows), sampled


def find_box(x: pd.DataFrame, holds: np.ndarray, min_density: float = MIN_DENSITY
             ) -> tuple[pd.DataFrame, float, float, float, str]:
    """PRIM's box around the points where ``holds``: (limits per factor, coverage, density, mass, note).

    The limits table has columns factor, low, high, restricted, qp and dropped (the limits PRIM found that the
    points do not support, with their quasi-p values). Where every point holds the box is the whole design; where
    none does, there is no box (empty table).
    """
    holds = np.asarray(holds, dtype=bool)
    whole = pd.DataFrame({"factor": list(x.columns), "low": x.min().to_numpy(), "high": x.max().to_numpy(),
                          "restricted": False, "qp": math.nan, "dropped": ""})
    if holds.all():
        return whole, 1.0, 1.0, 1.0, "the finding holds at every point of the design"
    if not holds.any():
        return pd.DataFrame(columns=["factor", "low", "high", "restricted", "qp", "dropped"]), 0.0, math.nan, 0.0, (
            "the finding holds at no point of the design")
    with warnings.catch_warnings():  # EMA Workbench warns at import about optional parallel back ends
        warnings.simplefilter("ignore")
        from ema_workbench.analysis import prim

        box = prim.Prim(x.reset_index(drop=True).astype(float), holds, mass_min=MASS_MIN).find_box()
    trajectory = box.peeling_trajectory
    dense = trajectory[trajectory["density"] >= min_density]
    note = ""
    if dense.empty:
        choice = int(trajectory["density"].idxmax())
        note = (f"no box reaches a density of {min_density:.0%}; the densest box on PRIM's trajectory is shown")
    else:
        # the largest coverage; of boxes that cover as much, the densest (the tightest that loses no holding point)
        choice = int(dense.sort_values(["coverage", "density"], kind="stable").index[-1])
    _, limits = box.inspect(choice, style="data")[0]
    limits = limits.droplevel(0, axis=1) if isinstance(limits.columns, pd.MultiIndex) else limits
    table = whole.set_index("factor")
    table["dropped"] = ""
    for factor in limits.index:
        row = limits.loc[factor]
        low, high = float(row.iloc[0]), float(row.iloc[1])
        qp_low = float(row.iloc[2]) if len(row) > 2 and pd.notna(row.iloc[2]) else math.nan
        qp_high = float(row.iloc[3]) if len(row) > 3 and pd.notna(row.iloc[3]) else math.nan
        kept, dropped = [], []
        for side, qp, value in (("low", qp_low, low), ("high", qp_high, high)):
            if math.isnan(qp):
                continue
            if qp < QP_MAX:
                table.loc[factor, side] = value
                kept.append(qp)
            else:
                dropped.append(f"{'at least' if side == 'low' else 'at most'} {_number(value)} (qp {qp:.2g})")
        table.loc[factor, "restricted"] = bool(kept)
        table.loc[factor, "qp"] = min(kept) if kept else math.nan
        table.loc[factor, "dropped"] = "; ".join(dropped)
    inside = np.ones(len(x), dtype=bool)
    for factor, row in table[table["restricted"]].iterrows():
        inside &= (x[factor] >= row["low"]).to_numpy() & (x[factor] <= row["high"]).to_numpy()
    coverage = float((holds & inside).sum() / holds.sum())
    density = float((holds & inside).sum() / inside.sum()) if inside.any() else math.nan
    if table["dropped"].ne("").any():
        note = (note + "; " if note else "") + (f"restrictions whose quasi-p value is {QP_MAX} or more are dropped "
                                                 "(see the table), and coverage and density are those of the box kept")
    return table.reset_index(), coverage, density, float(inside.mean()), note


def describe(region_points: pd.DataFrame, finding: str, statement: str, statistic: str,
             factors: Sequence, min_density: float = MIN_DENSITY) -> Region:
    """The region where a finding holds, from its points' verdicts (``region_points``: one row per sampled point,
    with a column per factor and ``verdict``); ``factors`` are the design's sampled factors (name, bounds, unit)."""
    names = [f.name for f in factors]
    region = Region(finding, statement, statistic, names, {f.name: tuple(f.bounds) for f in factors},
                    {f.name: f.unit or "" for f in factors}, region_points.reset_index(drop=True))
    holds = (region.points["verdict"] == "holds").to_numpy()
    box, region.coverage, region.density, region.mass, region.note = find_box(region.points[names], holds,
                                                                              min_density)
    inside = np.zeros(len(region.points), dtype=bool)
    if not box.empty:
        box.insert(1, "bound_low", [region.bounds[f][0] for f in box["factor"]])
        box.insert(2, "bound_high", [region.bounds[f][1] for f in box["factor"]])
        inside[:] = True
        for _, row in box[box["restricted"]].iterrows():
            values = region.points[row["factor"]].to_numpy(dtype=float)
            inside &= (values >= row["low"]) & (values <= row["high"])
    region.points["in_box"] = inside
    region.box = box
    return region


def marginal_shares(region: Region) -> pd.DataFrame:
    """For each factor, the share of points that hold in each quarter of its bounds (and the points there)."""
    rows = []
    for f in region.factors:
        low, high = region.bounds[f]
        edges = np.linspace(low, high, QUARTERS + 1)
        which = np.clip(np.searchsorted(edges, region.points[f].to_numpy(dtype=float), side="right") - 1, 0,
                        QUARTERS - 1)
        row: dict = {"factor": f}
        for q in range(QUARTERS):
            inside = region.points["verdict"][which == q]
            label = f"{_number(edges[q])}-{_number(edges[q + 1])}"
            row[f"q{q + 1}"] = label
            row[f"q{q + 1} holds"] = f"{(inside == 'holds').mean():.0%} of {inside.size}" if inside.size else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def _number(x: float) -> str:
    return f"{x:.3g}"


def _limit(region: Region, row: pd.Series) -> str:
    unit = f" {region.units[row['factor']]}" if region.units.get(row["factor"]) else ""
    seen = region.points[row["factor"]]  # PRIM's box spans the points, not the bounds, where it does not cut
    low_cut = row["low"] > seen.min()
    high_cut = row["high"] < seen.max()
    if low_cut and high_cut:
        return f"{row['factor']} between {_number(row['low'])} and {_number(row['high'])}{unit}"
    if low_cut:
        return f"{row['factor']} at least {_number(row['low'])}{unit}"
    return f"{row['factor']} at most {_number(row['high'])}{unit}"


def summary(region: Region) -> str:
    """One sentence: where the finding holds, with the box's coverage and density and the verdicts' counts."""
    counts = region.counts
    total = len(region.points)
    tally = (f"{counts['holds']} of {total} points hold, {counts['fails']} fail, {counts['unclear']} are unclear")
    if region.box.empty:
        return f"{region.note}: {tally}"
    if not region.restricted:
        dropped = [f"{row['factor']} {row['dropped']}" for _, row in region.box.iterrows() if row.get("dropped")]
        if dropped:  # PRIM found a box, but none of its limits is supported by the points
            return (f"{tally}; no limit of PRIM's box is supported by the points (quasi-p value 0.05 or more: "
                    f"{'; '.join(dropped)})")
        return f"{region.note or 'holds throughout the design'}: {tally}"
    limits = [_limit(region, row) for _, row in region.box.set_index("factor").loc[region.restricted].reset_index()
              .iterrows()]
    box = region.points[region.points["in_box"]]["verdict"]
    plural = {"holds": "hold", "unclear": "unclear", "fails": "fail"}
    within = ", ".join(f"{int((box == v).sum())} {plural[v]}" for v in VERDICTS)
    free = [f for f in region.factors if f not in region.restricted]
    return (f"holds where {' and '.join(limits)} (the box: {len(box)} points, of which {within}; it covers "
            f"{region.coverage:.0%} of the holding points, density {region.density:.0%})"
            + (f"; the points show no restriction on {', '.join(free)}" if free else "")
            + f": over the design {tally}" + (f"; {region.note}" if region.note else ""))


def markdown(region: Region, markdown_table: Callable[[pd.DataFrame], str]) -> str:
    """The region as Markdown: the statement, the box, the marginal shares and a pointer to the points' table, each
    table drawn by ``markdown_table`` (the report's, which imports this module)."""
    lines = [f"### Where {region.finding} holds\n", f"**Claim.** {region.statement}\n",
             f"**Judged on** {region.statistic}, its 95% interval over each point's replications.\n",
             f"**Region.** {summary(region)}.\n"]
    if not region.box.empty:
        box = region.box.copy()
        box["qp"] = [f"{v:.2g}" if pd.notna(v) else "" for v in box["qp"]]
        box["restricted"] = box["restricted"].map({True: "yes", False: ""})
        lines.append(markdown_table(box))
    lines.append("**Share of points that hold, by quarter of each factor's range:**\n")
    lines.append(markdown_table(marginal_shares(region)))
    lines.append(f"Every point's numbers and verdict: `regions_{region.finding}.csv`; figure: "
                 f"`figures/region_{region.finding}.png`.\n")
    return "\n".join(lines)


def figure(region: Region, path: Path, title: str = "") -> Path:
    """The points in the plane of the two factors the box restricts most (or the first two), coloured by verdict,
    with the box's limits drawn; beside it, the share that holds along every factor."""
    from loyaltysim.reporting.findings.common import style

    plt, _ = style()
    shown = (region.restricted + [f for f in region.factors if f not in region.restricted])[:2]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), layout="constrained",
                             gridspec_kw={"width_ratios": [1.1, 1]})
    colours = {"holds": "#2166ac", "unclear": "#bdbdbd", "fails": "#d6604d"}
    ax = axes[0]
    x = region.points[shown[0]]
    y = region.points[shown[1]] if len(shown) > 1 else region.points["mean"]
    for v in VERDICTS:
        mine = region.points["verdict"] == v
        ax.scatter(x[mine], y[mine], s=36, color=colours[v], label=f"{v} ({int(mine.sum())})", edgecolor="white",
                   linewidth=0.5)
    if len(shown) > 1 and not region.box.empty:
        limits = region.box.set_index("factor")
        x0, x1 = limits.loc[shown[0], ["low", "high"]]
        y0, y1 = limits.loc[shown[1], ["low", "high"]]
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1.5, color="#2166ac",
                                   label="PRIM's box"))
    unit = region.units
    ax.set(xlabel=shown[0] + (f" ({unit[shown[0]]})" if unit.get(shown[0]) else ""),
           ylabel=(shown[1] + (f" ({unit[shown[1]]})" if unit.get(shown[1]) else "")) if len(shown) > 1
           else region.statistic, title="each design point's verdict")
    ax.legend(fontsize=9, loc="best")
    ax = axes[1]
    for i, f in enumerate(region.factors):
        low, high = region.bounds[f]
        edges = np.linspace(low, high, QUARTERS + 1)
        which = np.clip(np.searchsorted(edges, region.points[f].to_numpy(dtype=float), side="right") - 1, 0,
                        QUARTERS - 1)
        shares = [float((region.points["verdict"][which == q] == "holds").mean()) if (which == q).any()
                  else np.nan for q in range(QUARTERS)]
        ax.plot(np.arange(QUARTERS) + 0.5, shares, marker="o", label=f, color=f"C{i % 10}")
    ax.set(xticks=np.arange(QUARTERS) + 0.5, xticklabels=[f"quarter {q + 1}" for q in range(QUARTERS)],
           ylim=(-0.03, 1.03), ylabel="share of points where it holds",
           title="along each factor's range (lowest quarter first)")
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or f"Where {region.finding} holds")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(region: Region, folder: Path) -> list[Path]:
    """``regions_<finding>.csv`` (every point) and ``figures/region_<finding>.png``."""
    folder = Path(folder)
    csv = folder / f"regions_{region.finding}.csv"
    region.points.to_csv(csv, index=False)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    return [csv, figure(region, folder / "figures" / f"region_{region.finding}.png")]
