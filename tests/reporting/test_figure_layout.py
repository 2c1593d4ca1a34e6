"""Every figure the reporting code draws keeps its words legible: each title, axis label, tick label, legend and
annotation lies inside the figure, and none of them covers another.

The figures are drawn from synthetic results shaped as the shipped experiments' (their design points and labels,
their outcomes, values of each outcome's magnitude), so the labels are the real ones: per experiment its outcome
figure of the outcome with the longest label, its decision chart (with a reference), the sampled design's scatter and
sensitivity figures, the findings figures the experiments name (trap, jones_sasser, winback, programme_designs,
trap_imitation), and
the calibration figures from the committed CDNOW fit (docs/benchmarks). Each figure is captured when it is saved and
drawn with the Agg renderer instead; the text boxes are compared in display pixels.
"""

from __future__ import annotations

import itertools
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from loyaltysim.experiments.design import load_experiment
from loyaltysim.measures.outcomes import FRACTION, MEASURES, MONEY_UNITS, parse_name
from loyaltysim.reporting import fit as fit_report
from loyaltysim.reporting import report
from loyaltysim.reporting.sensitivity import analyse

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))
CDNOW_FIT = REPO / "docs" / "benchmarks" / "calibrate_cdnow-2026-12-06"
REPLICATIONS = 3  # synthetic replications per design point
SLACK = 1.0  # pixels: boxes that only touch do not overlap, and a box may reach the figure's edge


# --------------------------------------------------------------------------------------------------
# What is on a figure, and what is wrong with it
# --------------------------------------------------------------------------------------------------


def _shown(artist) -> bool:
    return artist is not None and artist.get_visible() and (not isinstance(artist, Text) or bool(artist.get_text()))


def texts_of(fig: Figure) -> dict[str, list]:
    """The figure's words by role: headings (the figure's title, each panel's title and axis labels, legends),
    ticks (one list per axis), notes (annotations and free text, one list per panel)."""
    headings: list[tuple[str, object]] = []
    ticks: list[list[Text]] = []
    notes: list[list[Text]] = []
    if _shown(fig._suptitle):
        headings.append(("figure title", fig._suptitle))
    for legend in fig.legends:
        if legend.get_visible():
            headings.append(("figure legend", legend))
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for title in (ax.title, ax._left_title, ax._right_title):
            if _shown(title):
                headings.append((f"panel {k} title", title))
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if _shown(axis.label):
                headings.append((f"panel {k} {name} label", axis.label))
            drawn = axis._update_ticks()  # the ticks in view: those drawn (get_ticklabels also has the others)
            ticks.append([label for tick in drawn for label in (tick.label1, tick.label2) if _shown(label)])
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            headings.append((f"panel {k} legend", legend))
        notes.append([t for t in ax.texts if _shown(t)])
    notes.append([t for t in fig.texts if _shown(t) and t is not fig._suptitle])
    return {"headings": headings, "ticks": ticks, "notes": notes}


def _corners(artist, box, renderer) -> np.ndarray:
    """The four corners of what ``artist`` covers, in display pixels: its box, or for text rotated by an angle that
    is not a multiple of 90 degrees the rotated rectangle inscribed in that box (its box also holds the empty
    triangles around it, so two long slanted tick labels side by side would seem to collide)."""
    angle = artist.get_rotation() % 180 if isinstance(artist, Text) else 0.0
    if angle % 90 == 0:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    rotation = artist.get_rotation()
    artist.set_rotation(0)
    flat = artist.get_window_extent(renderer)  # the text's own width and height
    artist.set_rotation(rotation)
    w, h = flat.width, flat.height
    phi = np.radians(angle if angle < 90 else 180 - angle)
    c, s = np.cos(phi), np.sin(phi)
    # rising to the right: the lowest corner on the bottom edge, then the right, top and left edges
    quad = np.array([[box.x0 + h * s, box.y0], [box.x1, box.y0 + w * s], [box.x1 - h * s, box.y1],
                     [box.x0, box.y0 + h * c]])
    if angle > 90:  # falling to the right: the mirror image
        quad[:, 0] = box.x0 + box.x1 - quad[:, 0]
    return quad


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quadrilaterals overlap by more than SLACK (separating axis theorem)."""
    for quad in (a, b):
        for k in range(4):
            edge = quad[(k + 1) % 4] - quad[k]
            normal = np.array([-edge[1], edge[0]]) / np.hypot(*edge)
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= SLACK:
                return False
    return True


def _name(artist) -> str:
    return repr(artist.get_text()) if isinstance(artist, Text) else type(artist).__name__


def layout_problems(fig: Figure) -> list[str]:
    """Every text outside the figure, and every pair of texts that cover each other (headings with headings,
    headings with tick labels, tick labels of one axis with each other, annotations with each other and with
    headings)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    found = texts_of(fig)
    extent, covered = {}, {}

    def bbox(artist):
        if id(artist) not in extent:
            extent[id(artist)] = artist.get_window_extent(renderer)
        return extent[id(artist)]

    def area(artist) -> np.ndarray:
        if id(artist) not in covered:
            covered[id(artist)] = _corners(artist, bbox(artist), renderer)
        return covered[id(artist)]

    problems = []
    everything = [a for _, a in found["headings"]] + [t for group in found["ticks"] + found["notes"] for t in group]
    for artist in everything:
        b = bbox(artist)
        if b.x0 < box.x0 - SLACK or b.x1 > box.x1 + SLACK or b.y0 < box.y0 - SLACK or b.y1 > box.y1 + SLACK:
            problems.append(f"{_name(artist)} reaches outside the figure ({b.x0:.0f}..{b.x1:.0f} x "
                            f"{b.y0:.0f}..{b.y1:.0f} in {box.x1:.0f} x {box.y1:.0f})")
    for (role_a, a), (role_b, b) in itertools.combinations(found["headings"], 2):
        if _overlap(area(a), area(b)):
            problems.append(f"{role_a} {_name(a)} covers {role_b} {_name(b)}")
    every_tick = [t for group in found["ticks"] for t in group]
    for role, heading in found["headings"]:
        for t in every_tick:
            if _overlap(area(heading), area(t)):
                problems.append(f"{role} {_name(heading)} covers tick label {_name(t)}")
    for group in found["ticks"]:
        for a, b in itertools.combinations(group, 2):
            if _overlap(area(a), area(b)):
                problems.append(f"tick labels {_name(a)} and {_name(b)} cover each other")
    for group in found["notes"]:
        for a, b in itertools.combinations(group, 2):
            if _overlap(area(a), area(b)):
                problems.append(f"annotations {_name(a)} and {_name(b)} cover each other")
        for t in group:
            for role, heading in found["headings"]:
                if _overlap(area(t), area(heading)):
                    problems.append(f"annotation {_name(t)} covers {role} {_name(heading)}")
    return problems


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """The figures saved while the test runs (whatever draws them: pyplot or a bare Figure), kept instead of
    written: :func:`layout_problems` draws each (its layout in inches is the same at any resolution)."""
    figures: list[Figure] = []

    def capture(self, *args, **kwargs):
        figures.append(self)

    monkeypatch.setattr(Figure, "savefig", capture)
    return figures


def assert_legible(figures: list[Figure], what: str) -> None:
    assert figures, f"{what}: no figure was saved"
    problems = [f"{what} #{k}: {p}" for k, fig in enumerate(figures) for p in layout_problems(fig)]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# Synthetic results shaped as an experiment's
# --------------------------------------------------------------------------------------------------


def _magnitude(outcome: str) -> tuple[float, float]:
    """A typical level and spread of an outcome: money in the millions, fractions between 0 and 1."""
    if " - " in outcome:
        return 0.0, 0.03
    parsed = parse_name(outcome)
    declared = MEASURES.get(parsed.measure) if parsed is not None else None
    unit = declared.unit if declared is not None else ""
    if "satisfaction" in outcome and "share" not in outcome:
        return -0.01, 0.004
    if "attitude" in outcome:
        return 0.15, 0.08
    if unit in MONEY_UNITS:
        return (1.2e6, 2.5e5) if unit == "money" else (120.0, 25.0)
    if unit == FRACTION or "retention" in outcome or "share" in outcome or "rate" in outcome:
        return 0.6, 0.15
    return 10.0, 3.0


def synthetic_results(experiment) -> pd.DataFrame:
    """The report's tidy table of ``experiment`` with made-up values: every design point, REPLICATIONS replications,
    every outcome; each design point shifts each outcome by its own amount, each replication adds noise."""
    rng = np.random.default_rng(zlib.crc32(experiment.name.encode()))
    records = []
    for point in experiment.design:
        for outcome in experiment.outcomes:
            level, spread = _magnitude(outcome)
            shift = rng.normal(0.0, spread)
            for r in range(REPLICATIONS):
                records.append({**point.labels, **point.values, "design": point.index, "replication": r,
                                "outcome": outcome, "value": level + shift + rng.normal(0.0, spread / 4)})
    tidy = pd.DataFrame(records)
    if experiment.sampling is None:
        for f, labels in experiment.levels.items():
            tidy[f] = pd.Categorical(tidy[f], categories=labels, ordered=True)
    tidy["outcome"] = pd.Categorical(tidy["outcome"], categories=experiment.outcomes, ordered=True)
    return tidy


@pytest.fixture(scope="module")
def shipped() -> dict[str, tuple]:
    out = {}
    for path in EXPERIMENTS:
        experiment = load_experiment(path)
        out[path.stem] = (experiment, synthetic_results(experiment))
    return out


def _longest_labelled(outcomes: list[str], money_only: bool = False) -> str | None:
    chosen = [o for o in outcomes if report.is_money(o) or not money_only]
    return max(chosen, key=lambda o: len(report.describe_outcome(o)), default=None)


# --------------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [p.stem for p in EXPERIMENTS])
def test_the_outcome_and_decision_figures_of_each_shipped_experiment_are_legible(name, shipped, saved, tmp_path):
    experiment, tidy = shipped[name]
    factors = experiment.factors
    if experiment.sampling is not None:
        outcome = _longest_labelled(experiment.outcomes)
        report.scatter_figure(tidy, outcome, factors, tmp_path / "scatter.png", title=experiment.name)
        result = analyse(tidy, experiment.sampling, outcome, report.CONFIDENCE)
        report.sensitivity_figure(result, tmp_path / "sensitivity.png", title=experiment.name)
    else:
        report.outcome_figure(tidy, _longest_labelled(experiment.outcomes), factors, tmp_path / "outcome.png",
                              title=experiment.name)
        money = _longest_labelled(experiment.outcomes, money_only=True)
        if experiment.reference and money is not None:
            diffs = report.paired_differences(tidy[tidy["outcome"] == money], factors, experiment.reference,
                                              risk=True)
            report.decision_figure(diffs, money, factors, tmp_path / "decision.png", title=experiment.name)
    assert_legible(saved, name)


@pytest.mark.parametrize("name", ["trap", "jones_sasser", "winback", "programme_designs", "trap_imitation"])
def test_every_findings_figure_is_legible(name, shipped, saved, tmp_path):
    figures = report.load_figures()
    experiment, tidy = next((e, t) for e, t in shipped.values() if name in e.spec.figures)
    figures[name](tidy, experiment, tmp_path)
    assert_legible(saved, name)


def test_the_calibration_figures_are_legible(saved, tmp_path):
    """fit.png and tracking.png of the committed CDNOW calibration, from its committed tables."""
    targets = pd.read_csv(CDNOW_FIT / "targets.csv", index_col="moment")
    tracking = pd.read_csv(CDNOW_FIT / "tracking.csv", index_col="week")
    calibration = SimpleNamespace(name="calibrate_cdnow", sd=(targets["target_high"] - targets["target"]) / 1.96,
                                  spec=SimpleNamespace(transactions=SimpleNamespace(weeks=39)))
    fit = SimpleNamespace(calibration=calibration, targets=lambda: targets)
    paths = fit_report.figures(fit, tracking, tmp_path)
    assert [p.name for p in paths] == ["fit.png", "tracking.png"]
    assert_legible(saved, "calibration")


def test_the_policy_search_figure_is_legible(saved, tmp_path):
    """search.png of a two-lever search with money in a named currency, from a synthetic history (some candidates
    over the risk limit)."""
    from loyaltysim.reporting import policy as policy_report

    rng = np.random.default_rng(3)
    n = 30
    table = pd.DataFrame({"evaluation": np.arange(1, n + 1), "cashback_rate": rng.uniform(0.0, 0.03, n),
                          "reward_threshold_points": rng.uniform(500, 5000, n),
                          "objective": rng.normal(1.2e6, 4e4, n), "admissible": rng.random(n) > 0.3})
    levers = [SimpleNamespace(name="cashback_rate", unit=None), SimpleNamespace(name="reward_threshold_points",
                                                                                unit=None)]
    spec = SimpleNamespace(name="cashback_and_threshold", objective="focal.npv - firm[Rival A].npv", levers=levers)
    policy = SimpleNamespace(spec=spec, base=SimpleNamespace(economics=SimpleNamespace(currency="EUR")))
    best = table["objective"].idxmax()
    opt = SimpleNamespace(policy=policy, evaluation_table=lambda: table, reference=np.full(8, 1.15e6),
                          best=SimpleNamespace(index=int(best), mean={"objective": table["objective"][best]}),
                          levers={lv.name: table[lv.name][best] for lv in levers})
    assert policy_report.figure(opt, tmp_path).name == "search.png"
    assert_legible(saved, "policy search")


def test_the_checker_finds_a_clipped_title_and_covered_labels():
    """The check itself: a title wider than its figure, and two annotations at one point, are found."""
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    fig.suptitle("a title far too long to fit in a figure three inches wide, clipped at both ends")
    ax.annotate("40k", (0.5, 0.5))
    ax.annotate("70k", (0.5, 0.5))
    problems = layout_problems(fig)
    assert any("reaches outside the figure" in p for p in problems), problems
    assert any("annotations '40k' and '70k' cover each other" in p for p in problems), problems
    fine = Figure(figsize=(6, 4), layout="constrained")
    ax = fine.subplots()
    ax.set(title="short", xlabel="x", ylabel="y")
    ax.set_xticks(range(4), [f"a long slanted label {k}" for k in range(4)], rotation=30, ha="right")
    assert layout_problems(fine) == []  # slanted labels side by side: their boxes overlap, they do not


def test_the_region_figure_is_legible(saved, tmp_path):
    """figures/region_<finding>.png of a sampled design's finding: ten factors (the longest names shipped), PRIM's
    box on two of them."""
    from loyaltysim.reporting import regions

    rng = np.random.default_rng(5)
    names = ["survey_noise", "cutpoint_4", "cutpoint_5", "attitude_gain", "relationship_premium", "choice_noise",
             "search_when_satisfied", "search_when_dissatisfied", "offer_attention", "latent_expectation_half_life"]
    points = pd.DataFrame(rng.random((128, len(names))), columns=names)
    holds = (points["survey_noise"] < 0.3) & (points["cutpoint_5"] > 0.6)
    points = points.assign(verdict=np.where(holds, "holds", "fails"), mean=0.0, ci_low=0.0, ci_high=0.0)
    factors = [SimpleNamespace(name=n, bounds=[0.0, 1.0], unit="weeks" if "gain" in n else None) for n in names]
    region = regions.describe(points, "jones_sasser_region", "claim", "statistic", factors)
    regions.figure(region, tmp_path / "region.png", title="jones_sasser_region: where the jump at score 5 holds")
    assert_legible(saved, "region")
