"""The teaching dashboard's page: Mesa's SolaraViz over a :class:`~loyaltysim.viz.dashboard.DashboardMarket`.

Served by ``loyaltysim dashboard`` (``solara run loyaltysim.viz.app``). The scenario is read once, when the server
imports this module, from the file named by the environment variable ``LOYALTYSIM_DASHBOARD_SCENARIO`` (the command
sets it to the absolute path it was given); nothing on the page names a file. The page has the sliders and switches
of the levers, a seed, classroom presets that set them, Mesa's play, step and reset controls, and five plots.
"""

from __future__ import annotations

import solara
from matplotlib.figure import Figure
from mesa.visualization import Slider, SolaraViz

from loyaltysim.units import DAYS, parse_duration
from loyaltysim.viz.dashboard import (
    DashboardMarket,
    annual_retention,
    build_model,
    dashboard_from_environment,
)

DASHBOARD = dashboard_from_environment()
SCENARIO = DASHBOARD.scenario
FOCAL = DASHBOARD.focal
UNIT = SCENARIO.time.step
WARMUP = SCENARIO.warmup_steps()
STEPS_PER_YEAR = DAYS["year"] / DAYS[UNIT]  # the project's year (365.25 days)
RETENTION_WINDOW = parse_duration("13 weeks").steps(UNIT)  # steps: a quarter
SEED = 1
PRESETS = list(DASHBOARD.presets)

JS_CLASSES = ("defector", "hostage", "mercenary", "loyalist", "apostle")
JS_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#1f77b4")
LADDER_STAGES = ("first_time", "repeat", "client", "advocate")
LADDER_COLOURS = ("#c7e9c0", "#74c476", "#31a354", "#006d2c")
KANO_SERIES = (("satisfaction_basic", "must-be (basic) needs", "#d62728"),
               ("satisfaction_performance", "one-dimensional (performance) needs", "#7f7f7f"),
               ("satisfaction_latent", "attractive (latent) needs", "#1f77b4"))


def _model_params(values: dict) -> dict:
    """Mesa's model parameters: the dashboard (fixed), the seed and one input per lever, starting at ``values``."""
    params: dict = {"dashboard": DASHBOARD, "seed": Slider("Seed (same seed, same run)", SEED, 0, 99, 1)}
    for name, lever in DASHBOARD.levers.items():
        if lever.is_switch:
            params[name] = {"type": "Checkbox", "label": lever.label, "value": values[name]}
        else:
            params[name] = Slider(lever.label, float(values[name]), float(lever.minimum), float(lever.maximum),
                                  float(lever.step), dtype=float)
    return params


def _axes(title: str, ylabel: str):
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(f"{UNIT}s since the start")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _finish(fig, ax, model: DashboardMarket, empty: bool):
    steps = max(model.steps, 1)
    if empty:
        ax.text(0.5, 0.5, "press \u25b6 (play) or Step", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    elif steps >= WARMUP:
        ax.axvline(WARMUP, color="grey", linestyle=":", linewidth=1)
        ax.text(WARMUP, 1.0, " warm-up ends", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                color="grey")
    ax.set_xlim(0, max(steps, 10))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return solara.FigureMatplotlib(fig, format="png", dpi=90)


def _focal(model: DashboardMarket):
    frame = model.series()
    return frame[frame["firm"] == FOCAL]


def SharesPlot(model: DashboardMarket):
    fig, ax = _axes("Market shares", "share of the market's customers")
    frame = model.series()
    for firm, rows in frame.groupby("firm", sort=False):
        ax.plot(rows["step"], rows["share"], label=firm, linewidth=2.0 if firm == FOCAL else 1.2)
    ax.set_ylim(0, 1)
    return _finish(fig, ax, model, frame.empty)


def RetentionPlot(model: DashboardMarket):
    fig, ax = _axes("Retention per year (over the last quarter)", "share of customers kept a year")
    frame = model.series()
    for firm, rows in frame.groupby("firm", sort=False):
        ax.plot(rows["step"], annual_retention(rows["retention"], STEPS_PER_YEAR, RETENTION_WINDOW), label=firm,
                linewidth=2.0 if firm == FOCAL else 1.2)
    ax.set_ylim(0, 1)
    return _finish(fig, ax, model, frame.empty)


def KanoPlot(model: DashboardMarket):
    fig, ax = _axes(f"How well {FOCAL} meets its customers' needs, by Kano class",
                    "offer minus expectation (weighted)")
    rows = _focal(model)
    for column, label, colour in KANO_SERIES:
        ax.plot(rows["step"], rows[column], label=label, color=colour)
    ax.axhline(0, color="black", linewidth=0.8)
    return _finish(fig, ax, model, rows.empty)


def _stacked(model: DashboardMarket, title: str, prefix: str, classes, colours, labels):
    fig, ax = _axes(title, f"share of {FOCAL}'s customers")
    rows = _focal(model)
    if not rows.empty:
        counts = rows[[f"{prefix}{c}" for c in classes]].to_numpy(dtype=float)
        total = counts.sum(axis=1, keepdims=True)
        shares = (counts / total.clip(min=1)).T
        ax.stackplot(rows["step"], *shares, labels=labels, colors=colours, alpha=0.9)
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_ylim(0, 1)
    return _finish(fig, ax, model, rows.empty)


def JonesSasserPlot(model: DashboardMarket):
    return _stacked(model, f"Jones & Sasser classes of {FOCAL}'s customers", "js_", JS_CLASSES, JS_COLOURS,
                    JS_CLASSES)


def LadderPlot(model: DashboardMarket):
    return _stacked(model, f"{FOCAL}'s customers on the loyalty ladder", "stage_", LADDER_STAGES, LADDER_COLOURS,
                    [s.replace("_", "-") for s in LADDER_STAGES])


def _shown(lever, value) -> str:
    return ("on" if value else "off") if lever.is_switch else f"{value:g}"


def ThisRun(model: DashboardMarket):
    """The levers and seed of the run shown (the sliders apply at Reset), and how far it has got."""
    with solara.Card(f"This run: {UNIT} {model.steps} of {SCENARIO.steps()}") as card, solara.Column(gap="2px"):
        solara.Text(f"Seed: {model.seed}")
        for name, lever in DASHBOARD.levers.items():
            solara.Text(f"{lever.label}: {_shown(lever, model.levers[name])}")
    return card


COMPONENTS = [(ThisRun, 0), (SharesPlot, 0), (RetentionPlot, 0), (KanoPlot, 0), (JonesSasserPlot, 0), (LadderPlot, 0)]


@solara.component
def Page():
    preset, set_preset = solara.use_state(PRESETS[0])
    values = DASHBOARD.values(preset)
    model = solara.use_memo(lambda: build_model(DASHBOARD, values, seed=SEED), [preset])
    with solara.Sidebar(), solara.Card("Classroom presets"):
        solara.Select("Preset", value=preset, values=PRESETS, on_value=set_preset)
        solara.Text(
            f"Scenario: {SCENARIO.name}, {SCENARIO.market.customers.population:,} customers, "
            f"{SCENARIO.steps()} {UNIT}s (warm-up {WARMUP}). A preset sets the sliders below and starts a new run; "
            "after moving a slider, press Reset to start a run with it. Every lever holds from the first "
            f"{UNIT}; the seed fixes the run, so the same settings give a class the same run.")
    SolaraViz(model, components=COMPONENTS, model_params=_model_params(values), name=f"loyaltysim: {SCENARIO.name}",
              play_interval=50, render_interval=4).key(f"preset {preset}")
