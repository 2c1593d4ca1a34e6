"""Tests of sweeps: seeds and common random numbers, storing and resuming, failures, bounded submission,
progress, bad input; and, for real in subprocesses, Ctrl-C and a killed worker followed by a resume that gives
byte-identical Parquet files, and the replay of one run from its manifest.

The in-process sweeps use a thread pool (``executor_factory``) to avoid the process pool's start-up; the
subprocess tests use the real command with its process pool.
"""

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli_process import TIMEOUT, dead_pid, finish, ok, parquet_hashes, start
from loyaltysim.cli import app
from loyaltysim.experiments import run as run_module
from loyaltysim.experiments import sweep as sweep_module
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.run import simulate
from loyaltysim.experiments.storage import (
    DB_ENV_VAR,
    Registry,
    StorageError,
    code_identity,
    read_run_dir,
    run_dir_for,
    run_key,
)
from loyaltysim.experiments.sweep import plan, remove_stale_temp_dirs, run_sweep
from loyaltysim.measures.outcomes import compute
from loyaltysim.model.market import LoyaltyMarket
from loyaltysim.reporting.report import ReportError, collect_results, write_report

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_experiment.toml"
BASELINE = Path(__file__).resolve().parents[2] / "experiments" / "scenarios" / "baseline.toml"
TEMP_DIR = re.compile(r"^\..*\.(tmp|old)-")


def threads() -> Executor:
    return ThreadPoolExecutor(max_workers=2)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sweep_in_process(exp, out: Path, **kw):
    kw.setdefault("executor_factory", threads)
    kw.setdefault("stream", io.StringIO())
    return run_sweep(exp, out, sqlite_url(out / "registry.sqlite"), workers=2, **kw)


def rows(out: Path) -> list:
    with Registry(sqlite_url(out / "registry.sqlite")) as reg:
        return reg.runs()


def temp_dirs(out: Path) -> list[str]:
    return [p.name for p in (out / "runs").iterdir() if TEMP_DIR.match(p.name)]


@pytest.fixture(scope="module")
def tiny():
    return load_experiment(TINY)


@dataclass
class Swept:
    out: Path
    result: sweep_module.SweepResult
    progress: str


@pytest.fixture(scope="module")
def swept(tiny, tmp_path_factory) -> Swept:
    out = tmp_path_factory.mktemp("swept")
    stream = io.StringIO()
    result = sweep_in_process(tiny, out, stream=stream)
    return Swept(out, result, stream.getvalue())


# ------------------------------------------------------------------------------------------ the plan


def test_the_plan_runs_every_design_point_of_replication_r_on_child_r_of_the_root_seed(tiny, tmp_path):
    tasks = plan(tiny, tmp_path)
    assert len(tasks) == 8
    assert [(t.replication, t.design_index) for t in tasks] == [(r, i) for r in range(2) for i in range(4)]
    code = code_identity()
    for t in tasks:
        point = tiny.design[t.design_index]
        assert t.seed == 20261123 and t.spawn_key == (t.replication,) and t.design == point.labels
        assert t.scenario == point.effective and t.code == code and t.out_root == str(tmp_path.resolve())
        assert t.key == run_key(point.effective, 20261123, (t.replication,), code)
        assert t.outcomes == tuple(tiny.outcomes) and t.experiment == "tiny_price"
    assert len({t.key for t in tasks}) == 8


# ------------------------------------------------------------------------------------------ storing


def test_a_sweep_stores_every_run_with_its_design_replication_and_outcomes(tiny, swept):
    result = swept.result
    assert (result.total, result.reused, result.stored, result.failed) == (8, 0, 8, [])
    assert result.complete
    registry_rows = {r.key: r for r in rows(swept.out)}
    assert len(registry_rows) == 8
    for t in plan(tiny, swept.out):
        row = registry_rows[t.key]
        assert (row.status, row.experiment_name, row.seed_entropy, row.spawn_key) == (
            "done", "tiny_price", "20261123", f"[{t.replication}]")
        assert row.run_dir == str(run_dir_for(swept.out, t.key)) and row.error is None
        assert row.duration_s > 0 and row.finished_at >= row.started_at
        summary = json.loads(row.summary_json)
        assert summary["experiment"] == "tiny_price" and summary["design"] == t.design
        assert summary["replication"] == t.replication
        assert set(summary["outcomes"]) == set(tiny.outcomes)
        assert summary["outcomes"]["market.retention_by_score_5"] is None  # NaN: no answer a year before the end
        manifest, tables = read_run_dir(row.run_dir)
        assert manifest["run_key"] == t.key and manifest["scenario"] == t.scenario
        assert manifest["seed"] == {"entropy": 20261123, "spawn_key": [t.replication]}
        assert (manifest["experiment"], manifest["design"], manifest["replication"]) == (
            "tiny_price", t.design, t.replication)
        assert manifest["outcomes"] == summary["outcomes"] and manifest["summary"] == summary
        assert set(tables) == {"firms", "market", "defections", "surveys", "customers"}
    with Registry(sqlite_url(swept.out / "registry.sqlite")) as reg:
        assert reg.ensure_experiment("tiny_price").description == tiny.description


def test_stored_outcomes_are_those_of_simulate_with_the_replications_child_seed(tiny, swept):
    task = plan(tiny, swept.out)[5]  # replication 1, design point 1
    point = tiny.design[task.design_index]
    result = simulate(point.scenario, seed=tiny.root_seed, spawn_key=(1,))
    expected = compute(tiny.outcomes, point.scenario, result.tables, result.summary)
    manifest, tables = read_run_dir(run_dir_for(swept.out, task.key))
    stored = manifest["outcomes"]
    for name, value in expected.items():
        assert (stored[name] is None and math.isnan(value)) or stored[name] == value, name
    pd.testing.assert_frame_equal(tables["firms"], result.tables["firms"])


def test_every_stored_table_carries_its_run_key_replication_and_design_labels(tiny, swept):
    """One pandas line reads a whole sweep's firm series with their design labels; read_run_dir drops them again."""
    firms = pd.concat(map(pd.read_parquet, sorted(swept.out.glob("runs/*/firms.parquet"))), ignore_index=True)
    assert list(firms.columns[:4]) == ["run_key", "replication", "design_price", "design_market"]
    runs = firms.groupby("run_key", observed=True)[["replication", "design_price", "design_market"]].first()
    expected = {t.key: (t.replication, t.design["price"], t.design["market"]) for t in plan(tiny, swept.out)}
    assert {k: tuple(v) for k, v in runs.iterrows()} == expected
    mean_share = firms[firms["firm"] == "Focal"].groupby(["design_price", "design_market"], observed=True)["share"]
    assert len(mean_share.mean()) == 4
    for t in plan(tiny, swept.out)[:2]:
        manifest, tables = read_run_dir(run_dir_for(swept.out, t.key))
        assert manifest["label_columns"] == ["run_key", "replication", "design_price", "design_market"]
        for name, frame in tables.items():
            stored = pd.read_parquet(run_dir_for(swept.out, t.key) / f"{name}.parquet")
            assert set(stored["run_key"]) <= {t.key} and list(stored.columns[4:]) == list(frame.columns), name


def test_design_points_of_one_replication_share_the_population_and_replications_differ(tiny, swept):
    """Common random numbers: price 30 and price 34 (a policy lever) in the same replication meet the same
    customers; another replication meets others."""
    cheap, dear = tiny.design[0], tiny.design[2]
    assert (cheap.labels, dear.labels) == ({"price": "30", "market": "competitive"},
                                           {"price": "34", "market": "competitive"})

    def population(point, r):
        model = LoyaltyMarket(point.scenario, seed=np.random.SeedSequence(tiny.root_seed, spawn_key=(r,)))
        st = model.customers
        return {k: getattr(st, k).copy() for k in ("purchase_rate", "basket", "price_sensitivity", "weights",
                                                   "threshold", "segment", "value_tier")}

    a0, b0, a1 = population(cheap, 0), population(dear, 0), population(cheap, 1)
    for trait in a0:
        np.testing.assert_array_equal(a0[trait], b0[trait], err_msg=trait)
    for trait in ("purchase_rate", "basket", "price_sensitivity", "weights", "threshold"):
        assert not np.array_equal(a0[trait], a1[trait]), trait

    # the stored runs agree: the customers' traits match within a replication, not across replications
    keys = {(t.design_index, t.replication): t.key for t in plan(tiny, swept.out)}

    def customers(i, r):
        return pd.read_parquet(run_dir_for(swept.out, keys[i, r]) / "customers.parquet")

    c0, d0, c1 = customers(0, 0), customers(2, 0), customers(0, 1)
    pd.testing.assert_frame_equal(c0[["customer", "segment", "value_tier"]], d0[["customer", "segment", "value_tier"]])
    assert not c0["value_tier"].equals(c1["value_tier"])
    # and the price did change the run
    firms = [pd.read_parquet(run_dir_for(swept.out, keys[i, 0]) / "firms.parquet") for i in (0, 2)]
    assert not firms[0]["price"].equals(firms[1]["price"])


def test_a_second_sweep_reuses_every_stored_run_and_starts_no_executor(tiny, swept):
    def no_executor():
        raise AssertionError("nothing should run")

    again = sweep_in_process(tiny, swept.out, executor_factory=no_executor)
    assert (again.total, again.reused, again.stored) == (8, 8, 0) and again.complete
    assert len(rows(swept.out)) == 8


def test_a_run_whose_folder_is_gone_runs_again_and_one_written_but_not_recorded_is_recorded(tiny, tmp_path):
    """A run whose row is not done (left running by a process that is gone, or missing: its process died, or lost
    its database, after writing its folder) is recorded from its folder if that is complete and intact."""
    exp = load_experiment(TINY, overrides={"replications": 1})
    first = sweep_in_process(exp, tmp_path)
    assert first.stored == 4
    tasks = plan(exp, tmp_path)
    hashes = parquet_hashes(tmp_path)
    run_dir = run_dir_for(tmp_path, tasks[0].key)
    for p in run_dir.iterdir():
        p.unlink()
    run_dir.rmdir()
    with Registry(sqlite_url(tmp_path / "registry.sqlite")) as reg:
        row = reg.get_run(tasks[1].key)
        row.status = "running"
        reg.upsert_run(row)
    with contextlib.closing(sqlite3.connect(tmp_path / "registry.sqlite")) as con, con:
        con.execute("DELETE FROM runs WHERE key = ?", (tasks[2].key,))
    stream = io.StringIO()
    again = sweep_in_process(exp, tmp_path, stream=stream)
    assert (again.reused, again.stored, again.adopted) == (3, 1, 2)
    assert "3 already stored (2 found written but not recorded, recorded now)" in stream.getvalue()
    assert parquet_hashes(tmp_path) == hashes
    assert {r.status for r in rows(tmp_path)} == {"done"} and len(rows(tmp_path)) == 4


def test_a_damaged_run_is_missing_for_the_report_and_run_again_by_the_sweep(tiny, tmp_path):
    """A table changed after the run was stored (here: one byte of it) no longer counts as stored."""
    exp = load_experiment(TINY, overrides={"replications": 1})
    sweep_in_process(exp, tmp_path)
    hashes = parquet_hashes(tmp_path)
    damaged = run_dir_for(tmp_path, plan(exp, tmp_path)[2].key) / "customers.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with Registry(sqlite_url(tmp_path / "registry.sqlite")) as reg:
        _, missing = collect_results(exp, reg, tmp_path)
    assert missing == 1
    stream = io.StringIO()
    again = sweep_in_process(exp, tmp_path, stream=stream)
    assert (again.reused, again.stored) == (3, 1)
    assert "1 stored run(s) damaged or incomplete, run again" in stream.getvalue()
    assert parquet_hashes(tmp_path) == hashes  # the same bytes as before the damage


def test_a_report_says_how_many_runs_another_code_version_stored(tmp_path, monkeypatch):
    exp = load_experiment(TINY, overrides={"replications": 1})
    sweep_in_process(exp, tmp_path)
    other = dataclasses.replace(code_identity(), source_digest="0" * 64)  # the package's source changed
    monkeypatch.setattr(sweep_module, "code_identity", lambda: other)
    with pytest.raises(ReportError, match=r"no run .* is stored for the current code; 4 run\(s\) of 'tiny_price' are "
                                          r"stored for another code version or other settings"):
        write_report(exp, tmp_path, sqlite_url(tmp_path / "registry.sqlite"))


def test_design_points_with_the_same_scenario_share_their_runs(tmp_path):
    levels = [{"label": "base", "set": {}}, {"label": "base again", "set": {"policy.price": 30.0}},
              {"label": "dear", "set": {"policy.price": 34.0}}]
    exp = load_experiment(TINY, overrides={"replications": 2, "reference": None, "risk": False,
                                           "factors": [{"name": "price", "levels": levels}]})
    assert exp.design[0].effective == exp.design[1].effective != exp.design[2].effective
    executors = []

    def factory():
        executors.append(CountingExecutor())
        return executors[-1]

    result = sweep_in_process(exp, tmp_path, executor_factory=factory)
    assert (result.total, result.stored, result.reused) == (6, 6, 0) and result.complete
    assert executors[0].submitted == 4 and len(rows(tmp_path)) == 4
    assert sweep_in_process(exp, tmp_path).reused == 6


def test_a_stored_run_is_found_again_from_its_folder(tiny, swept, monkeypatch):
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    task = plan(tiny, swept.out)[6]
    run_dir = run_dir_for(swept.out, task.key)
    stat = (run_dir / "manifest.json").stat()
    res = CliRunner().invoke(app, ["run", str(run_dir), "--out", str(swept.out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["run_key"] == task.key and summary["design"] == task.design and summary["replication"] == 1
    assert (run_dir / "manifest.json").stat().st_mtime_ns == stat.st_mtime_ns  # reused, not run again


# ------------------------------------------------------------------------------------------ failures


def _failing_simulate(monkeypatch, replication: int = 1):
    real = run_module.simulate

    def simulate_or_fail(scenario, *, seed=0, spawn_key=()):
        if spawn_key == (replication,):
            raise RuntimeError("boom in the model")
        return real(scenario, seed=seed, spawn_key=spawn_key)

    monkeypatch.setattr(run_module, "simulate", simulate_or_fail)


def test_a_failing_run_is_recorded_as_failed_and_the_others_go_on(tiny, tmp_path, monkeypatch):
    _failing_simulate(monkeypatch)
    stream = io.StringIO()
    result = sweep_in_process(tiny, tmp_path, stream=stream)
    assert (result.stored, len(result.failed)) == (4, 4) and not result.complete
    assert {f.replication for f in result.failed} == {1}
    assert all(f.error.startswith("RuntimeError: boom in the model\n") for f in result.failed)
    assert "Traceback" in result.failed[0].error  # the registry keeps the traceback for the record
    by_status = {}
    for row in rows(tmp_path):
        by_status.setdefault(row.status, []).append(row)
    assert len(by_status["done"]) == 4 and len(by_status["failed"]) == 4
    failed = by_status["failed"][0]
    assert failed.error.startswith("RuntimeError: boom in the model")
    assert json.loads(failed.summary_json)["replication"] == 1
    assert not run_dir_for(tmp_path, failed.key).exists()
    assert stream.getvalue().count("failed: RuntimeError: boom in the model") == 4

    monkeypatch.undo()  # the cause is fixed: the same sweep re-runs the failed runs only
    again = sweep_in_process(tiny, tmp_path)
    assert (again.reused, again.stored, again.failed) == (4, 4, []) and again.complete


def test_the_command_exits_1_and_says_how_many_failed(tmp_path, monkeypatch):
    _failing_simulate(monkeypatch)
    monkeypatch.setattr(sweep_module, "default_executor_factory", lambda workers: threads)
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    res = CliRunner().invoke(app, ["sweep", str(TINY), "--out", str(tmp_path), "--workers", "2"])
    assert res.exit_code == 1, res.output
    assert ("sweep tiny_price: 4 of 8 runs failed (recorded in the registry with status 'failed'); first error: "
            "RuntimeError: boom in the model; fix the cause and run the same command to re-run them") in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)


# ------------------------------------------------------------------------------------------ the executor


class CountingExecutor(Executor):
    """Runs tasks on a thread pool and records the most futures ever pending at once."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending = 0
        self.most = 0
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.pending += 1
        self.submitted += 1
        self.most = max(self.most, self.pending)
        fut = self.pool.submit(fn, *args, **kwargs)
        fut.add_done_callback(lambda _: self._done())
        return fut

    def _done(self):
        self.pending -= 1

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def test_submission_is_bounded_to_four_runs_in_flight_per_worker(tmp_path):
    exp = load_experiment(TINY, overrides={"replications": 3, "population": 60, "horizon": "8 weeks",
                                           "warmup": "2 weeks"})
    executors = []

    def factory():
        executors.append(CountingExecutor())
        return executors[-1]

    result = run_sweep(exp, tmp_path, sqlite_url(tmp_path / "r.sqlite"), workers=1, executor_factory=factory,
                       progress=False)
    assert result.stored == 12 and len(executors) == 1
    assert executors[0].submitted == 12 and executors[0].most == 4


def test_the_default_executor_is_a_spawn_process_pool_sized_by_workers():
    from concurrent.futures import ProcessPoolExecutor

    executor = sweep_module.default_executor_factory(3)()
    try:
        assert isinstance(executor, ProcessPoolExecutor)
        assert executor._max_workers == 3 and executor._mp_context.get_start_method() == "spawn"
    finally:
        executor.shutdown()


# ------------------------------------------------------------------------------------------ progress


def test_without_a_terminal_progress_is_a_line_about_every_ten_percent(swept):
    lines = swept.progress.splitlines()
    assert lines[0] == "sweep tiny_price: 8 runs (4 design point(s) x 2 replication(s)), 0 already stored, 2 worker(s)"
    counts = []
    for line in lines[1:]:
        m = re.fullmatch(r"sweep tiny_price: (\d+)/8 runs, \d+:\d\d:\d\d elapsed, ~\d+:\d\d:\d\d left", line)
        assert m, line
        counts.append(int(m.group(1)))
    assert counts == list(range(1, 9))  # 8 runs: every run is more than 10%


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_progress_is_a_bar(tmp_path):
    exp = load_experiment(TINY, overrides={"replications": 1, "population": 60, "horizon": "8 weeks",
                                           "warmup": "2 weeks"})
    stream = Terminal()
    result = sweep_in_process(exp, tmp_path, stream=stream)
    assert result.stored == 4
    text = stream.getvalue()
    assert "sweep tiny_price" in text and "4/4" in text and "elapsed" in text and "left" in text


def test_quiet_sweeps_print_nothing(tmp_path, capsys):
    exp = load_experiment(TINY, overrides={"replications": 1, "population": 60, "horizon": "8 weeks",
                                           "warmup": "2 weeks"})
    run_sweep(exp, tmp_path, sqlite_url(tmp_path / "r.sqlite"), executor_factory=threads, progress=False)
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------------------------ temp dirs


def test_temp_dirs_of_writers_that_are_gone_are_removed_and_others_kept(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    dead = runs / f".{'a' * 16}.tmp-{dead_pid()}-0badcafe"
    moved_aside = runs / f".{'b' * 16}.old-{dead_pid()}-0badcafe"
    mine = runs / f".{'c' * 16}.tmp-{os.getpid()}-0badcafe"
    other = runs / "keep-me"
    for d in (dead, moved_aside, mine, other):
        d.mkdir()
        (d / "firms.parquet").write_bytes(b"half")
    assert remove_stale_temp_dirs(tmp_path) == 2
    assert sorted(p.name for p in runs.iterdir()) == sorted([mine.name, other.name])
    assert remove_stale_temp_dirs(tmp_path / "nowhere") == 0


def test_temp_dirs_of_another_hosts_writers_are_kept_until_they_are_a_day_old(tmp_path, monkeypatch):
    """A cluster's worker on another machine writes into a shared output root: its process ids mean nothing here."""
    from loyaltysim.experiments.storage import host_tag, write_run_dir

    runs = tmp_path / "runs"
    runs.mkdir()
    there, here = host_tag("worker-7.example.org"), host_tag()
    remote = runs / f".{'a' * 16}.tmp-{dead_pid()}-0badcafe.{there}"
    old_remote = runs / f".{'b' * 16}.tmp-{dead_pid()}-0badcafe.{there}"
    local_dead = runs / f".{'c' * 16}.old-{dead_pid()}-0badcafe.{here}"
    local_alive = runs / f".{'d' * 16}.tmp-{os.getpid()}-0badcafe.{here}"
    for d in (remote, old_remote, local_dead, local_alive):
        d.mkdir()
    day_ago = time.time() - sweep_module.FOREIGN_TEMP_DIR_S - 60
    os.utime(old_remote, (day_ago, day_ago))
    assert remove_stale_temp_dirs(tmp_path) == 2
    assert sorted(p.name for p in runs.iterdir()) == sorted([remote.name, local_alive.name])
    # write_run_dir names its temporary folder so
    names, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (names.append(Path(src).name), real_replace(src, dst))[1])
    write_run_dir(tmp_path, "e" * 64, {"run_key": "e" * 64}, {"t": pd.DataFrame({"x": [1]})})
    assert re.fullmatch(rf"\.e{{16}}\.tmp-{os.getpid()}-[0-9a-f]{{8}}\.{here}", names[0])
    assert sweep_module._TEMP_DIR.match(names[0])


@pytest.mark.parametrize("signum", sweep_module.STOP_SIGNALS, ids=["ctrl-c", "sigterm"])
def test_during_a_sweep_a_stop_signal_only_asks_it_to_stop(signum):
    handlers = {s: signal.getsignal(s) for s in sweep_module.STOP_SIGNALS}
    with sweep_module._StopRequests() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signum)
        time.sleep(0.01)  # the handler has run: nothing was raised here
        assert stop.signum == signum
    assert {s: signal.getsignal(s) for s in sweep_module.STOP_SIGNALS} == handlers


class StopAfter(Executor):
    """A thread pool on which the process receives Ctrl-C once ``n`` runs have finished; its shutdown lets the
    run in progress finish (a thread cannot be stopped)."""

    def __init__(self, n: int):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.n = n
        self.finished = 0

    def submit(self, fn, /, *args, **kwargs):
        def run():
            out = fn(*args, **kwargs)
            self.finished += 1
            if self.finished == self.n:
                os.kill(os.getpid(), signal.SIGINT)
            return out
        return self.pool.submit(run)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.pool.shutdown(wait=True, cancel_futures=cancel_futures)


def test_ctrl_c_in_process_stops_the_sweep_with_every_finished_run_recorded(tiny, tmp_path):
    out = tmp_path / "out"
    executor = StopAfter(2)
    with pytest.raises(sweep_module.SweepInterrupted, match=r"interrupted: (\d+) of 8 runs stored") as info:
        sweep_in_process(tiny, out, executor_factory=lambda: executor)
    done = [r for r in rows(out) if r.status == "done"]
    assert 2 <= len(done) == int(re.search(r"(\d+) of", str(info.value)).group(1)) < 8
    assert temp_dirs(out) == []
    # the stopped sweep's other claims are released (failed), not left running
    assert {r.status for r in rows(out)} <= {"done", "failed"}
    # a run in progress as the stop came (a thread cannot be stopped) finishes writing its folder while the workers
    # are stopped: the stopped sweep records and counts it, so the next sweep finds nothing written but unrecorded
    result = sweep_in_process(tiny, out)
    assert (result.stored + result.reused, result.reused, result.adopted) == (8, len(done), 0)


# ------------------------------------------------------------------------------------------ bad input


def test_storage_is_checked_before_anything_runs(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="not writable"):
        run_sweep(tiny, blocker / "out", sqlite_url(tmp_path / "r.sqlite"), executor_factory=threads)
    out = tmp_path / "fresh"
    with pytest.raises(StorageError, match="cannot open results database"):
        run_sweep(tiny, out, "postgresql+psycopg://nobody@127.0.0.1:1/none", executor_factory=threads)
    assert not out.exists()  # the folders made for it are removed again
    with pytest.raises(ValueError, match="at least 1"):
        run_sweep(tiny, out, sqlite_url(tmp_path / "r.sqlite"), workers=0)


@pytest.mark.parametrize("case", ["missing", "malformed", "invalid", "workers", "unwritable", "database"])
def test_bad_input_gives_one_message_and_exit_2(case, tmp_path, monkeypatch):
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    args = ["sweep", str(TINY), "--out", str(tmp_path / "out")]
    expected = {
        "missing": "nowhere.toml: 1 problem(s):\n  - file not found",
        "malformed": "malformed TOML",
        "invalid": "replications: Input should be greater than or equal to 1",
        "workers": "Invalid value for '--workers'",
        "unwritable": "is not writable",
        "database": "cannot open results database",
    }[case]
    if case == "missing":
        args[1] = str(tmp_path / "nowhere.toml")
    elif case == "malformed":
        args[1] = str(tmp_path / "bad.toml")
        Path(args[1]).write_text("name = [\n")
    elif case == "invalid":
        args[1] = str(tmp_path / "invalid.toml")
        Path(args[1]).write_text(TINY.read_text().replace("replications = 2", "replications = 0")
                                 .replace('"../../experiments', f'"{BASELINE.parents[2]}/experiments'))
    elif case == "workers":
        args += ["--workers", "0"]
    elif case == "unwritable":
        (tmp_path / "a-file").write_text("")
        args[3] = str(tmp_path / "a-file" / "out")
    else:
        args += ["--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert expected in res.stderr and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "out" / "runs").exists() or case in ("workers",)


# ------------------------------------------------------------------------------------------ for real


def done_rows(out: Path) -> int:
    """Runs recorded as done, read with sqlite3 while the sweep may be writing (a locked database is 0)."""
    db = out / "registry.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5) as conn:
            return conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_done(out: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while done_rows(out) < n:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early ({proc.returncode}):\n{proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the sweep stored nothing in time")
        time.sleep(0.02)


def worker_pids(pid: int) -> list[int]:
    """The pool's worker processes: children of the sweep started by multiprocessing's spawn."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    workers = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


# 4 prices x 4 replications, 5,000 customers, 52 weeks: about 0.6 s a run, 16 runs on 2 workers, so that an
# interruption sent once two runs are stored lands with several seconds of runs still to go on a busy machine
SLOW_EXPERIMENT = f'''
schema_version = 1
name = "resumable"
scenario = "{BASELINE}"
replications = 4
root_seed = 7
horizon = "52 weeks"
warmup = "4 weeks"
population = 5000
outcomes = ["focal.share_end", "market.annual_churn"]

[[factors]]
name = "price"
path = "policy.price"
values = [28.0, 30.0, 32.0, 34.0]
'''


@dataclass
class Reference:
    base: Path
    experiment: Path
    out: Path
    hashes: dict[str, str]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """An uninterrupted sweep of the slow experiment by the command, with its process pool."""
    base = tmp_path_factory.mktemp("resumable")
    experiment = base / "resumable.toml"
    experiment.write_text(SLOW_EXPERIMENT, encoding="utf-8")
    out = base / "reference"
    res = ok(finish(start("sweep", experiment, "--workers", 2, "--out", out, cwd=base)))
    assert "16 runs stored" in res.stdout
    hashes = parquet_hashes(out)
    assert len(hashes) == 16 * 5
    return Reference(base, experiment, out, hashes)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_sweep_and_the_same_command_completes_it_identically(reference, tmp_path,
                                                                                          signum):
    out = tmp_path / "out"
    proc = start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)
    wait_for_done(out, 2, proc)
    proc.send_signal(signum)
    res = finish(proc)
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    m = re.fullmatch(r"interrupted: (\d+) of 16 runs stored; run the same command to resume",
                     res.stderr.splitlines()[-1])
    assert m, res.stderr
    stored = done_rows(out)
    assert 2 <= stored < 16 and int(m.group(1)) == stored
    assert temp_dirs(out) == []  # the workers' half-written runs are cleaned up
    # a run killed mid-write by something else leaves a temporary folder: the resume removes it
    stale = out / "runs" / f".{'0' * 16}.tmp-{dead_pid()}-0badcafe"
    stale.mkdir()
    (stale / "firms.parquet").write_bytes(b"half a table")

    res = ok(finish(start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)))
    assert f"{stored} already stored" in res.stderr and f"({16 - stored} new, {stored} already stored)" in res.stdout
    assert temp_dirs(out) == [] and not stale.exists()
    assert done_rows(out) == 16
    assert parquet_hashes(out) == reference.hashes


# A pool whose worker stops half-way through sending its result (as a worker ended by a stop does when the stop
# lands mid-write; the other worker waits for the pipe), then a stop, then the end of the program: it must end.
HALF_SENT_RESULT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

from loyaltysim.experiments.sweep import _stop_executor

def half_send(self, buf):
    data = bytes(buf)
    self._send(len(data).to_bytes(4, "big") + data[: len(data) // 2])
    Path(sys.argv[1], str(multiprocessing.current_process().pid)).touch()
    time.sleep(3600)

def init():
    Connection._send_bytes = half_send

def work(i):
    return i

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=init)
    futures = [pool.submit(work, i) for i in range(4)]
    while not any(Path(sys.argv[1]).iterdir()):
        time.sleep(0.02)
    _stop_executor(pool)
    print("stopped", flush=True)
"""


def test_stopping_a_pool_whose_workers_are_mid_way_through_a_result_lets_the_program_end(tmp_path):
    script = tmp_path / "half_sent.py"
    script.write_text(HALF_SENT_RESULT, encoding="utf-8")
    (tmp_path / "sent").mkdir()
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "sent")], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0 and res.stdout == "stopped\n", res.stderr


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc to find the worker processes")
def test_a_killed_worker_stops_the_sweep_and_the_same_command_completes_it_identically(reference, tmp_path):
    out = tmp_path / "out"
    proc = start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)
    wait_for_done(out, 2, proc)
    workers = worker_pids(proc.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    res = finish(proc)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: a worker process died (") and last.endswith(
        "runs stored; run the same command to resume"), res.stderr
    stored = done_rows(out)
    assert 2 <= stored < 16
    res = ok(finish(start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)))
    assert f"{stored} already stored" in res.stderr
    assert temp_dirs(out) == [] and done_rows(out) == 16
    assert parquet_hashes(out) == reference.hashes


def test_a_run_of_a_sweep_replays_from_its_manifest(reference):
    run_dir = sorted((reference.out / "runs").glob("*/manifest.json"))[3].parent
    manifest = json.loads((run_dir / "manifest.json").read_text())
    before = {p.name: p.read_bytes() for p in run_dir.glob("*.parquet")}
    res = ok(finish(start("run", run_dir / "manifest.json", "--out", reference.out, "--force", "--json",
                          cwd=reference.base)))
    summary = json.loads(res.stdout)
    assert summary["run_key"] == manifest["run_key"] and Path(summary["run_dir"]) == run_dir
    again = json.loads((run_dir / "manifest.json").read_text())
    assert again["created_at"] != manifest["created_at"]  # written again ...
    assert {p.name: p.read_bytes() for p in run_dir.glob("*.parquet")} == before  # ... byte for byte the same
    for key in ("scenario", "seed", "experiment", "design", "replication", "outcomes"):
        assert again[key] == manifest[key], key
    with Registry(sqlite_url(reference.out / "registry.sqlite")) as reg:
        row = reg.get_run(manifest["run_key"])
    assert row.status == "done" and row.experiment_name == "resumable"
    assert json.loads(row.summary_json) == manifest["summary"]


def test_a_replay_takes_no_seed_and_needs_a_manifest(tmp_path, monkeypatch):
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"scenario": {}, "seed": {"entropy": 1, "spawn_key": [0]}}))
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(manifest), "--seed", "3", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--seed cannot be combined with a manifest" in res.stderr
    res = runner.invoke(app, ["run", str(manifest), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "scenario: " in res.stderr and "required key is missing" in res.stderr
    manifest.write_text(json.dumps({"scenario": {}, "seed": {"spawn_key": [0]}}))
    res = runner.invoke(app, ["run", str(manifest), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not a run manifest" in res.stderr
    manifest.write_text("{")
    res = runner.invoke(app, ["run", str(manifest), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "malformed JSON" in res.stderr
    res = runner.invoke(app, ["run", str(tmp_path / "gone.json"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "file not found" in res.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers follow their coordinator on Linux")
def test_a_killed_coordinator_leaves_no_worker_behind(reference, tmp_path):
    out = tmp_path / "out"
    proc = start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)
    wait_for_done(out, 1, proc)
    workers = worker_pids(proc.pid)
    assert workers, "no worker process found"
    proc.kill()  # SIGKILL: the coordinator can do nothing about it
    proc.wait(timeout=TIMEOUT)  # not its pipes: workers left alive would hold them open
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{w}").exists() and b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()
              for w in workers if Path(f"/proc/{w}/cmdline").exists()):
        assert time.monotonic() < deadline, f"workers {workers} outlived their coordinator"
        time.sleep(0.1)
    ok(finish(start("sweep", reference.experiment, "--workers", 2, "--out", out, cwd=tmp_path)))
    assert done_rows(out) == 16 and parquet_hashes(out) == reference.hashes  # the same command completes it


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_registry_is_rebuilt_from_the_run_folders(tmp_path, loss):
    """The folders are the data and the registry their index: a report and a resumed sweep rebuild it by
    themselves, and `loyaltysim registry rebuild` does it on request; nothing is computed again."""
    exp = load_experiment(TINY, overrides={"replications": 1})
    sweep_in_process(exp, tmp_path)
    hashes = parquet_hashes(tmp_path)
    db = tmp_path / "registry.sqlite"
    db.unlink()
    if loss == "emptied":
        db.write_bytes(b"")  # a 0-byte file: an empty database
    assert write_report(exp, tmp_path, sqlite_url(db)).runs == 4  # rebuilt before reporting
    db.unlink()
    again = sweep_in_process(exp, tmp_path, executor_factory=lambda: pytest.fail("nothing should run"))
    assert (again.reused, again.stored) == (4, 0)
    db.unlink()
    res = ok(finish(start("registry", "rebuild", "--out", tmp_path, cwd=tmp_path)))
    assert "4 run(s) recorded" in res.stdout
    assert {(r.status, r.experiment_name) for r in rows(tmp_path)} == {("done", "tiny_price")}
    assert parquet_hashes(tmp_path) == hashes


class ElsewhereExecutor(Executor):
    """Reports every run done without writing its folder where the coordinator sees it: a cluster's worker on a
    machine that does not share the output root."""

    def submit(self, fn, /, *args, **kwargs):
        (task,) = args
        fut = Future()
        fut.set_result({"key": task.key, "status": "done", "summary": task.extra(), "duration_s": 0.1})
        return fut


def test_a_run_reported_done_whose_folder_the_coordinator_does_not_see_is_recorded_failed(tmp_path):
    exp = load_experiment(TINY, overrides={"replications": 1})
    result = run_sweep(exp, tmp_path, sqlite_url(tmp_path / "r.sqlite"), workers=1,
                       executor_factory=ElsewhereExecutor, progress=False)
    assert result.stored == 0 and len(result.failed) == 4
    assert "the output root must be shared storage, mounted at the same path on every machine" in \
        result.failed[0].error
    with Registry(sqlite_url(tmp_path / "r.sqlite")) as reg:
        assert {r.status for r in reg.runs()} == {"failed"}
