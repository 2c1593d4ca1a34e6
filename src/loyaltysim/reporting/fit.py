"""A calibration's outputs: the calibrated scenario, the fit against every target, the parameters' uncertainty, every
evaluation, and figures.

:func:`write_fit` writes into ``OUT/<name>/``:

* ``calibrated.toml``: the scenario file as given, with each fitted parameter set to its estimate (a comment says
  where it came from); ``loyaltysim run`` takes it as it is;
* ``fit.md``: the parameters (estimate, standard error, 95% interval, whether the estimate sits on a bound or the
  targets cannot identify it) and every target beside its simulated value at the estimate;
* ``parameters.csv``, ``targets.csv``, ``jacobian.csv`` (each moment's derivative by each parameter at the estimate)
  and ``evaluations.csv`` (every point evaluated: stage, which local search, values, distance, mean moments); with
  a bootstrap of the estimate, ``bootstrap.csv`` (each replicate's estimate and distance);
* ``figures/fit.png``: each moment's gap to its target in the target's standard errors, with the simulated value's
  95% interval; with a transaction log also ``figures/tracking.png``: the cohort's cumulative repeat transactions
  per customer week by week, observed and simulated at the estimate, through the held-out weeks;
* with ``benchmark = "bgnbd"`` in the targets' ``[transactions]``, the BG/NBD fitted on the same weeks of the same
  cohort beside the calibrated model: the repeat histogram and the tracking in ``fit.md``, its curve in
  ``tracking.png`` and ``tracking.csv``, and ``bgnbd_histogram.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyaltysim.experiments.fitting import Fit, simulated_log
from loyaltysim.measures import bgnbd
from loyaltysim.measures import transactions as tr
from loyaltysim.scenario import read_toml, set_path


def scenario_text(scenario_path: Path, settings: dict[str, object], head: list[str]) -> str:
    """A scenario file's text with the ``settings`` (path: value as written in a scenario) set, under the comment
    lines ``head`` (each listed setting follows them as a comment)."""
    import tomli_w

    data = read_toml(scenario_path, "a scenario file (.toml)")
    for path, value in settings.items():
        set_path(data, path, value)
    return "\n".join(head) + "\n\n" + tomli_w.dumps(data)


def calibrated_scenario(fit: Fit) -> str:
    """The scenario file's text with each parameter set to its estimate."""
    cal = fit.calibration
    head = [f"# {shown_path(cal.scenario_path)} calibrated to {shown_path(cal.path)} by loyaltysim calibrate",
            "# (simulated method of moments; fit.md beside this file gives the fit and the intervals):"]
    head += [f"#   {p.path} = {fit.estimate[p.name]!r}" for p in cal.spec.parameters]
    return scenario_text(cal.scenario_path, {p.path: p.factor().written(fit.estimate[p.name])
                                             for p in cal.spec.parameters}, head)


def benchmark(fit: Fit) -> bgnbd.Benchmark | None:
    """The BG/NBD fitted on the calibration window of the log's cohort and tracked through the held-out weeks, when
    the targets ask for it (``benchmark = "bgnbd"``)."""
    cal = fit.calibration
    t = cal.spec.transactions
    if t is None or t.benchmark != "bgnbd" or cal.observed is None or cal.window is None:
        return None
    return bgnbd.benchmark(tr.cohort(cal.observed, cal.window.cohort_weeks), t.weeks, t.weeks + (t.holdout_weeks or 0))


def tracking(fit: Fit, bench: bgnbd.Benchmark | None = None) -> pd.DataFrame | None:
    """The cohort's cumulative repeat transactions per customer, week by week through the held-out weeks: observed,
    and simulated at the estimate (mean, lowest and highest replication), and the BG/NBD's if given. None without a
    transaction log."""
    cal = fit.calibration
    t = cal.spec.transactions
    if t is None or cal.observed is None or cal.window is None:
        return None
    weeks = t.weeks + (t.holdout_weeks or 0)

    def per_customer(frame: pd.DataFrame) -> np.ndarray:
        cohort = tr.cohort(frame, cal.window.cohort_weeks)
        size = cohort["customer"].nunique()
        return tr.weekly_repeats(cohort, weeks)["cumulative"].to_numpy() / max(size, 1)

    warmup = cal.base.warmup_steps() if cal.spec.warmup is None else cal.spec.warmup.steps(cal.base.time.step)
    sims = np.array([per_customer(simulated_log(d, cal.firm, warmup, cal.period()))
                     for d in fit.best.run_dirs])
    curve = pd.DataFrame({"observed": per_customer(cal.observed), "simulated": sims.mean(axis=0),
                          "simulated_min": sims.min(axis=0), "simulated_max": sims.max(axis=0)},
                         index=pd.RangeIndex(1, weeks + 1, name="week"))
    if bench is not None:
        size = tr.cohort(cal.observed, cal.window.cohort_weeks)["customer"].nunique()
        curve["bgnbd"] = bench.tracking["bgnbd"].to_numpy() / size
    return curve


def shown_path(path: Path) -> str:
    """A file as the command was given it: relative to the working folder when it is under it, else its full path."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.4g}"


def _mape(curve: pd.DataFrame, column: str, after: int) -> float:
    hold = curve.loc[after + 1:]
    return float((abs(hold[column] - hold["observed"]) / hold["observed"]).mean())


def benchmark_table(fit: Fit, bench: bgnbd.Benchmark, curve: pd.DataFrame) -> list[str]:
    """fit.md's section setting the calibrated model beside the BG/NBD: the repeat histogram of the window and the
    tracking of the cumulative repeat transactions."""
    t = fit.calibration.spec.transactions
    assert t is not None
    targets = fit.targets()
    r, alpha, a, b = bench.fit.params
    lines = ["", "## Beside the BG/NBD", "",
             f"The BG/NBD (Fader, Hardie & Lee 2005) fitted by maximum likelihood on the same weeks 1-{t.weeks} of the "
             f"same cohort: r = {r:.3f}, alpha = {alpha:.3f}, a = {a:.3f}, b = {b:.3f}.", "",
             f"| repeat transactions, weeks 1-{t.weeks} | observed | calibrated model | BG/NBD |",
             "|---|---:|---:|---:|"]
    hist = bench.histogram
    for label in hist.index:
        sim = targets["simulated"].get(f"repeats_{label}", float("nan"))
        lines.append(f"| {label} | {hist.loc[label, 'observed_share']:.1%} | {sim:.1%} | "
                     f"{hist.loc[label, 'bgnbd_share']:.1%} |")
    sims = [targets["simulated"].get(f"repeats_{label}") for label in hist.index]
    if all(x is not None for x in sims):
        worst_sim = max(abs(s_ - o) for s_, o in zip(sims, hist["observed_share"], strict=True))
        worst_bg = float((hist["bgnbd_share"] - hist["observed_share"]).abs().max())
        lines += ["", f"Largest gap of a bin: calibrated model {worst_sim * 100:.1f} percentage points, BG/NBD "
                  f"{worst_bg * 100:.1f}."]
    end = curve.iloc[-1]
    lines += ["", f"Cumulative repeat transactions per customer at week {len(curve)}: observed {end['observed']:.3f}, "
              f"calibrated model {end['simulated']:.3f} ({end['simulated'] / end['observed'] - 1:+.1%}), BG/NBD "
              f"{end['bgnbd']:.3f} ({end['bgnbd'] / end['observed'] - 1:+.1%})."]
    if t.holdout_weeks:
        lines.append("")
        lines.append(f"Mean absolute percentage error over weeks {t.weeks + 1}-{len(curve)}: calibrated model "
                     f"{_mape(curve, 'simulated', t.weeks):.1%}, BG/NBD {_mape(curve, 'bgnbd', t.weeks):.1%}.")
    return lines


def markdown(fit: Fit, curve: pd.DataFrame | None, bench: bgnbd.Benchmark | None = None) -> str:
    cal = fit.calibration
    params = fit.parameters()
    targets = fit.targets()
    searches = (f"{cal.spec.search.starts} Nelder-Mead searches from its best points" if cal.spec.search.starts > 1
                else "a Nelder-Mead search")
    given = "the targets' start, " if any(e.stage == "given" for e in fit.evaluations) else ""
    lines = [f"# Calibration {cal.name}", "",
             f"Scenario `{shown_path(cal.scenario_path)}` fitted to `{shown_path(cal.path)}` by the simulated "
             "method of moments: "
             f"{len(fit.evaluations)} points evaluated ({given}{sum(e.stage == 'initial' for e in fit.evaluations)} "
             f"of a Sobol' design, {sum(e.stage == 'local' for e in fit.evaluations)} of {searches}, "
             f"{sum(e.stage == 'jacobian' for e in fit.evaluations)} for the derivatives), each over "
             f"{cal.spec.replications} replication(s) on the same seeds (root seed {cal.spec.root_seed}); "
             f"{fit.new_runs} runs made, {fit.reused_runs} found stored. Distance at the estimate "
             f"{fit.best.score:.4g} (the sum of squared gaps in the targets' standard errors, over "
             f"{len(cal.target)} moments).", "",
             "## Parameters", "",
             "| parameter | estimate | standard error | 95% interval | bounds | note |",
             "|---|---:|---:|---|---|---|"]
    for name, row in params.iterrows():
        note = []
        if not row["identified"]:
            note.append("not identified: the targets do not move with it")
        if row["at_bound"]:
            note.append("on a bound: widen it if the scenario allows")
        unit = f" {row['unit']}" if row["unit"] else ""
        lines.append(f"| {name} (`{row['path']}`) | {_fmt(row['estimate'])}{unit} | {_fmt(row['se'])} | "
                     f"[{_fmt(row['low'])}, {_fmt(row['high'])}] | [{_fmt(row['lower_bound'])}, "
                     f"{_fmt(row['upper_bound'])}] | {'; '.join(note)} |")
    if fit.bootstrap is None:
        lines += ["", "The standard errors are the simulated method of moments' sandwich: the targets' sampling "
                  "error (their given standard errors; a bootstrap of the log's customers for a transaction log) and "
                  "the simulation's noise over the replications, through the moments' derivatives at the estimate. "
                  "They are asymptotic (the moments taken as linear in the parameters near the estimate)."]
    else:
        boot = fit.bootstrap
        sandwich = ", ".join(f"{name} {_fmt(row['se_sandwich'])}" for name, row in params.iterrows())
        lines += ["", f"The standard errors and intervals are a bootstrap of the estimate: {len(boot)} replicates, "
                  "each refitted (a local search from the estimate) to targets redrawn from their sampling "
                  "distribution (the log's customers resampled; summary moments drawn with their standard errors) "
                  "on replications of its own seeds; the standard error is the replicates' standard deviation and "
                  "the interval their 2.5th-97.5th percentiles. "
                  f"Replicates' distances: median {boot['distance'].median():.4g}, largest "
                  f"{boot['distance'].max():.4g}. The sandwich's standard errors, for comparison: {sandwich}."]
    lines += ["", "## Targets", "",
              "| moment | target | 95% interval | simulated | 95% interval (replications) | gap (SE) |",
              "|---|---:|---|---:|---|---:|"]
    for name, row in targets.iterrows():
        lines.append(f"| {name} | {_fmt(row['target'])} | [{_fmt(row['target_low'])}, {_fmt(row['target_high'])}] "
                     f"| {_fmt(row['simulated'])} | [{_fmt(row['simulated_low'])}, {_fmt(row['simulated_high'])}] "
                     f"| {row['z']:+.2f} |")
    within = int((targets["z"].abs() <= 1.96).sum())
    lines += ["", f"{within} of {len(targets)} moments are within 1.96 standard errors of their targets."]
    s = cal.spec
    overrides = [f"{key} {value}" for key, value in (("population", s.population), ("horizon", s.horizon),
                                                      ("warm-up", s.warmup)) if value is not None]
    if overrides:
        lines += ["", f"The runs used the targets file's {', '.join(overrides)}; `calibrated.toml` keeps the "
                  "scenario's own, with the fitted parameters set."]
    if curve is not None:
        t = fit.calibration.spec.transactions
        assert t is not None
        lines += ["", "## Tracking", "",
                  f"Cumulative repeat transactions per customer of the cohort, weeks 1-{t.weeks} fitted"
                  + (f", weeks {t.weeks + 1}-{t.weeks + t.holdout_weeks} held out" if t.holdout_weeks else "") + ":",
                  "", "| week | observed | simulated | replications' range |", "|---:|---:|---:|---|"]
        weeks = sorted({*range(13, len(curve) + 1, 13), len(curve)})
        for w in weeks:
            row = curve.loc[w]
            lines.append(f"| {w} | {row['observed']:.4f} | {row['simulated']:.4f} | "
                         f"[{row['simulated_min']:.4f}, {row['simulated_max']:.4f}] |")
        if t.holdout_weeks:
            mape = _mape(curve, "simulated", t.weeks)
            end = curve.iloc[-1]
            lines += ["", f"Held-out weeks: mean absolute percentage error {mape:.1%}; at week {len(curve)} the "
                      f"simulated cumulative is {end['simulated'] / end['observed'] - 1:+.1%} off the observed."]
        if bench is not None:
            lines += benchmark_table(fit, bench, curve)
    return "\n".join(lines) + "\n"


def figures(fit: Fit, curve: pd.DataFrame | None, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    targets = fit.targets()
    sd = fit.calibration.sd
    n = len(targets)
    fig, ax = plt.subplots(figsize=(7.5, 2.2 + 0.32 * n), layout="constrained")
    y = np.arange(n)[::-1]
    ax.axvspan(-1.96, 1.96, color="0.9", label="target's 95% interval")
    ax.axvline(0, color="0.4", lw=0.8)
    z = targets["z"].to_numpy()
    lo = ((targets["simulated_low"] - targets["target"]) / sd).to_numpy()
    hi = ((targets["simulated_high"] - targets["target"]) / sd).to_numpy()
    ax.errorbar(z, y, xerr=[np.nan_to_num(z - lo), np.nan_to_num(hi - z)], fmt="o", color="C0",
                label="simulated at the estimate (95% interval over replications)")
    ax.set_yticks(y, targets.index)
    ax.set_xlabel("gap to the target, in the target's standard errors")
    ax.set_title(f"Calibration {fit.calibration.name}: fit to each target")
    fig.legend(loc="outside lower center", ncol=1, frameon=False)
    path = folder / "fit.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    out.append(path)
    if curve is not None:
        t = fit.calibration.spec.transactions
        assert t is not None
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        ax.plot(curve.index, curve["observed"], color="k", label="observed")
        ax.plot(curve.index, curve["simulated"], color="C0", ls="--", label="simulated at the estimate (mean)")
        ax.fill_between(curve.index, curve["simulated_min"], curve["simulated_max"], color="C0", alpha=0.2,
                        label="simulated, range over replications")
        if "bgnbd" in curve:
            ax.plot(curve.index, curve["bgnbd"], color="C1", ls=":", label="BG/NBD fitted on the same weeks")
        ax.axvline(t.weeks, color="0.5", ls=":", lw=1)
        ax.text(t.weeks, ax.get_ylim()[1] * 0.97, " end of calibration", va="top", fontsize=9, color="0.3")
        ax.set_xlabel("week")
        ax.set_ylabel("cumulative repeat transactions per customer")
        ax.set_title(f"Calibration {fit.calibration.name}: tracking the cohort's repeat purchases")
        ax.legend(loc="lower right", frameon=False)  # the curves rise from the lower left: that corner is free
        fig.tight_layout()
        path = folder / "tracking.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        out.append(path)
    return out


def text_writer(folder: Path, written: list[Path]):
    """``put(name, text)``: write a text file into ``folder`` whole or not at all (a temporary file renamed over
    it), and append its path to ``written``."""

    def put(name: str, text: str) -> None:
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)

    return put


def write_fit(fit: Fit, folder: Path | str) -> list[Path]:
    """Write every output of a calibration into ``folder`` (see the module's docstring); return the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bench = benchmark(fit)
    curve = tracking(fit, bench)
    written: list[Path] = []
    put = text_writer(folder, written)
    put("calibrated.toml", calibrated_scenario(fit))
    put("fit.md", markdown(fit, curve, bench))
    put("parameters.csv", fit.parameters().to_csv())
    put("targets.csv", fit.targets().to_csv())
    put("jacobian.csv", fit.jacobian.to_csv())
    put("evaluations.csv", fit.evaluation_table().to_csv(index=False))
    if fit.bootstrap is not None:
        put("bootstrap.csv", fit.bootstrap.to_csv(index=False))
    if curve is not None:
        put("tracking.csv", curve.to_csv())
    if bench is not None:
        put("bgnbd_histogram.csv", bench.histogram.to_csv())
    written += figures(fit, curve, folder / "figures")
    return written
