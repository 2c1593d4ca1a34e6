"""The teaching dashboard's page, for the served page and for a notebook: Mesa's SolaraViz over a
:class:`~loyaltysim.viz.dashboard.DashboardMarket`.

:func:`DashboardPage` is the whole page of a :class:`~loyaltysim.viz.dashboard.Dashboard`: classroom presets, the
levers' sliders and switches, a seed, Mesa's play, step and reset controls, and the plots. ``loyaltysim dashboard``
serves it (:mod:`loyaltysim.viz.app`); :func:`explore` shows it, or a few of its plots, in a Jupyter notebook. Each
plot reads what it shows from the model it is given (its dashboard, scenario and recorded series), so the same
components serve any scenario.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import solara
from matplotlib.figure import Figure
from mesa.visualization import Slider, SolaraViz

from loyaltysim.scenario import LoyaltyScenario, load_scenario
from loyaltysim.units import DAYS, parse_duration
from loyaltysim.viz.dashboard import (
    CLASSROOM_POPULATION,
    Dashboard,
    DashboardMarket,
    annual_retention,
    build_model,
    dashboard_for,
)

SEED = 1
JS_CLASSES = ("defector", "hostage", "mercenary", "loyalist", "apostle")
JS_COLOURS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#1f77b4")
LADDER_STAGES = ("first_time", "repeat", "client", "advocate")
LADDER_COLOURS = ("#c7e9c0", "#74c476", "#31a354", "#006d2c")
KANO_SERIES = (("satisfaction_basic", "must-be (basic) needs", "#d62728"),
               ("satisfaction_performance", "one-dimensional (performance) needs", "#7f7f7f"),
               ("satisfaction_latent", "attractive (latent) needs", "#1f77b4"))


def _model_params(dashboard: Dashboard, values: dict) -> dict:
    """Mesa's model parameters: the dashboard (fixed), the seed and one input per lever, starting at ``values``."""
    params: dict = {"dashboard": dashboard, "seed": Slider("Seed (same seed, same run)", SEED, 0, 99, 1)}
    for name, lever in dashboard.levers.items():
        if lever.is_switch:
            params[name] = {"type": "Checkbox", "label": lever.label, "value": values[name]}
        elif lever.whole:
            params[name] = Slider(lever.label, int(values[name]), int(lever.minimum), int(lever.maximum),
                                  int(lever.step))
        else:
            params[name] = Slider(lever.label, float(values[name]), float(lever.minimum), float(lever.maximum),
                                  float(lever.step), dtype=float)
    return params


def _unit(model: DashboardMarket) -> str:
    return model.config.time.step


def _axes(model: DashboardMarket, title: str, ylabel: str):
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(f"{_unit(model)}s since the start")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _mark(ax, at: int, label: str) -> None:
    ax.axvline(at, color="grey", linestyle=":", linewidth=1)
    ax.text(at, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="grey")


def _finish(fig, ax, model: DashboardMarket, empty: bool):
    steps = max(model.steps, 1)
    warmup, change = model.config.warmup_steps(), int(model.levers["change_at"])
    if empty:
        ax.text(0.5, 0.5, "press \u25b6 (play) or Step", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    else:
        if steps >= warmup > 0 and warmup != change:
            _mark(ax, warmup, "warm-up ends")
        if steps >= change > 0:
            _mark(ax, change, "levers change")
    ax.set_xlim(0, max(steps, 10))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return solara.FigureMatplotlib(fig, format="png", dpi=90)


def _focal(model: DashboardMarket):
    frame = model.series()
    return frame[frame["firm"] == model.dashboard.focal]


def SharesPlot(model: DashboardMarket):
    fig, ax = _axes(model, "Market shares", "share of the market's customers")
    frame = model.series()
    for firm, rows in frame.groupby("firm", sort=False):
        ax.plot(rows["step"], rows["share"], label=firm, linewidth=2.0 if firm == model.dashboard.focal else 1.2)
    ax.set_ylim(0, 1)
    return _finish(fig, ax, model, frame.empty)


def RetentionPlot(model: DashboardMarket):
    fig, ax = _axes(model, "Retention per year (over the last quarter)", "share of customers kept a year")
    frame = model.series()
    unit = _unit(model)
    per_year = DAYS["year"] / DAYS[unit]  # the project's year (365.25 days)
    window = parse_duration("13 weeks").steps(unit)  # a quarter
    for firm, rows in frame.groupby("firm", sort=False):
        ax.plot(rows["step"], annual_retention(rows["retention"], per_year, window), label=firm,
                linewidth=2.0 if firm == model.dashboard.focal else 1.2)
    ax.set_ylim(0, 1)
    return _finish(fig, ax, model, frame.empty)


def KanoPlot(model: DashboardMarket):
    fig, ax = _axes(model, f"How well {model.dashboard.focal} meets its customers' needs, by Kano class",
                    "offer minus expectation (weighted)")
    rows = _focal(model)
    for column, label, colour in KANO_SERIES:
        ax.plot(rows["step"], rows[column], label=label, color=colour)
    ax.axhline(0, color="black", linewidth=0.8)
    return _finish(fig, ax, model, rows.empty)


def _stacked(model: DashboardMarket, title: str, prefix: str, classes, colours, labels):
    fig, ax = _axes(model, title, f"share of {model.dashboard.focal}'s customers")
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
    return _stacked(model, f"Jones & Sasser classes of {model.dashboard.focal}'s customers", "js_", JS_CLASSES,
                    JS_COLOURS, JS_CLASSES)


def LadderPlot(model: DashboardMarket):
    return _stacked(model, f"{model.dashboard.focal}'s customers on the loyalty ladder", "stage_", LADDER_STAGES,
                    LADDER_COLOURS, [s.replace("_", "-") for s in LADDER_STAGES])


def _shown(lever, value) -> str:
    return ("on" if value else "off") if lever.is_switch else f"{value:g}"


def ThisRun(model: DashboardMarket):
    """The levers and seed of the run shown (the sliders apply at Reset), and how far it has got."""
    unit = _unit(model)
    with solara.Card(f"This run: {unit} {model.steps} of {model.config.steps()}") as card, \
            solara.Column(gap="2px"):
        solara.Text(f"Seed: {model.seed}")
        for name, lever in model.dashboard.levers.items():
            solara.Text(f"{lever.label}: {_shown(lever, model.levers[name])}")
    return card


# every plot the page can show, by the name :func:`explore` takes
PLOTS = {"shares": SharesPlot, "retention": RetentionPlot, "kano": KanoPlot, "jones_sasser": JonesSasserPlot,
         "ladder": LadderPlot}


def _components(plots: Sequence[str]) -> list:
    unknown = [p for p in plots if p not in PLOTS]
    if unknown:
        raise ValueError(f"unknown plot(s) {unknown}; the dashboard's plots are {list(PLOTS)}")
    return [(ThisRun, 0), *[(PLOTS[p], 0) for p in plots]]


@solara.component
def DashboardPage(dashboard: Dashboard, plots: Sequence[str] = tuple(PLOTS), preset: str | None = None):
    """The dashboard's page: a preset chooser, the levers (they apply at Reset), Mesa's controls and ``plots``."""
    names = list(dashboard.presets)
    chosen, set_chosen = solara.use_state(preset or names[0])
    values = dashboard.values(chosen)
    model = solara.use_memo(lambda: build_model(dashboard, values, seed=SEED), [chosen])
    scenario, unit = dashboard.scenario, dashboard.scenario.time.step
    with solara.Sidebar(), solara.Card("Classroom presets"):
        solara.Select("Preset", value=chosen, values=names, on_value=set_chosen)
        solara.Text(
            f"Scenario: {scenario.name}, {scenario.market.customers.population:,} customers, "
            f"{scenario.steps()} {unit}s (warm-up {scenario.warmup_steps()}). A preset sets the sliders below and "
            f"starts a new run; after moving a slider, press Reset to start a run with it. The levers hold from "
            f"the {unit} their last slider names (0: from the first); the seed fixes the run, so the same settings "
            "give a class the same run.")
    SolaraViz(model, components=_components(plots), model_params=_model_params(dashboard, values),
              name=f"loyaltysim: {scenario.name}", play_interval=50, render_interval=4).key(f"preset {chosen}")


def _quiet_in_jupyter() -> None:
    """No usage statistics from a notebook: Solara's Jupyter display looks up the machine's public address on the
    internet when it first shows a page, whatever its telemetry setting (Solara 1.58); mark that as done, and switch
    the telemetry off, as the served page does (:mod:`loyaltysim.viz.server`)."""
    from solara.server import settings, telemetry

    settings.telemetry.mixpanel_enable = False
    telemetry._jupyter_start_event_send = True  # Solara's own flag for "already reported"


def explore(scenario: LoyaltyScenario | str | os.PathLike, *, plots: Sequence[str] = tuple(PLOTS),
            preset: str | None = None, population: int | None = CLASSROOM_POPULATION):
    """The dashboard of ``scenario`` (a scenario, or the path of its file) for a Jupyter notebook, showing ``plots``
    (names from :data:`PLOTS`) and starting from ``preset`` (a name of the dashboard's presets; None: the first, the
    scenario as it is), at ``population`` customers (None: the scenario's). Display the value (the last expression
    of a cell) to show it: in Jupyter the presets, levers and controls open from the ☰ button of the page's bar.
    Nothing is sent anywhere: Solara's usage statistics are switched off. Raises ``ValueError`` for an unknown plot
    or preset, and :class:`~loyaltysim.scenario.ScenarioError` for a scenario the dashboard cannot use."""
    if not isinstance(scenario, LoyaltyScenario):
        scenario = load_scenario(scenario)
    plots = [plots] if isinstance(plots, str) else list(plots)  # one plot may be named alone
    dashboard = dashboard_for(scenario, population)
    _components(plots)  # an unknown plot is refused here, in the notebook's cell, not when the page renders
    if preset is not None and preset not in dashboard.presets:
        raise ValueError(f"unknown preset {preset!r}; this dashboard's presets are {list(dashboard.presets)}")
    _quiet_in_jupyter()
    return DashboardPage(dashboard, plots=tuple(plots), preset=preset)
