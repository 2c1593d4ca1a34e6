"""Reliability of the registry and of sweeps, for real: a PostgreSQL server restarted during a sweep, a SQLite
registry locked by another connection, rows left running by processes that died, two sweeps on one folder, and
registries of the previous version. The databases are real (SQLite files, the session's PostgreSQL server) and the
sweeps real ``loyaltysim`` processes; nothing of the database is mocked.
"""

import contextlib
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli_process import TIMEOUT, clean_env, dead_pid, finish, ok, parquet_hashes, start
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.storage import (
    DB_RETRY_ENV_VAR,
    DatabaseUnavailable,
    Owner,
    Registry,
    RunRecord,
    StorageError,
    open_results,
)
from loyaltysim.experiments.sweep import run_sweep

BASELINE = Path(__file__).resolve().parents[2] / "experiments" / "scenarios" / "baseline.toml"
TESTS = Path(__file__).resolve().parents[1]

# 4 prices x 2 replications, 3,000 customers, 40 weeks: a few tenths of a second a run, 8 runs
EXPERIMENT = f'''
schema_version = 1
name = "reliable"
scenario = "{BASELINE}"
replications = 2
root_seed = 11
horizon = "40 weeks"
warmup = "4 weeks"
population = 3000
outcomes = ["focal.share_end", "market.annual_churn"]

[[factors]]
name = "price"
path = "policy.price"
values = [28.0, 30.0, 32.0, 34.0]
'''
RUNS = 8
RESUME_HINT = re.compile(r"error: results database '[^']*' still unavailable after [\d.]+ s of retries: (.*): "
                         r"(\d+) of 8 runs stored; run the same command to resume")


@dataclass
class Reference:
    base: Path
    experiment: Path
    hashes: dict[str, str]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """An uninterrupted sweep of the experiment (in this process, on threads: the tables do not depend on it)."""
    base = tmp_path_factory.mktemp("reliable")
    experiment = base / "reliable.toml"
    experiment.write_text(EXPERIMENT, encoding="utf-8")
    out = base / "reference"
    run_sweep(load_experiment(experiment), out, f"sqlite:///{out}/registry.sqlite", workers=2, progress=False,
              executor_factory=lambda: ThreadPoolExecutor(2))
    hashes = parquet_hashes(out)
    assert len(hashes) == RUNS * 5
    return Reference(base, experiment, hashes)


def sweep_args(reference: Reference, out: Path, *extra) -> list:
    return ["sweep", reference.experiment, "--workers", 1, "--out", out, *extra]


def sqlite_statuses(out: Path) -> list[str]:
    """The runs' statuses, read while a sweep may be writing (a locked database reads as no row)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{out / 'registry.sqlite'}?mode=ro", uri=True,
                                                timeout=0.5)) as conn:
            return [s for (s,) in conn.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


def wait_until(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended before {what} ({proc.returncode}):\n{proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------ database outages


@pytest.mark.postgres
def test_a_postgresql_restart_during_a_sweep_loses_nothing(reference, postgres_server, tmp_path):
    """The server goes away for 3 s while runs finish: the sweep retries its registry writes and completes."""
    import psycopg

    url = postgres_server.new_database("restarted")
    plain = url.replace("+psycopg", "")

    def done() -> int:
        try:
            with psycopg.connect(plain, connect_timeout=2) as conn:
                return conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
        except psycopg.Error:
            return 0

    out = tmp_path / "out"
    proc = start(*sweep_args(reference, out, "--db", url), cwd=tmp_path)
    wait_until(lambda: done() >= 1, proc, "a run is stored")
    postgres_server.stop()
    try:
        time.sleep(3)
    finally:
        postgres_server.start()
    res = ok(finish(proc))
    assert "8 runs stored" in res.stdout
    assert done() == RUNS
    assert parquet_hashes(out) == reference.hashes


@pytest.mark.parametrize("held_s", [6.5, None], ids=["shorter-than-the-bound", "longer-than-the-bound"])
def test_a_sqlite_registry_locked_by_another_connection(reference, tmp_path, held_s):
    """A lock held beyond SQLite's own 5 s wait but within the retry bound is waited out; one held beyond the bound
    stops the sweep with the resume hint (exit 1), and the same command then completes it, identically."""
    out = tmp_path / "out"
    env = clean_env(**({} if held_s else {DB_RETRY_ENV_VAR: "2"}))
    proc = start(*sweep_args(reference, out), cwd=tmp_path, env=env)
    wait_until(lambda: sqlite_statuses(out).count("done") >= 1, proc, "a run is stored")
    lock = sqlite3.connect(out / "registry.sqlite", timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        if held_s:
            time.sleep(held_s)
        else:
            proc.wait(TIMEOUT)  # the sweep gives up while the lock is held
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    res = finish(proc)
    if held_s:
        ok(res)
        assert sqlite_statuses(out) == ["done"] * RUNS
        assert parquet_hashes(out) == reference.hashes
        return
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    m = RESUME_HINT.fullmatch(res.stderr.splitlines()[-1])
    assert m and m.group(1) == "database is locked", res.stderr
    stored = int(m.group(2))
    assert 1 <= stored < RUNS and sqlite_statuses(out).count("done") == stored
    res = ok(finish(start(*sweep_args(reference, out), cwd=tmp_path)))
    # the runs that finished while the registry was locked wrote their folders: they are recorded from them
    m = re.search(r"8 runs stored under .* \((\d+) new, (\d+) already stored\)", res.stdout)
    assert m and int(m.group(2)) >= stored, res.stdout
    assert sqlite_statuses(out) == ["done"] * RUNS
    assert parquet_hashes(out) == reference.hashes


def test_registry_operations_retry_for_their_bound_and_no_longer(tmp_path):
    """Without the lock a write goes through; with it, it is retried until the bound, then one line."""
    db = tmp_path / "registry.sqlite"
    with Registry(f"sqlite:///{db}", retry_s=1.0) as reg:
        reg.check()
        lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        lock.execute("BEGIN EXCLUSIVE")
        threading.Timer(0.5, lambda: lock.execute("ROLLBACK")).start()
        reg.ensure_experiment("within")  # waits for the lock: released after 0.5 s
        lock.execute("BEGIN EXCLUSIVE")
        t0 = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as info:
            reg.ensure_experiment("beyond")
        assert 1.0 <= time.monotonic() - t0 < 4.0
        lock.execute("ROLLBACK")
        lock.close()
    assert "\n" not in str(info.value) and "database is locked" in str(info.value)
    with Registry(f"sqlite:///{db}", retry_s=0) as reg:
        assert reg.ensure_experiment("beyond").name == "beyond"


def test_the_retry_bound_is_set_by_the_environment(monkeypatch):
    monkeypatch.setenv(DB_RETRY_ENV_VAR, "2.5")
    assert Registry("sqlite://").retry_s == 2.5
    monkeypatch.delenv(DB_RETRY_ENV_VAR)
    assert Registry("sqlite://").retry_s == 60.0
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv(DB_RETRY_ENV_VAR, bad)
        with pytest.raises(StorageError, match=f"{DB_RETRY_ENV_VAR} must be a number of seconds >= 0"):
            Registry("sqlite://")


# ------------------------------------------------------------------------------------------ abandoned rows


def _row(key: str, **owner) -> RunRecord:
    return RunRecord(key=key, scenario_name="base", seed_entropy="1", version="0", run_dir=f"/r/{key}",
                     status="running", **owner)


def test_a_running_row_is_marked_failed_on_the_next_open_only_if_its_owner_is_gone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = Owner(socket.gethostname(), sleeper.pid, _started(sleeper.pid))
        now = datetime.now(UTC)
        rows = {
            "dead": _row("dead", **Owner(alive.host, dead_pid(), None).stamp()),
            "alive": _row("alive", **alive.stamp()),
            "this process": _row("this process", **Owner.this_process().stamp()),
            # the same process id, but a process started at another time: the owner is gone, its id reused
            "reused pid": _row("reused pid", **{**alive.stamp(), "owner_started_at": alive.started_at
                                                - timedelta(hours=1)}),
            "other host, lease valid": _row("other host, lease valid", owner_host="elsewhere.invalid",
                                            owner_pid=1, lease_until=now + timedelta(minutes=5)),
            "other host, lease run out": _row("other host, lease run out", owner_host="elsewhere.invalid",
                                              owner_pid=1, lease_until=now - timedelta(seconds=1)),
            "no owner (earlier version)": _row("no owner (earlier version)"),
        }
        url = f"sqlite:///{tmp_path}/registry.sqlite"
        with Registry(url) as reg:
            for row in rows.values():
                reg.upsert_run(row)
        _, reg = open_results(tmp_path, url)
        with reg:
            status = {r.key: (r.status, r.error) for r in reg.runs()}
    finally:
        sleeper.kill()
        sleeper.wait()
    assert {k: s for k, (s, _) in status.items()} == {
        "dead": "failed", "alive": "running", "this process": "running", "reused pid": "failed",
        "other host, lease valid": "running", "other host, lease run out": "failed",
        "no owner (earlier version)": "failed"}
    assert re.fullmatch(r"interrupted: its process \(pid \d+ on .+\) ended before the run was stored",
                        status["dead"][1])


def _started(pid: int):
    from loyaltysim.experiments.storage import _process_started_at

    return _process_started_at(pid)


def test_a_run_killed_mid_way_is_failed_on_the_next_open_and_one_stored_but_not_recorded_is_kept(tmp_path):
    """A `loyaltysim run` killed while it computes leaves its row running: the next command marks it failed (the
    process is gone). One killed after writing its folder, before recording it, is recorded from the folder."""
    out = tmp_path / "out"
    proc = start("run", BASELINE, "--steps", 160, "--out", out, cwd=tmp_path)
    wait_until(lambda: sqlite_statuses(out) == ["running"], proc, "the run's row is running")
    proc.kill()
    proc.wait(TIMEOUT)
    url = f"sqlite:///{out}/registry.sqlite"
    with Registry(url) as reg:
        (row,) = reg.runs()
        assert row.status == "running" and row.owner_pid == proc.pid and row.lease_until is not None
    _, reg = open_results(out, url)
    with reg:
        (row,) = reg.runs()
    assert row.status == "failed" and f"pid {proc.pid} on " in row.error and "interrupted" in row.error
    # as if a run had written its folder and died before recording it: the next run records it, without computing
    ok(finish(start("run", BASELINE, "--steps", 160, "--out", out, "--json", cwd=tmp_path)))
    with Registry(url) as reg:
        reg.upsert_run(reg.get_run(row.key).model_copy(update={"status": "running", **Owner(
            socket.gethostname(), dead_pid(), None).stamp()}))
    manifest = out / "runs" / row.key[:16] / "manifest.json"
    before = manifest.stat().st_mtime_ns
    res = ok(finish(start("run", BASELINE, "--steps", 160, "--out", out, "--json", cwd=tmp_path)))
    assert row.key in res.stdout and manifest.stat().st_mtime_ns == before
    with Registry(url) as reg:
        assert reg.get_run(row.key).status == "done"


# ------------------------------------------------------------------------------------------ claims


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.sqlite"
    return request.getfixturevalue("postgres_server").new_database("claims")


def test_of_two_processes_claiming_the_same_runs_each_run_goes_to_one(db_url):
    """Two claimants race over 40 runs, each with its own connection: every run is claimed exactly once."""
    me = Owner.this_process()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = Owner(me.host, sleeper.pid, _started(sleeper.pid))
    keys = [f"{i:064x}" for i in range(40)]
    won: dict[str, list[str]] = {k: [] for k in keys}
    barrier = threading.Barrier(2)

    def claim_all(owner: Owner, name: str, order: list[str]) -> None:
        with Registry(db_url) as reg:
            barrier.wait(TIMEOUT)
            for key in order:  # the two go through the keys in opposite orders, and meet half-way
                if reg.claim_run(_row(key), owner, lambda row: False) is None:
                    won[key].append(name)

    with Registry(db_url) as reg:
        reg.check()
    try:
        threads = [threading.Thread(target=claim_all, args=(o, n, k))
                   for o, n, k in ((me, "me", keys), (other, "other", keys[::-1]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(len(w) == 1 for w in won.values()), won
        with Registry(db_url) as reg:
            mine = [r for r in reg.runs() if me.owns(r)]
            assert {r.key for r in mine} == {k for k, w in won.items() if w == ["me"]}
            theirs = next(r for r in reg.runs() if not me.owns(r))
            # held by a live owner: not mine to take; once it is gone it may be taken, once
            assert reg.claim_run(_row(theirs.key), me, lambda row: False).owner_pid == sleeper.pid
            sleeper.kill()
            sleeper.wait()
            assert reg.mark_abandoned() == len(keys) - len(mine)
            assert reg.claim_run(_row(theirs.key), me, lambda row: row.status == "failed") is None
            assert reg.release_claims(me, "interrupted: test") == len(mine) + 1
            assert {r.status for r in reg.runs()} == {"failed"}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_sweeps_on_one_folder_compute_each_run_once(reference, tmp_path):
    """Two sweeps started together on one output folder share the runs: each is computed once, by one of them;
    a sweep that ends while the other still computes some says so (exit 75), and the same command then finds
    every run stored."""
    out, log = tmp_path / "out", tmp_path / "runs.log"
    path = [str(TESTS), *os.environ.get("PYTHONPATH", "").split(os.pathsep), *sys.path]  # the command's own first
    env = clean_env(RUN_LOG=str(log), PYTHONPATH=os.pathsep.join(p for p in path if p))
    args = [sys.executable, "-c", "import run_counter; run_counter.main()",
            *map(str, sweep_args(reference, out))]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [finish(p) for p in procs]
    computed = log.read_text().split()
    assert len(computed) == RUNS and len(set(computed)) == RUNS, computed
    for res in results:
        assert res.returncode in (0, 75) and "Traceback" not in res.stderr, res.stderr
        if res.returncode == 75:
            assert re.search(r"\d+ runs are being computed by another sweep \(pid \d+ on .+\); run the same "
                             r"command afterwards to check all are stored", res.stderr), res.stderr
    assert sqlite_statuses(out) == ["done"] * RUNS
    res = ok(finish(start(*sweep_args(reference, out), cwd=tmp_path)))
    assert "(0 new, 8 already stored)" in res.stdout
    assert parquet_hashes(out) == reference.hashes


# ------------------------------------------------------------------------------------------ old registries

# The runs table as the previous version created it (no owner or lease columns)
OLD_RUNS_TABLE = """
CREATE TABLE runs (
    key VARCHAR(64) NOT NULL, experiment_name VARCHAR, scenario_name VARCHAR NOT NULL,
    seed_entropy VARCHAR NOT NULL, spawn_key VARCHAR NOT NULL, version VARCHAR NOT NULL, "commit" VARCHAR,
    dirty BOOLEAN NOT NULL, status VARCHAR NOT NULL, error TEXT, started_at DATETIME NOT NULL,
    finished_at DATETIME, duration_s FLOAT, run_dir VARCHAR NOT NULL, summary_json TEXT NOT NULL,
    PRIMARY KEY (key), CONSTRAINT ck_runs_status CHECK (status IN ('running', 'done', 'failed')))
"""


def test_a_registry_of_the_previous_version_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    db = tmp_path / "registry.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute(OLD_RUNS_TABLE)
        con.execute("INSERT INTO runs (key, scenario_name, seed_entropy, spawn_key, version, dirty, status, "
                    "started_at, run_dir, summary_json) VALUES ('k', 'base', '1', '[]', '0.1.0', 0, 'done', "
                    "'2025-03-01 12:00:00', '/r', '{}')")
    with Registry(f"sqlite:///{db}") as reg:
        (row,) = reg.runs()
        assert (row.key, row.status, row.owner_pid) == ("k", "done", None)
        assert reg.claim_run(_row("new"), Owner.this_process(), lambda r: False) is None
    with contextlib.closing(sqlite3.connect(db)) as con:
        columns = {c[1] for c in con.execute("PRAGMA table_info(runs)")}
    assert {"owner_host", "owner_pid", "owner_started_at", "lease_until"} <= columns


def locking_executor(db: Path, lock: list[sqlite3.Connection]):
    """A thread pool that locks the registry from another connection when the first run is submitted."""
    pool = ThreadPoolExecutor(1)
    submit = pool.submit

    def locking_submit(fn, *args):
        if not lock:
            lock.append(sqlite3.connect(db, isolation_level=None))
            lock[0].execute("BEGIN EXCLUSIVE")
        return submit(fn, *args)

    pool.submit = locking_submit
    return pool


@pytest.mark.parametrize("stop", ["bound", "ctrl-c"])
def test_in_process_a_sweep_stopped_while_its_database_is_away(reference, tmp_path, monkeypatch, stop):
    """In process, a registry that stays locked: beyond the bound the sweep stops saying how many runs are stored
    (what the command prints as its last line); Ctrl-C during the retries stops it at once, not after the bound."""
    from loyaltysim.experiments.sweep import SweepDatabaseLost, SweepInterrupted

    out = tmp_path / "out"
    db = out / "registry.sqlite"
    exp = load_experiment(reference.experiment)
    lock: list[sqlite3.Connection] = []
    if stop == "ctrl-c":  # the default bound, 60 s, and Ctrl-C a second after the registry is locked
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            with pytest.raises(SweepInterrupted, match=r"interrupted: 0 of 8 runs stored"):
                run_sweep(exp, out, f"sqlite:///{db}", workers=1, stream=io.StringIO(),
                          executor_factory=lambda: locking_executor(db, lock))
        finally:
            lock[0].close()
        assert time.monotonic() - t0 < 9  # a second, and at most SQLite's own 5 s wait of the attempt under way
        return

    monkeypatch.setenv(DB_RETRY_ENV_VAR, "0.5")
    try:
        with pytest.raises(SweepDatabaseLost, match=r"database is locked: 0 of 8 runs stored; run the same "
                                                    r"command to resume"):
            run_sweep(exp, out, f"sqlite:///{db}", workers=1, stream=io.StringIO(),
                      executor_factory=lambda: locking_executor(db, lock))
    finally:
        lock[0].close()
