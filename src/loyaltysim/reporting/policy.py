"""A policy search's outputs: the chosen policy as a scenario, the evidence for it, every candidate, and figures.

:func:`write_optimum` writes into ``OUT/<name>/``:

* ``policy.toml``: the scenario file as given with each lever set to the chosen value; ``loyaltysim run`` takes it;
* ``optimise.md``: the chosen levers, the objective against the reference's with the paired difference's 95%
  interval, 5th-95th percentiles and the probability of doing worse (on the search's seeds and on the
  confirmation's fresh seeds), the risk limit, and the best candidates;
* ``summary.csv`` and ``evaluations.csv`` (every candidate: stage, which local search, levers, mean objective, its
  spread, probability of doing worse than the reference, whether within the risk limit);
* ``figures/search.png``: the search's history (each candidate's mean objective in the order evaluated, those over
  the risk limit marked, the reference's mean as a line) and each lever's candidates against their objective.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from loyaltysim.experiments.optimise import Optimum
from loyaltysim.reporting.fit import scenario_text, shown_path, text_writer
from loyaltysim.reporting.report import describe_outcome


def _fmt(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1e3 else f"{x:.4g}"


def policy_scenario(opt: Optimum) -> str:
    """The scenario file's text with each lever set to the chosen value."""
    policy = opt.policy
    scenario_path = (policy.path.parent / policy.spec.scenario).resolve()
    head = [f"# {shown_path(scenario_path)} with the levers {shown_path(policy.path)} chose by loyaltysim optimise",
            "# (optimise.md beside this file gives the evidence):"]
    head += [f"#   {lever.path} = {opt.levers[lever.name]!r}" for lever in policy.spec.levers]
    return scenario_text(scenario_path, {lever.path: lever.factor().written(opt.levers[lever.name])
                                         for lever in policy.spec.levers}, head)


def markdown(opt: Optimum) -> str:
    s = opt.policy.spec
    currency = opt.policy.base.economics.currency
    summary = opt.summary()
    table = opt.evaluation_table()
    goal = "lowest" if s.minimise else "highest"
    reference = (", ".join(f"`{k}` = {v!r}" for k, v in s.reference.items()) if s.reference
                 else "the scenario as written")
    lines = [f"# Policy search {s.name}", "",
             f"The {goal} mean `{s.objective}` ({describe_outcome(s.objective, currency)}) over the levers' bounds, in "
             f"`{shown_path((opt.policy.path.parent / s.scenario).resolve())}`, against the reference ({reference}); "
             f"each candidate over {s.replications} replications on the reference's seeds (root seed "
             f"{s.root_seed}); {len(opt.evaluations)} candidates evaluated "
             f"({int((table['stage'] == 'initial').sum())} of a Sobol' design, "
             f"{int((table['stage'] == 'local').sum())} of {s.search.starts} Nelder-Mead search(es)); "
             f"{opt.new_runs} runs made, {opt.reused_runs} found stored.", ""]
    if s.risk_limit is not None:
        lines += [f"Risk limit: a candidate may do worse than the reference in at most {s.risk_limit:.0%} of the "
                  f"replications; {int(table['admissible'].sum())} of {len(table)} candidates were within it.", ""]
    lines += ["## The chosen policy", "", "| lever | value | bounds |", "|---|---:|---|"]
    for lever in s.levers:
        unit = f" {lever.unit}" if lever.unit else ""
        lines.append(f"| {lever.name} (`{lever.path}`) | {_fmt(float(opt.levers[lever.name]))}{unit} | "
                     f"[{_fmt(lever.bounds[0])}, {_fmt(lever.bounds[1])}] |")
    if not opt.admissible(opt.best):
        lines += ["", "**No candidate was within the risk limit**, so the limit says: keep the reference. This is the "
                  "least risky candidate found (more replications make the risk estimate finer: with "
                  f"{s.replications}, a candidate's risk moves in steps of {1 / s.replications:.0%})."]
    lines += ["", "| seeds | runs | objective (95% interval) | reference | difference (95% interval) | "
              "5th-95th percentile | P(worse) |", "|---|---:|---|---:|---|---|---:|"]
    for label, row in summary.iterrows():
        lines.append(f"| {label} | {row['replications']:.0f} | {_fmt(row['objective'])} "
                     f"[{_fmt(row['objective_low'])}, {_fmt(row['objective_high'])}] | {_fmt(row['reference'])} | "
                     f"{_fmt(row['difference'])} [{_fmt(row['difference_low'])}, {_fmt(row['difference_high'])}] | "
                     f"[{_fmt(row['p05'])}, {_fmt(row['p95'])}] | {row['p_worse']:.2f} |")
    if "confirmation" in summary.index:
        lines += ["", "The search picked the best of many candidates on the same seeds, which flatters it; the "
                  f"confirmation row re-runs the chosen policy and the reference on {s.confirm} fresh seeds: decide "
                  "on that row."]
    else:
        lines += ["", "No confirmation on fresh seeds was run (`confirm = 0`): the search's own row flatters the "
                  "chosen policy (it is the best of many candidates on the same seeds)."]
    best = table.sort_values("score").head(5)
    lines += ["", "## The best candidates", "",
              "| evaluation | " + " | ".join(lever.name for lever in s.levers) + " | mean objective | P(worse) | "
              "within the limit |", "|---:|" + "---:|" * len(s.levers) + "---:|---:|---|"]
    for _, row in best.iterrows():
        lines.append(f"| {row['evaluation']:.0f} | " + " | ".join(_fmt(float(row[lever.name])) for lever in s.levers)
                     + f" | {_fmt(row['objective'])} | {row['p_worse']:.2f} | {'yes' if row['admissible'] else 'no'} |")
    return "\n".join(lines) + "\n"


def figure(opt: Optimum, folder: Path) -> Path:
    """The search's history and each lever's candidates against their mean objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = opt.policy.spec
    table = opt.evaluation_table()
    k = len(s.levers)
    fig, axes = plt.subplots(1, 1 + k, figsize=(4.2 * (1 + k), 4.0), layout="constrained", squeeze=False)
    ax = axes[0, 0]
    ok = table["admissible"].to_numpy(bool)
    ax.plot(table["evaluation"], table["objective"], color="0.75", lw=0.8, zorder=1)
    ax.scatter(table["evaluation"][ok], table["objective"][ok], color="C0", s=18, zorder=2, label="within the limit")
    if (~ok).any():
        ax.scatter(table["evaluation"][~ok], table["objective"][~ok], color="C3", marker="x", s=22, zorder=2,
                   label="over the risk limit")
    ax.axhline(float(np.mean(opt.reference)), color="k", ls=":", lw=1, label="reference")
    ax.scatter([opt.best.index + 1], [opt.best.mean["objective"]], s=110, facecolors="none", edgecolors="k",
               zorder=3, label="chosen")
    ax.set_xlabel("candidate, in the order evaluated")
    label = describe_outcome(s.objective, opt.policy.base.economics.currency)
    ax.set_ylabel(textwrap.fill(f"mean over replications of {label}", 40), fontsize="small")
    ax.set_title("Search history", fontsize="medium")
    ax.legend(fontsize="small", frameon=False)
    for j, lever in enumerate(s.levers):
        ax = axes[0, 1 + j]
        ax.scatter(table[lever.name][ok], table["objective"][ok], color="C0", s=18)
        if (~ok).any():
            ax.scatter(table[lever.name][~ok], table["objective"][~ok], color="C3", marker="x", s=22)
        ax.axvline(float(opt.levers[lever.name]), color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"{lever.name}" + (f" ({lever.unit})" if lever.unit else ""))
        ax.set_title(textwrap.fill(f"Candidates by {lever.name}", 28), fontsize="medium")
    fig.suptitle(f"Policy search {s.name}", fontsize="large")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "search.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_optimum(opt: Optimum, folder: Path | str) -> list[Path]:
    """Write every output of a policy search into ``folder`` (see the module's docstring); return the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    put = text_writer(folder, written)
    put("policy.toml", policy_scenario(opt))
    put("optimise.md", markdown(opt))
    put("summary.csv", opt.summary().to_csv())
    put("evaluations.csv", opt.evaluation_table().to_csv(index=False))
    written.append(figure(opt, folder / "figures"))
    return written

