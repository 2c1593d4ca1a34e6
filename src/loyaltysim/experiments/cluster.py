"""Sweeps on a Dask cluster: ``loyaltysim sweep EXPERIMENT --executor dask [--scheduler ADDRESS]``.

The sweep's coordinator (the process running ``loyaltysim sweep``) plans, claims and records the runs as with the
local process pool; only the computing moves. Each run goes to the cluster through the
:class:`concurrent.futures.Executor` of a ``distributed.Client`` (:meth:`distributed.Client.get_executor`), wrapped in
:class:`DaskExecutor` so that it behaves as :func:`~loyaltysim.experiments.sweep.run_sweep` expects of any executor:

* results come back one by one as runs finish, and only the coordinator writes the registry;
* a stop (Ctrl-C) cancels every run not yet finished and closes the client, and the local cluster if this process
  started one (a run a remote worker is computing cannot be interrupted: it finishes and writes its run folder,
  which the next sweep finds written but not recorded and records);
* a worker that dies has its runs computed again on other workers by Dask's scheduler (up to its
  ``distributed.scheduler.allowed-failures``, 3 by default; a run that kills every worker it lands on is then
  recorded failed with Dask's ``KilledWorker`` error). Runs are deterministic and their folders written atomically,
  so a run computed twice is stored once;
* the runs in flight are sized from the cluster's threads (:meth:`DaskExecutor.worker_slots`), looked up again as
  workers come and go, not from this machine's CPUs.

Each worker checks that it runs the coordinator's code (:func:`~loyaltysim.experiments.identity.code_mismatch`,
in :func:`~loyaltysim.experiments.worker.run_task`) and writes the run folder under the output root itself: on a
cluster of several machines the output root must be shared storage mounted at the same path on every machine
(a worker that does not see it fails its runs with a message that says so, and the coordinator records a run done
only once it sees the run's folder).

``distributed`` is an optional dependency (``pip install 'loyaltysim[dask]'``); importing this module without it
raises :class:`ImportError`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0  # how long connecting to a scheduler may take
WORKERS_WAIT_S = 60.0  # how long a sweep on a scheduler waits for its first worker
SLOTS_REFRESH_S = 2.0  # how often the cluster's thread count is looked up again

log = logging.getLogger(__name__)


class ClusterError(Exception):
    """The Dask cluster cannot be used (no scheduler at the address, no worker joined); one readable line."""


class _LocalWorker(WorkerPlugin):
    """Workers of a local cluster ignore Ctrl-C, as the local pool's do: the terminal sends it to every process of
    the command, and the coordinator alone decides what happens (it stops the cluster). Nor do they log what a stop
    does to them: each run it cancels, and the scheduler, which lives in the coordinator, gone before they are."""

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)
        logging.getLogger("distributed.worker").addFilter(_not_a_lost_scheduler)


def _not_a_lost_scheduler(record: logging.LogRecord) -> bool:
    return "communicate with scheduler" not in record.getMessage()


class DaskExecutor(Executor):
    """A Dask client's executor with the interface of the local pool: ``shutdown`` takes ``cancel_futures`` (Dask's
    own executor does not) and ends the client, and the local cluster if this executor owns one; ``worker_slots``
    tells the sweep how many runs the cluster computes at once."""

    def __init__(self, client: Client, cluster: LocalCluster | None = None):
        self.client, self.cluster = client, cluster
        # pure=False: every submission is a task of its own, never merged with an earlier one by Dask
        self._inner = client.get_executor(pure=False)
        self._slots, self._slots_at = 0, float("-inf")
        self._closed = False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        return self._inner.submit(fn, *args, **kwargs)

    def worker_slots(self) -> int:
        """Threads over all the cluster's workers now (looked up at most every :data:`SLOTS_REFRESH_S`)."""
        now = time.monotonic()
        if now - self._slots_at >= SLOTS_REFRESH_S:
            with contextlib.suppress(Exception):  # a scheduler out of reach: keep the last count
                self._slots = sum(self.client.nthreads().values())
            self._slots_at = now
        return self._slots

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End the executor; with ``cancel_futures`` (or without ``wait``) every run not finished is cancelled."""
        if self._closed:
            return
        self._closed = True
        try:
            # Dask's executor cancels its futures when it does not wait, and waits for them all otherwise
            self._inner.shutdown(wait=wait and not cancel_futures)
        finally:
            with contextlib.suppress(Exception):
                self.client.close()
            if self.cluster is not None:
                # a worker busy with a run when a stop closes the cluster is killed after a few seconds: as intended
                with contextlib.suppress(Exception), _quiet("distributed.nanny"):
                    self.cluster.close()


@contextlib.contextmanager
def _quiet(logger_name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Log only from ``level`` up on ``logger_name`` while in use."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def local_cluster(workers: int) -> DaskExecutor:
    """A Dask cluster of ``workers`` processes of one thread each, on loopback, owned by the returned executor."""
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                           dashboard_address=None)
    try:
        client = Client(cluster)
        client.register_plugin(_LocalWorker(), name="loyaltysim-local-worker")
    except BaseException:
        cluster.close()
        raise
    log.info("local Dask cluster started: %d worker process(es) of one thread, scheduler %s", workers,
             cluster.scheduler_address)
    return DaskExecutor(client, cluster)


def connect(address: str, wait_s: float | None = None) -> DaskExecutor:
    """An executor on the Dask scheduler at ``address``, once at least one worker has joined it (waiting up to
    ``wait_s``); :class:`ClusterError` when there is no scheduler there or no worker joins in time."""
    wait_s = WORKERS_WAIT_S if wait_s is None else wait_s
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as err:
        raise ClusterError(f"cannot connect to a Dask scheduler at '{address}': {' '.join(str(err).split())}; "
                           "start one with `dask scheduler` and give the address it prints") from None
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except (TimeoutError, OSError) as err:
        client.close()
        raise ClusterError(f"no worker joined the Dask scheduler at '{address}' within {wait_s:g} s; start workers "
                           f"with `dask worker {address} --nthreads 1`") from err
    executor = DaskExecutor(client)
    log.info("connected to the Dask scheduler at %s: %d worker thread(s) now", address, executor.worker_slots())
    return executor
