"""The ``loyaltysim`` command: a thin layer over the library.

Heavy imports (numpy, pandas, Mesa, SQLModel) happen inside the commands, so ``loyaltysim --help`` answers
fast. User errors (a bad scenario, an unwritable directory, an unreachable database) print one readable
message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="loyaltysim",
    help="Agent-based simulation of customer loyalty, loyalty programmes and win-back, on Mesa.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

USER_ERROR = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USER_ERROR)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loyaltysim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Agent-based simulation of customer loyalty, loyalty programmes and win-back, on Mesa."""


def _load(path: Path):
    from .scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as err:
        _fail(str(err))


@app.command()
def validate(scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")]) -> None:
    """Check a scenario file and list every problem found."""
    s = _load(scenario)
    typer.echo(f"{scenario}: valid (scenario '{s.name}', {len(s.market.firms)} firms, "
               f"{s.market.customers.population} customers, {s.steps()} {s.time.step}s)")


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    seed: Annotated[int, typer.Option(min=0, help="Root seed of the run's random streams.")] = 1,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the horizon, in model steps.")] = None,
    out: Annotated[Path, typer.Option(help="Output root: run folders go under OUT/runs/.")] = Path("results"),
    db: Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                "sqlite:///OUT/registry.sqlite).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the summary, as JSON, on stdout.")] = False,
    force: Annotated[bool, typer.Option(help="Re-run even if this exact run is already stored.")] = False,
) -> None:
    """Run one simulation, store it, and print a summary."""
    spec = _load(scenario)  # before the heavy imports: a bad file is reported at once

    from .run import execute_run
    from .scenario import ScenarioError
    from .storage import StorageError, resolve_db_url

    try:
        if steps is not None:
            spec = spec.with_overrides(steps=steps)
        stored = execute_run(spec, seed=seed, out_root=out, db_url=resolve_db_url(db, out.resolve()),
                             force=force)
    except (ScenarioError, StorageError) as err:
        _fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was stored for this run", err=True)
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps({"run_key": stored.key, "run_dir": str(stored.run_dir), **stored.summary},
                              indent=2))
        return
    _print_summary(stored)


@app.command("calibrate-check")
def calibrate_check(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Number of seeds (1..N).")] = 3,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 if a measure misses its target.")] = False,
) -> None:
    """Compare model output with published magnitudes (churn, satisfaction, satisfied defectors, NBD)."""
    from rich.console import Console
    from rich.table import Table

    from .calibration import calibration_report

    spec = _load(scenario)
    report = calibration_report(spec, list(range(1, seeds + 1)))
    table = Table(title=f"{spec.name}: calibration over {seeds} seed(s), after the warm-up")
    for col in ("measure", "mean", "min", "max", "target", "ok", "source"):
        table.add_column(col, justify="left" if col in ("measure", "source") else "right")
    for r in report.itertuples():
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        table.add_row(r.measure, f"{r.mean:.3f}", f"{r.min:.3f}", f"{r.max:.3f}", r.target, ok, r.source)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if strict and (report["ok"] == False).any():  # noqa: E712 (None means "no target")
        raise typer.Exit(1)


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _print_summary(stored) -> None:
    from rich.console import Console
    from rich.table import Table

    s = stored.summary
    console = Console(width=None if sys.stdout.isatty() else 150)
    title = (f"{s['scenario']}: {s['steps'] - s['warmup_steps']} {s['step']}s reported "
             f"(after {s['warmup_steps']} of warm-up)")
    table = Table(title=title)
    for col in ("firm", "customers", "share", "annual churn", "satisfaction", "mean score", "NPS",
                "satisfied defectors", "revenue", "profit", "NPV"):
        table.add_column(col, justify="left" if col == "firm" else "right")
    for f in s["firms"]:
        table.add_row(
            f["firm"] + (" (focal)" if f["focal"] else ""), str(f["customers_end"]), _fmt(f["share_end"], ".1%"),
            _fmt(f["annual_churn"], ".1%"), _fmt(f["satisfaction_mean"], "+.3f"), _fmt(f["score_mean"], ".2f"),
            _fmt(f["nps_mean"], "+.0f"), _fmt(f["satisfied_defector_share"], ".0%"), _fmt(f["revenue"], ",.0f"),
            _fmt(f["profit"], ",.0f"), _fmt(f["npv"], ",.0f"))
    console.print(table)
    m = s["market"]
    causes = ", ".join(f"{k} {v}" for k, v in m["defection_causes"].items() if v)
    console.print(f"defections: {m['defections']} ({causes}); satisfied defectors (last score >= 4): "
                  f"{_fmt(m['satisfied_defector_share'], '.0%')}")
    console.print(f"run {stored.key[:16]} {'reused from' if stored.reused else 'stored in'} {stored.run_dir}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
