"""The ``loyaltysim`` command: a thin layer over the library.

Heavy imports (numpy, pandas, Mesa, SQLModel) happen inside the commands, so ``loyaltysim --help`` answers
fast. User errors (a bad scenario, an unwritable directory, an unreachable database) print one readable
message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from loyaltysim.version import __version__

app = typer.Typer(
    name="loyaltysim",
    help="Agent-based simulation of customer loyalty, loyalty programmes and win-back, on Mesa.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

USER_ERROR = 2


class ExecutorChoice(StrEnum):
    """Where ``sweep`` computes its runs."""

    local = "local"
    dask = "dask"


LEFT_TO_ANOTHER_SWEEP = 75  # sysexits' EX_TEMPFAIL: nothing failed, but not every run is stored yet; try again later


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USER_ERROR)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loyaltysim {__version__}")
        raise typer.Exit()


class LogLevel(StrEnum):
    """How much of what a command does is logged (``--log-level``)."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | None = None, verbose: int = 0, log_file: Path | None = None) -> int:
    """Send the package's log records (``logging.getLogger("loyaltysim")`` and below) to stderr, and to ``log_file``
    if given; return the level. The level is ``level`` if given, else INFO with one ``-v`` and DEBUG with two, else
    WARNING (what a command prints already is not repeated). A log file holds at least INFO (a long sweep's runs,
    rate and stops, to follow and diagnose it afterwards). On a terminal stderr gets a rich handler, which leaves out
    the records of progress a progress bar shows there already (a sweep's, marked ``progress``: see
    :class:`loyaltysim.experiments.sweep._RunLog`); a log file still gets them. Only the command configures
    logging: the library logs to its loggers and leaves handlers to the program using it."""
    import logging

    chosen = (getattr(logging, level.upper()) if level else
              logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING)
    logger = logging.getLogger("loyaltysim")
    for handler in [h for h in logger.handlers if getattr(h, "_loyaltysim_cli", False)]:
        logger.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        console = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
        console.addFilter(_not_progress)  # the progress bar on the same terminal shows it: once is enough
    else:
        console = _stderr_handler()
        console.setFormatter(logging.Formatter(LOG_FORMAT))
    console.setLevel(chosen)
    handlers.append(console)
    if log_file is not None:
        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as err:
            _fail(f"cannot write the log file '{log_file}': {err.strerror or err}")
        to_file.setFormatter(logging.Formatter(LOG_FORMAT))
        to_file.setLevel(min(chosen, logging.INFO))
        handlers.append(to_file)
    for handler in handlers:
        handler._loyaltysim_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(min(h.level for h in handlers))
    return chosen


def _not_progress(record) -> bool:
    """Whether a log record is not one of progress (those a sweep marks ``progress``, which its bar shows)."""
    return not getattr(record, "progress", False)


def _stderr_handler():
    """A stream handler writing to whatever ``sys.stderr`` is when a record is emitted (a test's capture, say);
    defined when first used, so that ``--help`` does not import logging."""
    import logging

    class StderrHandler(logging.StreamHandler):
        def __init__(self) -> None:
            super().__init__()

        @property
        def stream(self):  # type: ignore[override]
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    return StderrHandler()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help=(
        "Log what the command does on stderr: -v what a sweep or calibration does (runs submitted, finished, "
        "failed, resumed; rate and time per run; the code version workers must run), -vv every run."))] = 0,
    log_level: Annotated[LogLevel | None, typer.Option(
        "--log-level", case_sensitive=False, help="Log from this level up (overrides -v). Default: warning.")] = None,
    log_file: Annotated[Path | None, typer.Option(
        "--log-file", dir_okay=False, help="Also append the log to this file (at least from info up).")] = None,
) -> None:
    """Agent-based simulation of customer loyalty, loyalty programmes and win-back, on Mesa."""
    configure_logging(log_level.value if log_level else None, verbose, log_file)


class _StepBar:
    """A progress bar of simulated steps on stderr when it is a terminal (nothing otherwise): ``with _StepBar(label,
    total) as on_step`` gives the callback to call after each step (None off a terminal)."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.bar = label, total, None

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        task = self.bar.add_task(self.label, total=self.total)
        self.bar.start()
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


TERMINAL_WIDTH = 80  # tables are laid out for this width when stdout is not a terminal (a log, a pipe)


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else TERMINAL_WIDTH)


def _load(path: Path):
    from .scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as err:
        _fail(str(err))


@app.command()
def validate(scenario: Annotated[Path, typer.Argument(help="Scenario, experiment or policy file (TOML).")]) -> None:
    """Check a scenario file, or an experiment or policy file (and its scenario), and list every problem found."""
    kind = _file_kind(scenario)
    if kind == "targets":
        _fail(f"{scenario}: a calibration targets file, not a scenario or an experiment: it is checked against its "
              f"scenario when `loyaltysim calibrate SCENARIO --targets {scenario}` starts")
    if kind == "policy":
        from loyaltysim.experiments.optimise import load_policy
        from loyaltysim.scenario import ScenarioError

        try:
            policy = load_policy(scenario)
        except ScenarioError as err:
            _fail(str(err))
        typer.echo(f"{scenario}: valid (policy search '{policy.name}', {len(policy.spec.levers)} lever(s), "
                   f"objective {policy.spec.objective}; scenario {policy.spec.scenario})")
        return
    if kind == "experiment":
        e = _load_experiment(scenario)
        typer.echo(f"{scenario}: valid (experiment '{e.name}', {len(e.design)} design point(s) x "
                   f"{e.replications} replication(s), {len(e.outcomes)} outcome(s); scenario {e.spec.scenario})")
        return
    s = _load(scenario)
    firms = len(s.market.firms)
    typer.echo(f"{scenario}: valid (scenario '{s.name}', {firms} firm{'' if firms == 1 else 's'}, "
               f"{s.market.customers.population} customers, {s.steps()} {s.time.step}s)")


@app.command()
def diff(
    base: Annotated[Path, typer.Argument(help="The market compared against (a scenario file), e.g. the baseline.")],
    other: Annotated[Path, typer.Argument(help="A scenario file, or an experiment file (each of its design "
                                                "points is compared).")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown tables to paste into a write-up: "
                                           "the shared differences with a 'why' column to fill in, then what the "
                                           "experiment's arms vary.")] = False,
) -> None:
    """List every setting in which OTHER's market differs from BASE's (defaults written out on both sides), with
    what kind of setting it is (run, structure, demand, psychology, survey, policy, economics).

    For an experiment, the differences all its design points share come first, then each point's own.
    """
    from rich.table import Table

    from loyaltysim.experiments import differences as dif
    from loyaltysim.experiments.differences import common_differences, differences, experiment_differences, shown

    reference = _load(base)
    if markdown:
        typer.echo(dif.markdown(reference, _load_experiment(other) if _file_kind(other) == "experiment"
                                else _load(other)))
        return
    console = _console()

    def show(title: str, diffs: list) -> None:
        if not diffs:
            console.print(f"{title}: no differences", overflow="fold")
            return
        table = Table(title=title, title_justify="left", expand=True)
        table.add_column("setting", overflow="fold", ratio=3)
        table.add_column("base", overflow="fold", ratio=2)
        table.add_column("other", overflow="fold", ratio=2)
        table.add_column("kind", overflow="fold", ratio=1)
        for d in diffs:
            table.add_row(d.label, shown(d.base), shown(d.other), d.kind)
        console.print(table)

    if _file_kind(other) != "experiment":
        show(f"{other} (other) against {base} (base)", differences(reference, _load(other)))
        return
    by_point = experiment_differences(reference, _load_experiment(other))
    shared = common_differences(by_point)
    show(f"every design point of {other} (other) against {base} (base)", shared)
    keys = {(d.path, repr(d.base), repr(d.other)) for d in shared}
    if len(by_point) > 1:
        for label, diffs in by_point.items():
            show(f"{label}: besides those", [d for d in diffs if (d.path, repr(d.base), repr(d.other)) not in keys])


# top-level keys that only an experiment file has, and those of a calibration targets file (a scenario has neither)
EXPERIMENT_KEYS = ("scenario", "outcomes", "factors", "design", "reference", "risk", "figures", "findings",
                   "replications", "root_seed", "population", "horizon", "warmup")
TARGETS_KEYS = ("parameters", "search", "moments", "transactions")
POLICY_KEYS = ("levers", "objective", "risk_limit", "confirm")


def _file_kind(path: Path) -> str:
    """What a file reads as: "experiment" (experiment keys and no market or policy of its own), "targets" (a
    calibration targets file), "policy" (a policy search's file) or "scenario" (anything else; a file that cannot
    be read is left to the scenario check to report)."""
    from .scenario import read_toml

    try:
        data = read_toml(path, "a scenario or experiment file (.toml)")
    except ValueError:
        return "scenario"
    if "market" in data or "policy" in data:
        return "scenario"
    if any(k in data for k in POLICY_KEYS):
        return "policy"
    if any(k in data for k in TARGETS_KEYS):
        return "targets"
    return "experiment" if any(k in data for k in EXPERIMENT_KEYS) else "scenario"


@dataclass
class _Replay:
    """What a run's manifest fixes: the effective scenario, the seed and an experiment run's fields."""

    scenario: Any
    seed: int
    spawn_key: tuple[int, ...]
    key: str | None
    experiment: str | None
    outcomes: list[str]
    extra: dict[str, Any] | None


def _load_manifest(path: Path) -> _Replay:
    from .scenario import ScenarioError, read_text_file, scenario_from_dict

    try:
        manifest = json.loads(read_text_file(path, "a run's manifest.json (runs/<key16>/manifest.json)"))
    except ValueError as err:  # json.JSONDecodeError is one too
        prefix = "malformed JSON: " if isinstance(err, json.JSONDecodeError) else ""
        _fail(f"{path}: {prefix}{err}")
    except RecursionError:
        _fail(f"{path}: malformed JSON: nested too deeply")
    seed = manifest.get("seed") if isinstance(manifest, dict) else None
    entropy = seed.get("entropy") if isinstance(seed, dict) else None
    spawn_key = seed.get("spawn_key", []) if isinstance(seed, dict) else None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("scenario"), dict) \
            or not isinstance(entropy, int) or isinstance(entropy, bool) or entropy < 0 \
            or not isinstance(spawn_key, list) or not all(isinstance(k, int) and k >= 0 for k in spawn_key):
        _fail(f"{path}: not a run manifest: it needs 'scenario' (a table), 'seed.entropy' (an integer >= 0) and "
              "'seed.spawn_key' (a list of integers >= 0); give runs/<key16>/manifest.json")
    try:
        scenario = scenario_from_dict(manifest["scenario"], source=f"{path}: scenario")
    except ScenarioError as err:
        _fail(str(err))
    outcomes = manifest.get("outcomes")
    names = list(outcomes) if isinstance(outcomes, dict) else []
    fields = {k: manifest[k] for k in ("experiment", "design", "replication") if k in manifest}
    return _Replay(scenario, entropy, tuple(spawn_key), manifest.get("run_key"), manifest.get("experiment"), names,
                   fields or None)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(
        help="Scenario file (TOML), or a stored run's manifest.json or folder (OUT/runs/<key16>/) to replay "
             "that run with its own scenario, seed and spawn key.")],
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed of the run's random streams [default: 1; "
                                                         "not with a manifest, which fixes the seed].")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the horizon, in model steps.")] = None,
    out: Annotated[Path, typer.Option(help="Output root: run folders go under OUT/runs/.")] = Path("results"),
    db: Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                "sqlite:///OUT/registry.sqlite).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the summary, as JSON, on stdout.")] = False,
    force: Annotated[bool, typer.Option(help="Re-run even if this exact run is already stored.")] = False,
) -> None:
    """Run one simulation (or replay a stored one from its manifest), store it, and print a summary."""
    replay = None
    if scenario.is_dir() and (scenario / "manifest.json").is_file():  # a run folder: replay its manifest
        scenario = scenario / "manifest.json"
    if scenario.suffix.lower() == ".json":
        if seed is not None:
            _fail("--seed cannot be combined with a manifest: the manifest fixes the seed (and spawn key)")
        replay = _load_manifest(scenario)
        spec = replay.scenario
    else:
        spec = _load(scenario)  # before the heavy imports: a bad file is reported at once

    from loyaltysim.experiments.run import execute_run
    from loyaltysim.experiments.storage import StorageError, resolve_db_url

    from .scenario import ScenarioError

    try:
        if steps is not None:
            spec = spec.with_overrides(steps=steps)
        with _StepBar(f"run {spec.name}", spec.steps()) as on_step:
            if replay is None:
                stored = execute_run(spec, seed=1 if seed is None else seed, out_root=out,
                                     db_url=resolve_db_url(db, out.resolve()), force=force, on_step=on_step)
            else:
                stored = execute_run(spec, seed=replay.seed, spawn_key=replay.spawn_key, out_root=out,
                                     db_url=resolve_db_url(db, out.resolve()), force=force,
                                     experiment=replay.experiment, outcomes=replay.outcomes, extra=replay.extra,
                                     on_step=on_step)
    except (ScenarioError, StorageError) as err:
        _fail(str(err))
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was stored for this run", err=True)
        raise typer.Exit(130) from None
    if stored.damaged:
        typer.echo(f"note: the stored copy of this run was not reused ({stored.damaged}); it was run again",
                   err=True)
    if replay is not None and steps is None and replay.key and replay.key != stored.key:
        typer.echo(f"note: this run's key differs from the manifest's ({replay.key[:16]}): the code is not the "
                   "code that made it, so it is stored as a new run", err=True)
    if as_json:
        typer.echo(json.dumps({"run_key": stored.key, "run_dir": str(stored.run_dir), **stored.summary},
                              indent=2))
        return
    _print_summary(stored, spec)


def _load_experiment(path: Path):
    from loyaltysim.experiments.design import ExperimentError, load_experiment

    try:
        return load_experiment(path)
    except ExperimentError as err:
        _fail(str(err))


@app.command()
def sweep(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (TOML).")],
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: the number of CPUs).")]
    = None,
    out: Annotated[Path, typer.Option(help="Output root: run folders go under OUT/runs/.")] = Path("results"),
    db: Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                "sqlite:///OUT/registry.sqlite).")] = None,
    executor: Annotated[ExecutorChoice | None, typer.Option(
        help="Where the runs are computed: 'local', a process pool of --workers processes; 'dask', a Dask cluster "
             "(one of --workers processes on loopback, or the one at --scheduler; needs the 'dask' extra). Default: "
             "local, or dask with --scheduler.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Address of a running Dask scheduler (as `dask scheduler` prints it, e.g. tcp://HOST:8786): the runs go "
             "to its workers. The output root must then be shared storage, at the same path on every machine.")]
    = None,
) -> None:
    """Run every design point x replication of an experiment in parallel and store each run.

    Runs already stored are skipped, so after an interruption the same command completes the rest. Runs another
    sweep on the same registry is computing are left to it. Exits 1 if a run failed (failures are recorded in the
    registry), a worker died or the registry stayed unreachable beyond its retry bound; 75 if runs were left to
    another sweep that is still computing them; 130 when interrupted.
    """
    exp = _load_experiment(experiment)  # a bad file is reported before anything starts
    _check_executor(executor, scheduler, workers)
    kind = executor.value if executor is not None else ("dask" if scheduler else "local")

    from loyaltysim.experiments.storage import StorageError, resolve_db_url
    from loyaltysim.experiments.sweep import SweepBroken, SweepDatabaseLost, SweepInterrupted, run_sweep

    db_url = resolve_db_url(db, out.resolve())
    factory, remote = None, None
    if kind == "dask":
        try:
            from loyaltysim.experiments import cluster
        except ImportError as err:
            _fail(f"--executor dask needs the 'distributed' package ({err}): pip install 'loyaltysim[dask]'")
        if scheduler:
            try:
                remote = cluster.connect(scheduler)
            except cluster.ClusterError as err:
                _fail(str(err))
            workers = max(1, remote.worker_slots())
            factory = lambda: remote  # noqa: E731
        else:
            workers = workers or os.cpu_count() or 1
            factory = lambda: cluster.local_cluster(workers)  # noqa: E731  (started only if there are runs to do)
    try:
        result = run_sweep(exp, out, db_url, workers=workers, executor_factory=factory)
    except StorageError as err:
        _fail(str(err))
    except SweepInterrupted as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(130) from None
    except (SweepBroken, SweepDatabaseLost) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    finally:
        if remote is not None:  # a sweep with nothing to compute never used it
            remote.shutdown(wait=False)
    if result.failed:
        first = result.failed[0].error.splitlines()[0] if result.failed[0].error else "?"
        typer.echo(f"sweep {exp.name}: {len(result.failed)} of {result.total} runs failed (recorded in the "
                   f"registry with status 'failed'); first error: {first}; fix the cause and run the same "
                   "command to re-run them", err=True)
        raise typer.Exit(1)
    if result.elsewhere:
        sweeps = ", ".join(sorted(set(result.elsewhere.values())))
        typer.echo(f"sweep {exp.name}: {result.reused + result.stored} of {result.total} runs stored "
                   f"({result.stored} new); {result.elsewhere_runs} runs are being computed by another sweep "
                   f"({sweeps}); run the same command afterwards to check all are stored", err=True)
        raise typer.Exit(LEFT_TO_ANOTHER_SWEEP)
    typer.echo(f"sweep {exp.name}: {result.total} runs stored under {result.out_root / 'runs'} "
               f"({result.stored} new, {result.reused} already stored); "
               f"next: loyaltysim report {experiment}" + (f" --out {out}" if out != Path("results") else ""))


@app.command()
def report(
    experiment: Annotated[Path, typer.Argument(
        help="Experiment file (TOML), the one given to sweep. The run keys are recomputed from it, so only the "
             "runs this experiment makes with the current code are reported, never those of another code "
             "version or settings.")],
    out: Annotated[Path, typer.Option(help="Output root of the sweep; the report goes to OUT/<experiment name>/.")]
    = Path("results"),
    db: Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                "sqlite:///OUT/registry.sqlite).")] = None,
    partial: Annotated[bool, typer.Option(help="Report on the stored runs even if some are missing.")] = False,
    xlsx: Annotated[bool, typer.Option(help="Also write the summary, differences and per-run results as sheets of "
                                            "an Excel workbook, OUT/<experiment>/<experiment>.xlsx.")] = False,
    compare: Annotated[str | None, typer.Option(help="'all': also compare every pair of design points "
                                                     "(comparisons.csv/.md), not only each against the reference.")]
    = None,
) -> None:
    """Tables (summary, paired differences) and figures of an experiment's stored runs."""
    if compare not in (None, "all"):
        _fail(f"--compare {compare!r}: the only comparison on request is 'all' (every pair of design points)")
    exp = _load_experiment(experiment)

    from loyaltysim.experiments.storage import DB_ENV_VAR, StorageError, resolve_db_url
    from loyaltysim.reporting.report import ReportError, write_report

    db_url = resolve_db_url(db, out.resolve())
    default_db = out.resolve() / "registry.sqlite"
    runs = out.resolve() / "runs"
    has_runs = runs.is_dir() and any(not p.name.startswith(".") for p in runs.iterdir())
    if not db and not os.environ.get(DB_ENV_VAR, "").strip() and not default_db.is_file() and not has_runs:
        _fail(f"no results under '{out}' ({default_db} does not exist); run `loyaltysim sweep {experiment} "
              f"--out {out}` first, or give the sweep's --out or --db")
    try:
        result = write_report(exp, out, db_url, partial=partial, xlsx=xlsx, compare_all=compare == "all")
    except (ReportError, StorageError) as err:
        _fail(str(err))
    missing = f", {result.missing} missing" if result.missing else ""
    typer.echo(f"report {exp.name}: {result.runs} of {result.total} runs{missing}; written to {result.folder}")
    for path in result.paths:
        typer.echo(str(path))


registry_app = typer.Typer(help="The results registry: the index of the run folders.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("rebuild")
def registry_rebuild(
    out: Annotated[Path, typer.Option(help="Output root whose run folders (OUT/runs/) to index.")] = Path("results"),
    db: Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                "sqlite:///OUT/registry.sqlite).")] = None,
) -> None:
    """Record every complete run folder under OUT/runs/ in the registry (after the registry was lost or emptied;
    a sweep or report does it by itself when the registry is empty)."""
    from loyaltysim.experiments.storage import Registry, StorageError, rebuild_registry, resolve_db_url

    root = out.resolve()
    if not (root / "runs").is_dir():
        _fail(f"no run folders under '{out}' ({out / 'runs'} does not exist); give the --out of the runs")
    try:
        with Registry(resolve_db_url(db, root)) as registry:
            registry.check()
            recorded, skipped = rebuild_registry(root, registry)
    except StorageError as err:
        _fail(str(err))
    damaged = f"; {skipped} damaged or incomplete folder(s) skipped (a sweep runs them again)" if skipped else ""
    typer.echo(f"registry: {recorded} run(s) recorded from the run folders under {root / 'runs'}{damaged}")


data_app = typer.Typer(help="Public data sets to check a calibration on.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("cdnow")
def data_cdnow(
    cache: Annotated[Path | None, typer.Option(help="Folder for the files [default: $LOYALTYSIM_DATA/cdnow, else "
                                                    "~/.cache/loyaltysim/cdnow].")] = None,
    benchmark: Annotated[str | None, typer.Option(help="Also fit the BG/NBD on weeks 1-39 of 'sample' (2,357 "
                                                       "customers) or 'master' (23,570) and print its benchmark.")]
    = None,
) -> None:
    """Fetch the CDNOW transaction logs (from the lifetimes 0.11.3 wheel on PyPI, checked by SHA-256) into the
    cache folder and print where they are."""
    from loyaltysim.datasets import cdnow

    if benchmark is not None and benchmark not in cdnow.FILES:
        _fail(f"--benchmark {benchmark!r}: use one of {', '.join(cdnow.FILES)}")
    try:
        folder = cdnow.fetch(cache)
    except (cdnow.CDNOWUnavailable, ValueError, OSError) as err:
        _fail(str(err))
    for name, _ in cdnow.FILES.values():
        typer.echo(str(folder / name))
    if benchmark is not None:
        from loyaltysim.measures.bgnbd import benchmark as bgnbd_benchmark

        b = bgnbd_benchmark(cdnow.transactions(benchmark, folder), cdnow.CALIBRATION_WEEKS, cdnow.WEEKS)
        f = b.fit
        typer.echo(f"\nBG/NBD on weeks 1-{cdnow.CALIBRATION_WEEKS} of CDNOW {benchmark} ({f.customers} customers): "
                   f"r={f.r:.4f} alpha={f.alpha:.4f} a={f.a:.4f} b={f.b:.4f} log-likelihood={f.loglik:.2f}")
        typer.echo("repeat transactions in weeks 1-39   observed   BG/NBD")
        for label, row in b.histogram.iterrows():
            typer.echo(f"  {label:>3}{row.observed_share:38.1%}{row.bgnbd_share:9.1%}")
        typer.echo("cumulative repeat transactions      observed   BG/NBD   error")
        for week in (cdnow.CALIBRATION_WEEKS, 52, cdnow.WEEKS):
            row = b.tracking.loc[week]
            typer.echo(f"  week {week:<29}{row.observed:8.0f}{row.bgnbd:9.0f}{row.error:+8.1%}")
        typer.echo(f"mean absolute percentage error of the cumulative, weeks {cdnow.CALIBRATION_WEEKS + 1}-"
                   f"{cdnow.WEEKS}: {b.holdout_mape:.1%}")


@app.command("calibrate-check")
def calibrate_check(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).")],
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Number of seeds (1..N).")] = 3,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 if a measure misses its target.")] = False,
) -> None:
    """Compare model output with published magnitudes (churn, satisfaction, satisfied defectors, NBD; in a repertoire
    market, the NBD-Dirichlet's brand measures)."""
    from rich.table import Table

    from loyaltysim.experiments.calibration import TOP_BOX_SHARE, calibration_check

    spec = _load(scenario)
    with _StepBar(f"calibrate-check {spec.name}, {seeds} seed(s)", seeds * spec.steps()) as on_step:
        check = calibration_check(spec, list(range(1, seeds + 1)), on_step=on_step)
    report = check.report
    table = Table(title=f"{spec.name}: calibration over {seeds} seed(s), after the warm-up")
    for col in ("measure", "mean", "min", "max", "target", "ok"):
        table.add_column(col, justify="left" if col == "measure" else "right", no_wrap=col != "measure")
    for r in report.itertuples():
        ok = "-" if r.ok is None else ("yes" if r.ok else "NO")
        table.add_row(r.measure, f"{r.mean:.3f}", f"{r.min:.3f}", f"{r.max:.3f}", r.target, ok)
    console = _console()
    console.print(table)
    sources: dict[str, list[str]] = {}  # each source once, with the measures (per firm: the family) it backs
    for r in report.itertuples():
        if r.source:
            family = r.measure.split(", ")[0] if ", " in r.measure else r.measure
            names = sources.setdefault(r.source, [])
            if family not in names:
                names.append(family)
    if sources:  # below the table, so that it fits 80 columns
        console.print("Where the targets come from:")
        for source, names in sources.items():
            console.print(f"  {', '.join(names)}: {source}", highlight=False)
    console.print(f"Score 5's cutpoint for {TOP_BOX_SHARE:.0%} top-box answers in this market: "
                  f"{check.top_box_cutpoint:.4f} (the scenario's: {spec.market.survey.cutpoints[-1]:g})")
    if check.dirichlet is not None:
        console.print(_dirichlet_table(check, spec.time.step))
    elif check.dirichlet_skipped:
        console.print(check.dirichlet_skipped)
    arrivals = spec.market.customers.arrivals
    if arrivals.enabled:
        shares, period = arrivals.schedule()
        last = len(shares) * period.steps(spec.time.step)
        if last > spec.warmup_steps():
            console.print(f"Note: customers arrive until step {last}, after the warm-up ({spec.warmup_steps()} steps): "
                          "the measures mix customers in the market for different lengths of time, and the NBD fits "
                          "assume a population present throughout")
    if strict and (report["ok"] == False).any():  # noqa: E712 (None means "no target")
        raise typer.Exit(1)


# the options of the commands that run stored searches (calibrate, optimise)
WorkersOption = Annotated[int | None, typer.Option(min=1, help="Worker processes (default: the number of CPUs).")]
DbOption = Annotated[str | None, typer.Option(help="Registry database URL (default: $LOYALTYSIM_DB, else "
                                                   "sqlite:///OUT/registry.sqlite).")]
SearchExecutorOption = Annotated[ExecutorChoice | None, typer.Option(
    help="Where the runs are computed, as for sweep: 'local' (a process pool) or 'dask' (a local Dask cluster, or "
         "the one at --scheduler).")]
SchedulerOption = Annotated[str | None, typer.Option(
    help="Address of a running Dask scheduler; the output root must then be shared storage.")]


def _check_executor(executor: ExecutorChoice | None, scheduler: str | None, workers: int | None) -> None:
    """Refuse option combinations that cannot mean anything (before any file is read)."""
    kind = executor.value if executor is not None else ("dask" if scheduler else "local")
    if scheduler and kind != "dask":
        _fail("--scheduler names a Dask scheduler: use it with --executor dask (or without --executor)")
    if scheduler and workers is not None:
        _fail("--workers sizes a local pool or cluster; with --scheduler the runs go to the scheduler's workers "
              f"(start them with `dask worker {scheduler} --nthreads 1`)")


def _runner(executor: ExecutorChoice | None, scheduler: str | None, workers: int | None):
    """The executor a search keeps for all its runs (a Dask cluster's; None: a local process pool) and the number
    of runs it computes at once."""
    kind = executor.value if executor is not None else ("dask" if scheduler else "local")
    if kind != "dask":
        return None, workers
    try:
        from loyaltysim.experiments import cluster
    except ImportError as err:
        _fail(f"--executor dask needs the 'distributed' package ({err}): pip install 'loyaltysim[dask]'")
    try:
        runner = cluster.connect(scheduler) if scheduler else cluster.local_cluster(workers or os.cpu_count() or 1)
    except cluster.ClusterError as err:
        _fail(str(err))
    return runner, max(1, runner.worker_slots())


@contextmanager
def _stored_search(label: str, unit: str):
    """A search of stored runs (a calibration, a policy search) as a command ends it: a storage problem is one error
    line (exit 2), Ctrl-C says what is kept (exit 130), a failed run or a dead worker is one line (exit 1)."""
    from loyaltysim.experiments.search import SearchFailed
    from loyaltysim.experiments.storage import StorageError
    from loyaltysim.experiments.sweep import SweepBroken, SweepDatabaseLost, SweepInterrupted

    try:
        yield
    except StorageError as err:
        _fail(str(err))
    except SweepInterrupted:
        typer.echo(f"{label}: interrupted; every {unit} finished so far is stored, and the same command resumes "
                   "from there", err=True)
        raise typer.Exit(130) from None
    except (SweepBroken, SweepDatabaseLost, SearchFailed) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


@app.command()
def calibrate(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML) whose uncertain parameters are fitted.")],
    targets: Annotated[Path, typer.Option(help="Targets file (TOML): the parameters with their bounds, the "
                                               "summary moments and/or the transaction log to fit to, the search.")],
    workers: WorkersOption = None,
    out: Annotated[Path, typer.Option(help="Output root: run folders go under OUT/runs/, the fit under "
                                           "OUT/<targets name>/.")] = Path("results"),
    db: DbOption = None,
    executor: SearchExecutorOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Fit a scenario's uncertain parameters to a firm's targets by the simulated method of moments.

    Every evaluation is stored as runs in the registry, like a sweep's, so a stopped calibration resumes when the
    same command runs again. Writes the calibrated scenario, the fit against every target, the parameters'
    standard errors and intervals, every evaluation and figures under OUT/<targets name>/. Exits 1 if a run
    failed or a worker died, 130 when interrupted.
    """
    from loyaltysim.experiments.fitting import calibrate as fit_targets
    from loyaltysim.experiments.fitting import load_targets
    from loyaltysim.experiments.storage import resolve_db_url
    from loyaltysim.scenario import ScenarioError

    _check_executor(executor, scheduler, workers)
    try:
        cal = load_targets(targets, scenario)
    except ScenarioError as err:
        _fail(str(err))
    db_url = resolve_db_url(db, out.resolve())
    runner, workers = _runner(executor, scheduler, workers)
    k, r = len(cal.spec.parameters), cal.spec.replications
    typer.echo(f"calibrate {cal.name}: {k} parameter(s) to {len(cal.target)} moment(s); {cal.spec.search.initial} "
               f"initial points, up to {cal.spec.search.local} local, {2 * k} for the standard errors, each x {r} "
               "replication(s)", err=True)
    with _stored_search(f"calibrate {cal.name}", "evaluation"):
        fit = fit_targets(cal, out, db_url, workers=workers, executor=runner, stream=sys.stderr)

    from loyaltysim.reporting.fit import write_fit

    folder = out / cal.name
    written = write_fit(fit, folder)
    params = fit.parameters()
    for name, row in params.iterrows():
        interval = (f"95% interval [{row['low']:.4g}, {row['high']:.4g}]" if row["identified"]
                    else "not identified by the targets")
        typer.echo(f"{name} = {row['estimate']:.4g} ({interval})" + ("; on a bound" if row["at_bound"] else ""))
    z = fit.targets()["z"]
    typer.echo(f"{int((z.abs() <= 1.96).sum())} of {len(z)} moments within 1.96 standard errors of their targets; "
               f"{fit.new_runs} runs made, {fit.reused_runs} found stored")
    typer.echo(f"wrote {', '.join(p.name for p in written)} under {folder}")


@app.command()
def optimise(
    policy_file: Annotated[Path, typer.Argument(metavar="POLICY", help="Policy file (TOML): the scenario, the "
                                                "levers with their bounds, the objective, the risk limit, the "
                                                "search.")],
    workers: WorkersOption = None,
    out: Annotated[Path, typer.Option(help="Output root: run folders go under OUT/runs/, the result under "
                                           "OUT/<policy name>/.")] = Path("results"),
    db: DbOption = None,
    executor: SearchExecutorOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Search a firm's levers for the best expected objective (e.g. NPV) within a risk limit.

    Every candidate runs the reference policy's seeds (common random numbers); the chosen policy is re-run with the
    reference on fresh seeds for its interval. Every run is stored in the registry, so a stopped search resumes
    when the same command runs again. Writes the chosen policy as a scenario, the evidence, every candidate and a
    figure under OUT/<policy name>/. Exits 1 if a run failed or a worker died, 130 when interrupted.
    """
    from loyaltysim.experiments.optimise import load_policy
    from loyaltysim.experiments.optimise import optimise as search_policy
    from loyaltysim.experiments.storage import resolve_db_url
    from loyaltysim.scenario import ScenarioError

    _check_executor(executor, scheduler, workers)
    try:
        policy = load_policy(policy_file)
    except ScenarioError as err:
        _fail(str(err))
    db_url = resolve_db_url(db, out.resolve())
    runner, workers = _runner(executor, scheduler, workers)
    s = policy.spec
    typer.echo(f"optimise {policy.name}: {len(s.levers)} lever(s) for the {'lowest' if s.minimise else 'highest'} "
               f"mean {s.objective}; {s.search.initial} initial candidates, up to {s.search.local} local in each of "
               f"{s.search.starts} search(es), each x {s.replications} replication(s); {s.confirm} confirmation "
               "run(s)", err=True)
    with _stored_search(f"optimise {policy.name}", "candidate"):
        opt = search_policy(policy, out, db_url, workers=workers, executor=runner, stream=sys.stderr)

    from loyaltysim.reporting.policy import write_optimum

    folder = out / policy.name
    written = write_optimum(opt, folder)
    levers = ", ".join(f"{k} = {v:.4g}" for k, v in opt.levers.items())
    summary = opt.summary()
    row = summary.iloc[-1]
    typer.echo(f"chosen: {levers}" + ("" if opt.admissible(opt.best) else " (no candidate was within the risk limit)"))
    typer.echo(f"{s.objective}: {row['objective']:.6g} against the reference's {row['reference']:.6g}; difference "
               f"{row['difference']:.6g} [{row['difference_low']:.6g}, {row['difference_high']:.6g}], P(worse) "
               f"{row['p_worse']:.2f} ({summary.index[-1]} seeds, {row['replications']:.0f} runs)")
    typer.echo(f"{opt.new_runs} runs made, {opt.reused_runs} found stored; wrote "
               f"{', '.join(p.name for p in written)} under {folder}")


DEFAULT_DASHBOARD_SCENARIO = Path("experiments/scenarios/baseline.toml")


@app.command()
def dashboard(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML) the page starts from [default: the "
                                                  "contractual baseline, experiments/scenarios/baseline.toml].")]
    = DEFAULT_DASHBOARD_SCENARIO,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but a loopback address exposes the "
                                           "page to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    population: Annotated[int, typer.Option(min=1, help="Customers in the market (a classroom size keeps a step "
                                                        "quick).")] = 2000,
) -> None:
    """Serve the teaching dashboard: sliders for the market's and the focal firm's levers, classroom presets and
    live plots of shares, retention, satisfaction by Kano class, Jones & Sasser classes and ladder stages (needs
    the viz extra: pip install 'loyaltysim[viz]')."""
    import ipaddress
    import socket

    from .scenario import ScenarioError

    try:
        from loyaltysim.viz.dashboard import load_dashboard

        load_dashboard(scenario.resolve(), population)  # a bad file is reported here, in one message
    except ScenarioError as err:
        _fail(str(err))
    try:
        import mesa.visualization  # noqa: F401
        import solara  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        _fail(f"the dashboard needs the viz extra ({err.name} is not installed): pip install 'loyaltysim[viz]', or "
              "from a checkout: pip install -e '.[viz]'")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        typer.echo(f"warning: listening on {host}, not a loopback address: anyone who can reach this machine on port "
                   f"{port} can use the dashboard", err=True)
    try:  # a port in use, or an address this machine does not have, is told in one line before Solara starts
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        _fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
    from loyaltysim.viz.server import serve

    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"loyaltysim dashboard of {scenario} at http://{shown}:{port}/ (Ctrl-C to stop)", err=True)
    serve(scenario.resolve(), population, host, port)


def _dirichlet_table(check, step: str):
    """The Dirichlet benchmark of a calibration check: each brand's measures, observed beside the fitted model's."""
    import pandas as pd
    from rich.table import Table

    fits = check.fits
    title = (f"NBD-Dirichlet over the first {check.dirichlet_steps} {step}s after the warm-up (mean of "
             f"{len(fits)} seed(s)): M {fits['M'].mean():.2f}, K {fits['K'].mean():.2f}, S {fits['S'].mean():.2f} "
             f"(polarisation {fits['polarisation'].mean():.3f}); per buyer: purchases per buyer; brands: brands "
             "per buyer")
    table = Table(title=title)
    columns = (("share", "share", ".3f"), ("penetration", "penetration", ".3f"),
               ("frequency", "per buyer", ".2f"), ("scr", "SCR", ".3f"),
               ("brands_per_buyer", "brands", ".2f"))
    table.add_column("brand", justify="left", no_wrap=True)
    table.add_column("", justify="left", no_wrap=True)
    for _, label, _ in columns:
        table.add_column(label, justify="right", no_wrap=True)
    for row in check.dirichlet.to_dict("records"):  # two rows a brand, so that the table fits 80 columns
        for which, suffix in (("observed", ""), ("Dirichlet", "_dirichlet")):
            cells = []
            for key, _, spec in columns:
                value = row.get(f"{key}{suffix}")
                cells.append("" if value is None or pd.isna(value) else f"{value:{spec}}")
            table.add_row(row["brand"] if not suffix else "", which, *cells, end_section=bool(suffix))
    return table


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


SUMMARY_ROWS = (  # the run summary's measures of each firm: label, summary field, format
    ("customers at the end", "customers_end", "d"), ("share at the end", "share_end", ".1%"),
    ("annual churn", "annual_churn", ".1%"), ("mean satisfaction", "satisfaction_mean", "+.3f"),
    ("mean survey score", "score_mean", ".2f"), ("NPS", "nps_mean", "+.0f"),
    ("satisfied defectors", "satisfied_defector_share", ".0%"), ("revenue", "revenue", ",.0f"),
    ("profit", "profit", ",.0f"), ("NPV", "npv", ",.0f"))
MONEY_ROWS = ("revenue", "profit", "npv")  # labelled with the scenario's currency when it names one
FIRMS_PER_TABLE = 3  # a measure column and three firms fit 80 columns


def _print_summary(stored, scenario) -> None:
    """The run summary: one row per measure, one column per firm (three firms a table), so it fits 80 columns;
    money in the scenario's currency when it names one."""
    from rich.table import Table

    from .economics import size_factor

    s = stored.summary
    currency = scenario.economics.currency
    console = _console()
    title = (f"{s['scenario']}: {s['steps'] - s['warmup_steps']} {s['step']}s reported "
             f"(after {s['warmup_steps']} of warm-up)")
    firms = s["firms"]
    for start in range(0, len(firms), FIRMS_PER_TABLE):
        part = firms[start:start + FIRMS_PER_TABLE]
        table = Table(title=title if start == 0 else None)
        table.add_column("firm", justify="left")
        for f in part:
            table.add_column(f["firm"] + (" (focal)" if f["focal"] else ""), justify="right")
        for label, key, spec in SUMMARY_ROWS:
            if currency and key in MONEY_ROWS:
                label = f"{label} ({currency})"
            table.add_row(label, *(_fmt(f[key], spec) for f in part))
        console.print(table)
    factor = size_factor(scenario)
    if factor != 1.0:
        console.print(f"size-dependent money (fixed costs, marketing, investments, launch costs, campaign budgets) "
                      f"scaled x{factor:.4g}: {scenario.market.customers.population:,} customers, stated for "
                      f"{scenario.economics.reference_population:,} (economics.reference_population)")
    m = s["market"]
    causes = ", ".join(f"{k} {v}" for k, v in m["defection_causes"].items() if v)
    console.print(f"defections: {m['defections']} ({causes}); satisfied defectors (last score >= 4): "
                  f"{_fmt(m['satisfied_defector_share'], '.0%')}")
    # a path is not broken across lines, whatever its length: it is copied from here
    console.print(f"run {stored.key[:16]} {'reused from' if stored.reused else 'stored in'} {stored.run_dir}",
                  soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
