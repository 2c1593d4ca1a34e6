"""Sweeps: every design point of an experiment times its replications, run in parallel, stored, resumable.

Replication ``r`` of every design point runs on ``SeedSequence(root_seed, spawn_key=(r,))``: **common random
numbers**. The model draws each named stream in full every step, so design points of one replication share the
population and every draw that their difference does not touch, and their paired differences are not drowned
in sampling noise.

Runs execute behind the :class:`concurrent.futures.Executor` interface (a process pool by default, with the
"spawn" start method, which is safe whatever threads the coordinator runs). A worker gets a small picklable
:class:`Task`, simulates, computes the outcomes, writes the run directory itself (atomically) and returns only
a small dict (:func:`run_task`, in :mod:`loyaltysim.experiments.worker`, which a worker imports instead of this
module and so never the registry's SQLAlchemy); only the coordinating process writes the registry, one row per
finished run, as the runs finish.
At most ``4 x workers`` runs are in flight (4 per slot of an executor that tells its own, e.g. a Dask cluster's
threads: :mod:`loyaltysim.experiments.cluster`), so a sweep of thousands of runs holds only a few futures; the
coordinator keeps the plan (a few kB a run: its key, labels and its design point's compressed scenario, shared by the
point's replications) and counts, never the runs' results, so its memory stays flat however many runs finish. A worker
refuses a run planned under other code than its own, or under an output root it does not see (a cluster's machines
must share it), and the coordinator records a run done only once it sees the run's folder.

A sweep is resumable: a run whose registry row is ``done`` and whose run directory is intact is skipped, and a run
whose directory was written but never recorded (its coordinator died, or lost its database) is recorded from it. On
Ctrl-C the coordinator cancels what is queued, stops the workers, records the runs a worker finished writing as
the stop came, and raises :class:`SweepInterrupted`; if a
worker dies, :class:`SweepBroken`; if the registry stays unusable beyond its retry bound, :class:`SweepDatabaseLost`.
Runs killed mid-write leave only a temporary directory (the run directory itself is renamed into place when
complete), which the next sweep on the same output root removes.

Before it submits a run the coordinator claims it in the registry (:meth:`Registry.claim_run`: a ``running`` row
naming this process); a run claimed by another live sweep on the same registry is left to it, so two sweeps on one
output root compute each run once. At its end a sweep looks once more at the runs it left: those stored since count
as stored, those whose claimant has gone it runs itself, and the rest are reported in :attr:`SweepResult.elsewhere`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from loyaltysim.experiments.design import Experiment
from loyaltysim.experiments.storage import (
    CodeIdentity,
    LeaseKeeper,
    Owner,
    Registry,
    RunRecord,
    StorageError,
    code_identity,
    host_tag,
    open_results,
    owner_alive,
    pid_alive,
    record_run_dir,
    run_dir_for,
    run_dir_problem,
    run_key_of_canonical,
)
from loyaltysim.experiments.worker import Task, _init_worker, run_task

# write_run_dir's temporary and moved-aside directories: .<key16>.tmp-<pid>-<hex>.<host> and .<key16>.old-...
# (<host>: storage.host_tag of the writer's host; folders of earlier versions have none and count as this host's)
_TEMP_DIR = re.compile(r"^\.[0-9a-f]{16}\.(?:tmp|old)-(\d+)-[0-9a-f]+(?:\.([0-9a-f]{8}))?$")
FOREIGN_TEMP_DIR_S = 24 * 3600.0  # a temporary folder of another host's writer is stale this long after its change
IN_FLIGHT_PER_WORKER = 4
LOG_EVERY_S = 30.0  # a running sweep logs its progress (runs done, rate) at most this often, and at every 10%

log = logging.getLogger(__name__)


def plan(experiment: Experiment, out_root: Path | str, code: CodeIdentity | None = None) -> list[Task]:
    """Every run of the experiment, replication by replication, each with its run key.

    A task holds its design point's compressed scenario (shared by the point's replications), so the plan of a
    sweep of 10,000 runs takes a few tens of megabytes."""
    code = code or code_identity()
    out = str(Path(out_root).resolve())
    outcomes = tuple(experiment.outcomes)
    replications = range(experiment.replications)
    keys, names = [], []  # per design point, its runs' keys by replication, and its scenario's name
    for point in experiment.design:
        text = point.canonical
        keys.append([run_key_of_canonical(text, experiment.root_seed, (r,), code) for r in replications])
        names.append(str(json.loads(text).get("name")))
    return [Task(keys[i][r], point.packed, experiment.root_seed, (r,), code, out, outcomes, experiment.name,
                 point.labels, point.index, r, names[i])
            for r in replications for i, point in enumerate(experiment.design)]


# --------------------------------------------------------------------------------------------------
# The coordinator
# --------------------------------------------------------------------------------------------------


class SweepInterrupted(Exception):
    """Ctrl-C: queued runs were cancelled and the workers stopped; the stored runs are kept."""

    def __init__(self, stored: int, total: int):
        self.stored, self.total = stored, total
        super().__init__(f"interrupted: {stored} of {total} runs stored; run the same command to resume")


class SweepDatabaseLost(Exception):
    """The registry stayed unusable beyond its retry bound (or failed for good): the sweep stopped. Runs whose
    folders were written but not recorded are recorded from their folders by the next sweep."""

    def __init__(self, stored: int | None, total: int, reason: str):
        self.stored, self.total, self.reason = stored, total, reason
        counted = f": {stored} of {total} runs stored" if stored is not None else ""
        super().__init__(f"{reason}{counted}; run the same command to resume")


class SweepBroken(Exception):
    """A worker process died (killed, out of memory): the runs it and the others had in hand are lost."""

    def __init__(self, stored: int, total: int, reason: str):
        self.stored, self.total, self.reason = stored, total, reason
        super().__init__(f"a worker process died ({reason}): {stored} of {total} runs stored; "
                         "run the same command to resume")


@dataclass
class FailedRun:
    key: str
    design: dict[str, str]
    replication: int
    error: str  # first line: "Type: message"; then the traceback


@dataclass
class SweepResult:
    experiment: str
    total: int  # runs in the experiment
    reused: int  # already stored before this sweep
    stored: int  # stored by this sweep
    failed: list[FailedRun] = field(default_factory=list)
    out_root: Path | None = None
    db_url: str = ""
    removed_temp_dirs: int = 0
    adopted: int = 0  # runs found written but not recorded, recorded from their folders (counted in reused)
    elsewhere: dict[str, str] = field(default_factory=dict)  # run key: the other sweep computing it ("pid P on H")
    elsewhere_runs: int = 0  # the runs of the experiment those keys stand for

    @property
    def complete(self) -> bool:
        return self.reused + self.stored == self.total


def remove_stale_temp_dirs(out_root: Path | str) -> int:
    """Remove temporary run directories left by writers that no longer exist (a run killed mid-write).

    Temporary directories carry their writer's process id and host; those of live processes of this host (e.g. a
    concurrent sweep into the same output root) are kept. A process of another host (a cluster's worker writing to
    a shared output root) cannot be seen from here: its folders are kept for :data:`FOREIGN_TEMP_DIR_S` after
    they last changed.
    """
    runs = Path(out_root) / "runs"
    removed = 0
    here = host_tag()
    with contextlib.suppress(FileNotFoundError):
        for entry in runs.iterdir():
            m = _TEMP_DIR.match(entry.name)
            if not m or not entry.is_dir():
                continue
            if m.group(2) in (None, here):
                stale = not pid_alive(int(m.group(1)))
            else:
                try:
                    stale = time.time() - entry.stat().st_mtime > FOREIGN_TEMP_DIR_S
                except OSError:
                    continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed += not entry.exists()
    return removed


def _stored_keys(registry: Registry, experiment: Experiment, tasks: list[Task],
                 out_root: Path) -> tuple[set[str], set[str], int]:
    """Keys of tasks already done (registry row ``done`` and an intact run directory: its manifest and every table,
    matching their digests), keys recorded done whose directory is damaged or incomplete (run again), and how
    many runs not recorded done were found written, complete and intact, and recorded now."""
    rows = registry.runs_by_key((t.key for t in tasks), ["status"])  # of any experiment name: the same run
    done, damaged, adopted = set(), set(), 0
    for t in tasks:
        if t.key in done or t.key in damaged:
            continue
        status = rows.get(t.key, (None,))[0]
        run_dir = run_dir_for(out_root, t.key)
        if status == "done":
            (done if run_dir_problem(run_dir) is None else damaged).add(t.key)
        elif run_dir.is_dir() and record_run_dir(registry, run_dir, t.key) is not None:
            done.add(t.key)
            adopted += 1
    return done, damaged, adopted


def _fmt_duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class _Progress:
    """A rich progress bar on a terminal; otherwise one line about every 10% of the runs."""

    def __init__(self, name: str, total: int, done: int, stream: TextIO | None):
        self.name, self.total, self.done, self.start_done = name, total, done, done
        self.stream = stream
        self.t0 = time.monotonic()
        self.bar = None
        self.step = max(1, -(-(total - done) // 10))
        self.next_line = done + self.step
        if stream is not None and stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.console = Console(file=stream)
            self.bar = Progress(TextColumn(f"sweep {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                                TimeElapsedColumn(), TextColumn("elapsed,"), TimeRemainingColumn(),
                                TextColumn("left"), console=self.console, transient=False)
            self.task_id = self.bar.add_task(name, total=total, completed=done)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def print(self, text: str) -> None:
        if self.stream is None:
            return
        if self.bar is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, runs: int = 1) -> None:
        self.done += runs
        if self.bar is not None:
            self.bar.advance(self.task_id, runs)
        elif self.stream is not None and (self.done >= self.next_line or self.done == self.total):
            while self.next_line <= self.done:
                self.next_line += self.step
            elapsed = time.monotonic() - self.t0
            rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            self.print(f"sweep {self.name}: {self.done}/{self.total} runs, {_fmt_duration(elapsed)} elapsed, "
                       f"~{_fmt_duration(left)} left")


def default_executor_factory(workers: int) -> Callable[[], Executor]:
    """A process pool of ``workers`` processes started with "spawn" (no global start method is set)."""

    def make() -> Executor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))

    return make


def _stop_executor(executor: Executor) -> None:
    """Stop at once: cancel what is queued and end the worker processes without waiting for their runs.

    A ProcessPoolExecutor's workers are ended here; a worker ended half-way through sending its result leaves half
    a message in the result pipe, and the pool's manager thread would wait for the rest forever (and the
    interpreter with it, at exit). Closing this process's copy of the pipe's write end, once no worker is left,
    turns that wait into an end-of-file, on which the pool cleans up as after any broken worker.
    """
    processes = list((getattr(executor, "_processes", None) or {}).values())  # a ProcessPoolExecutor's workers
    results = getattr(executor, "_result_queue", None)
    manager = getattr(executor, "_executor_manager_thread", None)
    _shutdown(executor, wait=False, cancel=True)
    for p in processes:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in processes:
        with contextlib.suppress(Exception):
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    if processes and results is not None:
        with contextlib.suppress(Exception):
            results._writer.close()
    if manager is not None:
        manager.join(10)


def _shutdown(executor: Executor, *, wait: bool, cancel: bool) -> None:
    """``executor.shutdown``, cancelling what is queued if ``cancel``: with ``cancel_futures`` where the executor takes
    it, else (e.g. Dask's ``ClientExecutor``, whose ``shutdown(wait=False)`` cancels every future itself) by
    cancelling each future the caller holds, as :func:`_execute` does, and shutting down without it."""
    if not cancel:
        executor.shutdown(wait=wait)
        return
    try:
        parameters = inspect.signature(executor.shutdown).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes = "cancel_futures" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if takes:
        executor.shutdown(wait=wait, cancel_futures=True)
    else:
        executor.shutdown(wait=wait)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a polite request to stop (kill, a scheduler)


class _StopRequests:
    """While a sweep executes, Ctrl-C and SIGTERM only ask it to stop; the sweep stops at its next safe point.

    A KeyboardInterrupt raised wherever the signal happens to land could interrupt the executor's own bookkeeping
    (say, half-way through taking its futures' locks) and leave its manager thread waiting forever, and with it
    the program at exit; or interrupt the recording of a run half-way. So the handlers only note the request, and
    the sweep's loop, which wakes several times a second, stops between two of its steps. Only the main thread
    can handle signals; elsewhere this does nothing (no signal reaches the loop).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            fallback = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler if handler is not None else fallback)

    @property
    def requested(self) -> bool:
        return self.signum is not None


STOP_POLL_S = 0.2  # how often the sweep's loop looks for a stop request while it waits for runs


def _row(task: Task, status: str = "running") -> RunRecord:
    """The registry row of a task, before its outcome is known."""
    code = task.code
    return RunRecord(key=task.key, experiment_name=task.experiment, scenario_name=task.name(),
                     seed_entropy=str(task.seed), spawn_key=json.dumps(list(task.spawn_key)), version=code.version,
                     commit=code.commit, dirty=code.dirty, status=status,
                     run_dir=str(run_dir_for(Path(task.out_root), task.key)),
                     summary_json=json.dumps(task.extra(), sort_keys=True))


def _record(registry: Registry, task: Task, outcome: dict[str, Any], owner: Owner) -> RunRecord:
    def when(key: str) -> datetime | None:
        value = outcome.get(key)
        return datetime.fromisoformat(value) if value else None

    code = task.code
    status = outcome["status"]
    summary = outcome.get("summary") if status == "done" else task.extra()
    row = RunRecord(key=task.key, experiment_name=task.experiment, scenario_name=task.name(),
                    seed_entropy=str(task.seed), spawn_key=json.dumps(list(task.spawn_key)), version=code.version,
                    commit=code.commit, dirty=code.dirty, status=status, error=outcome.get("error"),
                    started_at=when("started_at") or datetime.now(UTC), finished_at=when("finished_at"),
                    duration_s=outcome.get("duration_s"), run_dir=str(run_dir_for(Path(task.out_root), task.key)),
                    summary_json=json.dumps(summary, sort_keys=True), owner_host=owner.host, owner_pid=owner.pid,
                    owner_started_at=owner.started_at)
    return registry.upsert_run(row)


class _Claims:
    """This sweep's claims on its runs in the registry: which it may compute, and which another sweep computes."""

    def __init__(self, registry: Registry, out_root: Path, owner: Owner):
        self.registry, self.out_root, self.owner = registry, out_root, owner

    def replaceable(self, row: RunRecord) -> bool:
        """A row another process may take: failed, stored but damaged, or running for an owner that is gone."""
        if row.status == "running":
            return not owner_alive(row)
        return row.status == "failed" or run_dir_problem(run_dir_for(self.out_root, row.key)) is not None

    def claim(self, task: Task) -> RunRecord | None:
        """None when this sweep may compute the task, else the row in its way: done (stored meanwhile by another
        sweep), or running for another live sweep."""
        return self.registry.claim_run(_row(task), self.owner, self.replaceable)



def run_sweep(experiment: Experiment, out_root: Path | str, db_url: str, *, workers: int | None = None,
              executor_factory: Callable[[], Executor] | None = None, progress: bool = True,
              stream: TextIO | None = None) -> SweepResult:
    """Run every design point x replication of ``experiment`` not yet stored; store each run as it finishes.

    ``workers`` (default: the number of CPUs) sizes the default process pool and bounds the runs in flight
    (4 per worker). ``executor_factory`` (a callable returning a :class:`concurrent.futures.Executor`)
    replaces the process pool, e.g. by a thread pool or a cluster's executor; it must be able to run
    :func:`run_task` on :class:`Task` objects. Progress goes to ``stream`` (default stderr) unless
    ``progress`` is false.

    Raises :class:`StorageError` for an unwritable output root or an unusable database (before anything
    runs), :class:`SweepInterrupted` on Ctrl-C and :class:`SweepBroken` if a worker process dies. Failed
    runs do not raise: they are recorded (status "failed") and listed in the result.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    stream = (stream or sys.stderr) if progress else None
    out_root, registry = open_results(out_root, db_url)
    owner = Owner.this_process()
    try:
        with LeaseKeeper(registry, owner):
            return _sweep(experiment, out_root, db_url, registry, owner, workers, executor_factory, stream)
    finally:
        registry.close()


def _sweep(experiment: Experiment, out_root: Path, db_url: str, registry: Registry, owner: Owner, workers: int,
           executor_factory: Callable[[], Executor] | None, stream: TextIO | None) -> SweepResult:
    tasks = plan(experiment, out_root)
    try:
        registry.ensure_experiment(experiment.name, experiment.description)
        removed = remove_stale_temp_dirs(out_root)
        done, damaged, adopted = _stored_keys(registry, experiment, tasks, out_root)
    except StorageError as err:
        raise SweepDatabaseLost(None, len(tasks), str(err)) from None
    # design points with the same effective scenario share their runs: each key runs once
    copies = Counter(t.key for t in tasks)
    todo, queued = [], set(done)
    for t in tasks:
        if t.key not in queued:
            queued.add(t.key)
            todo.append(t)
    result = SweepResult(experiment.name, len(tasks), sum(copies[k] for k in done), 0, out_root=out_root,
                         db_url=db_url, removed_temp_dirs=removed, adopted=adopted)
    code = tasks[0].code if tasks else None
    log.info("sweep %s: %d runs (%d design point(s) x %d replication(s)); %d already stored (%d recorded from "
             "folders written but not recorded), %d stored but damaged or incomplete, %d to run; %d stale temporary "
             "folder(s) removed; output root %s", experiment.name, len(tasks), len(experiment.design),
             experiment.replications, result.reused, adopted, len(damaged), len(todo), removed, out_root)
    if code is not None:
        log.info("sweep %s: code loyaltysim %s, source digest %s, commit %s%s; workers refuse runs of other code",
                 experiment.name, code.version, code.source_digest[:12], (code.commit or "unknown")[:12],
                 " (uncommitted changes)" if code.dirty else "")
    with _Progress(experiment.name, len(tasks), result.reused, stream) as bar:
        bar.print(f"sweep {experiment.name}: {len(tasks)} runs ({len(experiment.design)} design point(s) x "
                  f"{experiment.replications} replication(s)), {result.reused} already stored"
                  + (f" ({adopted} found written but not recorded, recorded now)" if adopted else "")
                  + (f", {len(damaged)} stored run(s) damaged or incomplete, run again" if damaged else "")
                  + (f", {min(workers, len(todo))} worker(s)" if todo else ""))
        if todo:
            factory = executor_factory or default_executor_factory(min(workers, len(todo)))
            _execute(factory, todo, _Claims(registry, out_root, owner), result, bar,
                     IN_FLIGHT_PER_WORKER * workers, copies)
    elapsed = time.monotonic() - bar.t0
    log.info("sweep %s finished: %d of %d runs stored (%d new, %d already stored), %d failed, %d left to another "
             "sweep; %s, %.2f new runs/s", experiment.name, result.reused + result.stored, result.total,
             result.stored, result.reused, len(result.failed), result.elsewhere_runs, _fmt_duration(elapsed),
             result.stored / elapsed if elapsed > 0 else 0.0)
    return result


class _RunLog:
    """What a running sweep logs of its runs: each run at DEBUG (submitted, stored, with its time), a failed run at
    INFO, and the sweep's progress at INFO every 10% of its runs or every :data:`LOG_EVERY_S` seconds (runs stored,
    failed, rate, mean worker time a run, time left). It keeps counts only, never the runs.

    The progress records carry ``progress=True`` (a record attribute), so that a program whose terminal shows the
    sweep's progress bar can leave them off it and still log them elsewhere (the command does: see
    :func:`loyaltysim.cli.configure_logging`)."""

    def __init__(self, name: str, todo: int):
        self.name, self.todo = name, todo
        self.t0 = self.last = time.monotonic()
        self.finished = self.failed = self.submitted = 0
        self.worker_s = 0.0
        self.step = max(1, -(-todo // 10))
        self.next_at = self.step

    def submitted_run(self, task: Task, in_flight: int) -> None:
        self.submitted += 1
        log.debug("%s submitted (%d in flight)", task.describe(), in_flight)

    def finished_run(self, task: Task, outcome: dict[str, Any]) -> None:
        self.finished += 1
        duration = outcome.get("duration_s")
        self.worker_s += duration or 0.0
        if outcome["status"] == "done":
            log.debug("%s stored (%.3f s)", task.describe(), duration or 0.0)
        else:
            self.failed += 1
            error = outcome.get("error") or "?"
            log.info("%s failed: %s", task.describe(), error.splitlines()[0])
            log.debug("%s failed:\n%s", task.describe(), error)
        now = time.monotonic()
        if self.finished >= self.next_at or now - self.last >= LOG_EVERY_S:
            while self.next_at <= self.finished:
                self.next_at += self.step
            self.last = now
            elapsed = now - self.t0
            rate = self.finished / elapsed if elapsed > 0 else 0.0
            left = (self.todo - self.finished) / rate if rate > 0 else 0.0
            log.info("sweep %s: %d of %d runs finished (%d failed), %.2f runs/s, %.3f s simulating a run (on a "
                     "worker), %s elapsed, ~%s left", self.name, self.finished, self.todo, self.failed, rate,
                     self.worker_s / self.finished, _fmt_duration(elapsed), _fmt_duration(left),
                     extra={"progress": True})


def _execute(factory: Callable[[], Executor], todo: list[Task], claims: _Claims, result: SweepResult,
             bar: _Progress, max_in_flight: int, copies: Counter[str]) -> None:
    """Claim, submit and record the runs of ``todo``, at most ``max_in_flight`` at a time; runs another live sweep
    has claimed are left to it, and looked at once more when the rest is done."""
    pending: Iterator[Task] = iter(todo)
    in_flight: dict[Future, Task] = {}
    left: dict[str, tuple[Task, str]] = {}  # runs another sweep computes: key -> (task, that sweep)
    looked_again = False
    executor: Executor | None = None
    registry, out_root = claims.registry, Path(todo[0].out_root)
    runs = _RunLog(todo[0].experiment, len(todo))

    def take(fut: Future, task: Task) -> BaseException | None:
        """Record one finished future; return the pool's breakage instead of recording it."""
        try:
            outcome = fut.result()
        except (BrokenExecutor, CancelledError) as err:  # cancelled, not by this sweep: e.g. a cluster's scheduler
            return err if str(err) else CancelledError("the executor cancelled a run (a cluster's scheduler gone?)")
        except Exception as err:  # the task could not even be run (e.g. not picklable)
            outcome = {"key": task.key, "status": "failed", "error": f"{type(err).__name__}: {err}"}
        if outcome["status"] == "done" and not (run_dir_for(out_root, task.key) / "manifest.json").is_file():
            outcome = {**outcome, "status": "failed", "error": (
                f"the worker wrote its run folder, but not where this process sees it "
                f"({run_dir_for(out_root, task.key)}): on a cluster of several machines the output root must be "
                "shared storage, mounted at the same path on every machine")}
        error = outcome.get("error", "")
        _record(registry, task, outcome, claims.owner)
        runs.finished_run(task, outcome)
        if outcome["status"] == "done":
            result.stored += copies[task.key]
        else:
            result.failed += [FailedRun(task.key, task.design, task.replication, error)] * copies[task.key]
            bar.print(f"{task.describe()} failed: {error.splitlines()[0] if error else '?'}")
        bar.advance(copies[task.key])
        return None

    def claimed(task: Task) -> bool:
        """Claim a task; a task stored meanwhile is counted, one another sweep computes is left to it."""
        row = claims.claim(task)
        if row is None:
            left.pop(task.key, None)
            return True
        if row.status == "done":  # stored by another sweep since this one looked
            left.pop(task.key, None)
            result.reused += copies[task.key]
            bar.advance(copies[task.key])
            log.debug("%s was stored by another sweep meanwhile", task.describe())
        else:
            other = Owner.of(row)
            left[task.key] = (task, other.describe() if other else "?")
            log.debug("%s is being computed by another sweep (%s): left to it", task.describe(), left[task.key][1])
        return False

    broken: BaseException | None = None
    lost: StorageError | None = None
    database_failed = False
    with _StopRequests() as stop:
        executor = factory()
        capacity = _capacity(executor, max_in_flight)
        log.info("sweep %s: %d run(s) to compute on %s, at most %d in flight", todo[0].experiment, len(todo),
                 type(executor).__name__, capacity)
        registry.give_up = lambda: stop.requested  # Ctrl-C is not kept waiting by a database outage
        try:
            while not stop.requested:
                now = _capacity(executor, max_in_flight)
                if now != capacity:
                    log.info("sweep %s: at most %d runs in flight now (was %d): the cluster's workers changed",
                             todo[0].experiment, now, capacity)
                    capacity = now
                while broken is None and len(in_flight) < capacity:
                    task = next(pending, None)
                    if task is None:
                        break
                    if not claimed(task):
                        continue
                    try:
                        in_flight[executor.submit(run_task, task)] = task
                    except BrokenExecutor as err:  # the pool broke since the last results came in
                        broken = err
                    else:
                        runs.submitted_run(task, len(in_flight))
                if not in_flight:
                    if left and not looked_again and broken is None:
                        looked_again = True  # once more: stored since, or given up by a claimant that is gone?
                        log.info("sweep %s: looking again at %d run(s) another sweep had claimed",
                                 todo[0].experiment, len(left))
                        pending = iter([task for task, _ in left.values()])
                        continue
                    break
                finished, _ = wait(in_flight, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
                for fut in finished:
                    broken = take(fut, in_flight.pop(fut)) or broken
                if broken is not None:
                    # keep what finished before the breakage; the rest is lost
                    for fut in [f for f in in_flight if f.done() and not f.cancelled()]:
                        take(fut, in_flight.pop(fut))
                    break
        except StorageError as err:  # the registry stayed unusable beyond its retry bound
            lost = None if stop.requested else err
            database_failed = True
        if stop.requested or lost is not None:
            log.info("sweep %s stopping (%s): %d run(s) in flight cancelled", todo[0].experiment,
                     f"signal {signal.Signals(stop.signum).name}" if stop.signum is not None
                     else f"the registry stayed unusable: {lost}", len(in_flight))
            for fut in in_flight:
                fut.cancel()
            _stop_executor(executor)
            remove_stale_temp_dirs(out_root)
            if not database_failed:  # a run a worker finished writing as the stop came is kept, and counted
                for task in in_flight.values():
                    with contextlib.suppress(StorageError):
                        if record_run_dir(registry, run_dir_for(out_root, task.key), task.key) is not None:
                            result.stored += copies[task.key]
                            log.info("%s was written as the sweep stopped: recorded", task.describe())
            if lost is not None:
                raise SweepDatabaseLost(result.reused + result.stored, result.total, str(lost)) from None
            if not database_failed:  # else the next open finds the claims abandoned: no waiting for the database
                _release(claims)
            raise SweepInterrupted(result.reused + result.stored, result.total)
    if broken is not None:
        log.info("sweep %s stopping: the executor broke (%s)", todo[0].experiment, " ".join(str(broken).split()))
        _shutdown(executor, wait=True, cancel=True)
        remove_stale_temp_dirs(out_root)
        _release(claims)
        reason = " ".join(str(broken).split()) or type(broken).__name__
        raise SweepBroken(result.reused + result.stored, result.total, reason) from None
    executor.shutdown(wait=True)
    result.elsewhere = {key: who for key, (_, who) in left.items()}
    result.elsewhere_runs = sum(copies[key] for key in left)


def _capacity(executor: Executor, default: int) -> int:
    """How many runs to keep in flight: :data:`IN_FLIGHT_PER_WORKER` per slot of an executor that tells how many runs
    it computes at once (``worker_slots()``, e.g. a Dask cluster's threads, which change as workers come and go),
    else ``default``."""
    slots = getattr(executor, "worker_slots", None)
    count = slots() if callable(slots) else 0
    return IN_FLIGHT_PER_WORKER * count if count > 0 else default


RELEASE_RETRY_S = 5.0  # a stopped sweep does not wait long for its database to release its claims


def _release(claims: _Claims) -> None:
    """After a stop, mark the runs this sweep claimed but did not store failed, so that nobody waits for them (if
    the database does not answer in time, the next sweep or run finds them abandoned anyway)."""
    with contextlib.suppress(StorageError):
        claims.registry.release_claims(claims.owner, "interrupted: the sweep stopped before this run was stored",
                                       retry_s=RELEASE_RETRY_S)
