"""Sweeps on a Dask cluster: an in-process cluster and a real one of processes on loopback store what the local
process pool stores, bit for bit; a worker killed mid-sweep has its runs computed again, each stored once; Ctrl-C
stops a sweep on a cluster; a worker running other code refuses its runs.

Skipped where ``distributed`` is not installed (the ``dev`` extra installs it).
"""

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster

from cli_process import TIMEOUT, clean_env, finish, ok, parquet_hashes, start
from loyaltysim.experiments import sweep as sweep_module
from loyaltysim.experiments.cluster import DaskExecutor
from loyaltysim.experiments.design import load_experiment
from loyaltysim.experiments.storage import Registry, code_identity
from loyaltysim.experiments.sweep import plan, run_sweep, run_task

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_experiment.toml"
SMALL = {"replications": 2, "population": 80, "horizon": "10 weeks", "warmup": "2 weeks"}  # 8 runs


def small_experiment(**more):
    return load_experiment(TINY, overrides={**SMALL, **more})


def sqlite_url(out: Path) -> str:
    return f"sqlite:///{out / 'registry.sqlite'}"


def stored(out: Path) -> dict[str, str]:
    """Run key: status, of every row in the registry."""
    with Registry(sqlite_url(out)) as reg:
        return {r.key: r.status for r in reg.runs()}


def run_folders(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def pool_reference(tmp_path_factory):
    """The small experiment swept by the local process pool: its run keys and table hashes."""
    out = tmp_path_factory.mktemp("pool")
    result = run_sweep(small_experiment(), out, sqlite_url(out), workers=2, progress=False)
    assert result.complete and result.stored == 8
    return stored(out), parquet_hashes(out)


def test_an_in_process_dask_cluster_stores_what_the_local_pool_stores(pool_reference, tmp_path):
    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    executors = []

    def factory():
        executors.append(DaskExecutor(client))
        return executors[-1]

    stream = io.StringIO()
    result = run_sweep(small_experiment(), tmp_path, sqlite_url(tmp_path), workers=2, executor_factory=factory,
                       stream=stream)
    assert result.complete and result.stored == 8 and not result.failed
    assert (stored(tmp_path), parquet_hashes(tmp_path)) == pool_reference
    assert executors[0].worker_slots() == 2
    assert client.status == "closed"  # the sweep's end shut the executor down, and its client with it
    # results streamed back one by one: a progress line per run
    assert len(re.findall(r"sweep tiny_price: \d/8 runs", stream.getvalue())) == 8


def test_a_local_dask_cluster_of_processes_from_the_command_line_stores_what_the_local_pool_stores(
        pool_reference, tmp_path):
    experiment = tmp_path / "small.toml"
    text = TINY.read_text().replace('scenario = "../../', f'scenario = "{TINY.parents[2]}/')
    for key, value in SMALL.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value!r}".replace("'", '"'), text, flags=re.M)
    experiment.write_text(text)
    assert load_experiment(experiment).design == small_experiment().design
    out = tmp_path / "out"
    res = ok(finish(start("sweep", experiment, "--executor", "dask", "--workers", 2, "--out", out, cwd=tmp_path)))
    assert "8 runs stored" in res.stdout and "2 worker(s)" in res.stderr
    assert (stored(out), parquet_hashes(out)) == pool_reference


class KillABusyWorker(DaskExecutor):
    """A local cluster's executor that kills (SIGKILL) a worker process computing a run, once the first result is
    in."""

    def __init__(self, cluster: LocalCluster):
        super().__init__(Client(cluster), cluster)
        self.killed: tuple[int, list] | None = None
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut = super().submit(fn, *args, **kwargs)
        fut.add_done_callback(lambda _: threading.Thread(target=self._kill_once).start())
        return fut

    def _kill_once(self) -> None:
        with self._lock:
            if self.killed is not None:
                return
            self.killed = (0, [])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                busy = {w: keys for w, keys in self.client.processing().items() if keys}
                if busy:
                    worker, keys = next(iter(busy.items()))
                    pid = self.client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    self.killed = (pid, list(keys))
                    return
                time.sleep(0.01)


def test_a_worker_killed_mid_sweep_has_its_runs_computed_again_and_each_run_is_stored_once(tmp_path):
    experiment = small_experiment(replications=3, population=150)  # 12 runs
    executors = []

    def factory():
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        executors.append(KillABusyWorker(cluster))
        return executors[-1]

    result = run_sweep(experiment, tmp_path, sqlite_url(tmp_path), workers=2, executor_factory=factory,
                       progress=False)
    pid, keys = executors[0].killed
    assert pid > 0 and keys, "no worker was computing a run when the first result came in"
    assert result.complete and result.stored == 12 and not result.failed
    rows = stored(tmp_path)
    assert sorted(rows) == sorted({t.key for t in plan(experiment, tmp_path)})
    assert set(rows.values()) == {"done"}
    assert run_folders(tmp_path) == sorted(k[:16] for k in rows)  # one folder a run, each complete
    assert all(sweep_module.run_dir_problem(tmp_path / "runs" / name) is None for name in run_folders(tmp_path))
    # the runs equal those an undisturbed cluster stores
    again = tmp_path / "again"
    run_sweep(experiment, again, sqlite_url(again), workers=1,
              executor_factory=lambda: DaskExecutor(Client(processes=False, n_workers=1, threads_per_worker=1,
                                                           dashboard_address=None)), progress=False)
    assert parquet_hashes(again) == parquet_hashes(tmp_path)


def test_ctrl_c_stops_a_sweep_on_a_local_dask_cluster_and_loses_nothing(tmp_path):
    experiment = tmp_path / "slow.toml"
    text = TINY.read_text().replace('scenario = "../../', f'scenario = "{TINY.parents[2]}/')
    text = re.sub(r"^replications = .*$", "replications = 4", text, flags=re.M)
    text = re.sub(r"^population = .*$", "population = 150", text, flags=re.M)
    experiment.write_text(text)
    out = tmp_path / "out"
    proc = start("sweep", experiment, "--executor", "dask", "--workers", 2, "--out", out, cwd=tmp_path)
    deadline = time.monotonic() + TIMEOUT
    while not (out / "runs").is_dir() or not run_folders(out):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run stored in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    res = finish(proc)
    assert res.returncode == 130, res.stderr
    assert time.monotonic() - t0 < 20
    assert "Traceback" not in res.stderr and "WARNING" not in res.stderr, res.stderr
    m = re.search(r"interrupted: (\d+) of 16 runs stored; run the same command to resume", res.stderr)
    assert m, res.stderr
    rows = stored(out)
    assert 1 <= int(m.group(1)) == sum(s == "done" for s in rows.values()) < 16
    assert "running" not in rows.values()  # the claims of the runs it did not finish are released
    # what it left is completed (in this process, on threads, to keep the test short)
    result = run_sweep(load_experiment(experiment), out, sqlite_url(out), workers=2,
                       executor_factory=lambda: ThreadPoolExecutor(2), progress=False)
    assert result.complete and set(stored(out).values()) == {"done"} and len(stored(out)) == 16


def test_a_worker_running_other_code_refuses_the_run(tmp_path):
    (tmp_path / "runs").mkdir()
    (task,) = plan(small_experiment(replications=1), tmp_path)[:1]
    other = dataclasses.replace(code_identity(), source_digest="0" * 64,
                                dependencies=(*code_identity().dependencies[:-1], ("pyarrow", "0.0")))
    outcome = run_task(dataclasses.replace(task, code=other))
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("this worker (") and "runs other code than the sweep's coordinator" in \
        outcome["error"]
    assert "source digest" in outcome["error"] and "pyarrow" in outcome["error"]
    assert not (tmp_path / "runs" / task.key[:16]).exists()
    assert run_task(task)["status"] == "done"


def test_a_worker_that_does_not_see_the_output_root_refuses_the_run(tmp_path):
    (task,) = plan(small_experiment(replications=1), tmp_path / "elsewhere")[:1]
    outcome = run_task(task)
    assert outcome["status"] == "failed" and "must be shared storage" in outcome["error"]
    assert not (tmp_path / "elsewhere").exists()


def test_stopping_dasks_own_executor_needs_no_cancel_futures():
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        executor = client.get_executor()
        futures = [executor.submit(time.sleep, 0.2) for _ in range(5)]
        sweep_module._stop_executor(executor)  # Dask's shutdown() takes no cancel_futures: not a TypeError
        time.sleep(0.3)
        assert sum(f.cancelled() for f in futures) >= 3


def test_in_flight_runs_are_sized_from_the_clusters_workers(tmp_path):
    class Counting(DaskExecutor):
        most = 0

        def submit(self, fn, /, *args, **kwargs):
            fut = super().submit(fn, *args, **kwargs)
            pending = sum(not f.done() for f in self.futures) + 1
            self.futures.append(fut)
            Counting.most = max(Counting.most, pending)
            return fut

    def factory():
        executor = Counting(Client(processes=False, n_workers=3, threads_per_worker=1, dashboard_address=None))
        executor.futures = []
        return executor

    experiment = small_experiment(replications=5, population=40, horizon="4 weeks", warmup="1 week")  # 20 runs
    result = run_sweep(experiment, tmp_path, sqlite_url(tmp_path), workers=1, executor_factory=factory,
                       progress=False)
    assert result.stored == 20
    assert 4 < Counting.most <= 12  # 4 per worker thread, not 4 for the one worker the caller named


def test_the_command_line_reports_a_scheduler_it_cannot_reach(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loyaltysim.cli import app
    from loyaltysim.experiments import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    res = CliRunner().invoke(app, ["sweep", str(TINY), "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "cannot connect to a Dask scheduler at 'tcp://127.0.0.1:1'" in res.output
    res = CliRunner().invoke(app, ["sweep", str(TINY), "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert res.exit_code == 2 and "--workers" in res.output


def test_a_cluster_started_with_dasks_own_commands_runs_the_sweep_given_its_scheduler(pool_reference, tmp_path):
    """`dask scheduler` and `dask worker` (as on a cluster of machines, here on loopback), then `loyaltysim sweep
    --scheduler ADDRESS`: the same runs as the local pool's."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed beside this Python")
    info = tmp_path / "scheduler.json"
    env = {**clean_env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    scheduler = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(info)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while not info.exists() or not info.read_text().strip():
            assert scheduler.poll() is None and time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.05)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--nworkers", "2",
                                   "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        experiment = tmp_path / "small.toml"
        text = TINY.read_text().replace('scenario = "../../', f'scenario = "{TINY.parents[2]}/')
        for key, value in SMALL.items():
            text = re.sub(rf"^{key} = .*$", f"{key} = {value!r}".replace("'", '"'), text, flags=re.M)
        experiment.write_text(text)
        out = tmp_path / "out"
        res = ok(finish(start("sweep", experiment, "--scheduler", address, "--out", out, cwd=tmp_path)))
        assert "8 runs stored" in res.stdout and re.search(r"[12] worker\(s\)", res.stderr), res.stderr
        assert (stored(out), parquet_hashes(out)) == pool_reference
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
