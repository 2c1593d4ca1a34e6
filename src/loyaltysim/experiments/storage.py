"""Persistence of simulation results, built so that every number can be traced back to its origin.

Two layers, deliberately separate:

* **Run directories** (``<root>/runs/<key16>/``) hold the bulk output: ``manifest.json`` plus one Parquet
  file per table.  They are written atomically, so a crash or a failing table never leaves a half-written
  run that could later be mistaken for a complete one.
* **The registry** (SQLite by default, PostgreSQL for shared use) holds one small row per run: identity,
  status, timing, a JSON summary and the path of the run directory.  Time series never go into the
  database; it stays small and fast to query, and the files stay the single source of bulk truth.

A run is named by :func:`run_key`, a hash of the effective scenario, the seed and the code identity
(:func:`code_identity`).  Identical inputs on identical code give the same key, which makes re-running
idempotent and makes stale results impossible to confuse with current ones.

Code identity and run keys are defined in :mod:`loyaltysim.experiments.identity`, run directories in
:mod:`loyaltysim.experiments.rundirs`: neither imports SQLAlchemy or SQLModel, so a sweep's worker process, which
never touches the registry, does not import them. This module re-exports their names.

Every failure a user can cause or fix (unwritable directory, bad or unreachable database URL, missing run
directory) raises :class:`StorageError` with a one-line message; programming errors propagate unchanged.

The database may go away for a moment while a long sweep runs (a PostgreSQL restart, a SQLite file another process
holds locked): every registry operation after the first connection is retried with backoff for a bounded time
(:data:`DB_RETRY_S`, or ``$LOYALTYSIM_DB_RETRY_S``), and only then raises :class:`DatabaseUnavailable`. A row set
to ``running`` names its owner (host, process id and the process's start time) and a lease its owner renews, so
that a row whose owner is gone can be told from one still being computed: the first is marked failed when the
registry is next opened (:meth:`Registry.mark_abandoned`), the second is left to its owner, and two sweeps on one
registry claim their runs (:meth:`Registry.claim_run`) so that no run is computed twice.
"""

import contextlib
import functools
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Engine,
    Text,
    TypeDecorator,
    create_engine,
    event,
    inspect,
    make_url,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, Session, SQLModel, select, update

from loyaltysim.experiments.identity import (  # noqa: F401  (re-exported)
    NUMERIC_DEPENDENCIES,
    CodeIdentity,
    _git,
    _git_state,
    _installed_versions,
    _result_code,
    _source_digest,
    canonical_json,
    code_identity,
    code_mismatch,
    run_key,
    run_key_of_canonical,
)
from loyaltysim.experiments.rundirs import (  # noqa: F401  (re-exported)
    SMALL_TABLE_CELLS,
    StorageError,
    _column_values,
    _label_values,
    _layout,
    _move_into_place,
    _one_category,
    _os_reason,
    _small_arrow_table,
    _write_table,
    check_writable,
    file_sha256,
    host_tag,
    labelled,
    read_run_dir,
    run_dir_for,
    run_dir_problem,
    write_run_dir,
)

__all__ = [
    "CodeIdentity",
    "DatabaseUnavailable",
    "ExperimentRecord",
    "LeaseKeeper",
    "Owner",
    "Registry",
    "RunRecord",
    "StorageError",
    "check_writable",
    "code_identity",
    "code_mismatch",
    "file_sha256",
    "host_tag",
    "open_results",
    "pid_alive",
    "read_run_dir",
    "rebuild_registry",
    "record_run_dir",
    "resolve_db_url",
    "run_dir_for",
    "run_dir_problem",
    "run_key",
    "write_run_dir",
]

DB_ENV_VAR = "LOYALTYSIM_DB"
_DB_HINT = "use --db or LOYALTYSIM_DB with e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"


DB_RETRY_ENV_VAR = "LOYALTYSIM_DB_RETRY_S"
DB_RETRY_S = 60.0  # how long a registry operation is retried through a database outage, by default

log = logging.getLogger(__name__)
SQLITE_BUSY_S = 5.0  # how long one SQLite statement waits for a lock held by another connection
LEASE_S = 600.0  # a claim of another host counts as abandoned this long after its owner last renewed it
LEASE_RENEW_S = 60.0  # how often an owner renews the lease of its running rows

T = TypeVar("T")


class DatabaseUnavailable(StorageError):
    """The database still failed, transiently (unreachable, restarting, locked), when the retry bound ran out."""


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps stored as naive UTC and returned timezone-aware, identically on SQLite and PostgreSQL.

    SQLite has no time zones, so without this the same registry code would return naive datetimes on one
    backend and aware ones on the other.  Naive inputs are taken to be UTC already.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class ExperimentRecord(SQLModel, table=True):
    """The registry's row of a named group of runs (e.g. one parameter sweep); the loaded experiment file is
    :class:`loyaltysim.experiments.design.Experiment`."""

    __tablename__ = "experiments"  # the table's name in existing registries: keep it

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)
    description: str = Field(default="", sa_type=Text)


class RunRecord(SQLModel, table=True):
    """The registry's row of one simulation run: its identity, outcome and where its data lives (bulk data stays
    in files).

    ``seed_entropy`` is a decimal string because user seeds may exceed 64-bit integer columns;
    ``spawn_key`` is a JSON list; ``summary_json`` is the run's small JSON summary. The ``owner_*`` fields name
    the process that set the row (the one computing it while it is ``running``) and ``lease_until`` how long a
    ``running`` row stays its owner's without being renewed (see :class:`Owner`). Columns added after the first
    release are nullable, so that :meth:`Registry.check` can add them to an existing registry.
    """

    __tablename__ = "runs"  # the table's name in existing registries: keep it
    __table_args__ = (CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_runs_status"),)

    key: str = Field(primary_key=True, max_length=64)
    experiment_name: str | None = Field(default=None, index=True)
    scenario_name: str
    seed_entropy: str
    spawn_key: str = "[]"
    version: str
    commit: str | None = None
    dirty: bool = False
    status: str = "running"
    error: str | None = Field(default=None, sa_type=Text)
    started_at: datetime = Field(default_factory=_utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_s: float | None = None
    run_dir: str
    summary_json: str = Field(default="{}", sa_type=Text)
    owner_host: str | None = None
    owner_pid: int | None = None
    owner_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --------------------------------------------------------------------------------------------------
# Owners of running rows
# --------------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie, dead but not yet reaped by its parent, does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    except OSError:
        return False
    info = _proc_stat(pid)
    return info is None or info[0] not in ("Z", "X")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks after boot) of a process, from Linux's /proc; None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name in parentheses may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


@functools.cache
def _boot_time() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1])
    return None


def _process_started_at(pid: int) -> datetime | None:
    """When process ``pid`` started (to 10 ms), or None where /proc cannot tell (not Linux, process gone)."""
    info, boot = _proc_stat(pid), _boot_time()
    if info is None or boot is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(boot + round(info[1] / ticks, 2), UTC)


@dataclass(frozen=True)
class Owner:
    """A process that sets registry rows to ``running``: host name, process id and the process's start time.

    On the owner's own host a row is its owner's while that process lives (the start time, read from Linux's /proc,
    tells it from a later process given the same id; elsewhere the process id alone is checked). Another host
    cannot see the process, so there a row is its owner's until its ``lease_until``, which the owner renews every
    :data:`LEASE_RENEW_S` (:class:`LeaseKeeper`) and which runs out :data:`LEASE_S` after the last renewal: a
    generous bound, so clocks a few minutes apart do no harm.
    """

    host: str
    pid: int
    started_at: datetime | None

    @classmethod
    def this_process(cls) -> "Owner":
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_started_at(pid))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def stamp(self) -> dict[str, Any]:
        """The owner fields of a row this owner sets to running now."""
        return {"owner_host": self.host, "owner_pid": self.pid, "owner_started_at": self.started_at,
                "lease_until": _utcnow() + timedelta(seconds=LEASE_S)}

    def owns(self, row: RunRecord) -> bool:
        return (row.owner_host, row.owner_pid) == (self.host, self.pid) and _same_start(row.owner_started_at,
                                                                                      self.started_at)

    @staticmethod
    def of(row: RunRecord) -> "Owner | None":
        if row.owner_host is None or row.owner_pid is None:
            return None
        return Owner(row.owner_host, row.owner_pid, row.owner_started_at)


def _same_start(a: datetime | None, b: datetime | None) -> bool:
    return a is None or b is None or abs((a - b).total_seconds()) < 1.0


def owner_alive(row: RunRecord, now: datetime | None = None) -> bool:
    """Whether a ``running`` row's owner may still be computing it: its process lives (on this host), or its lease
    has not run out (another host). A row without an owner (written by an earlier version) has none alive."""
    owner = Owner.of(row)
    if owner is None:
        return False
    if owner.host != socket.gethostname():
        return row.lease_until is not None and row.lease_until > (now or _utcnow())
    if not pid_alive(owner.pid):
        return False
    return owner.pid == os.getpid() or _same_start(owner.started_at, _process_started_at(owner.pid))


class LeaseKeeper:
    """While in use, renews the lease of the running rows of this process every :data:`LEASE_RENEW_S`, in a
    thread, so that they stay its own however long a run takes. A failed renewal is tried again at the next."""

    def __init__(self, registry: "Registry", owner: Owner, every_s: float = LEASE_RENEW_S) -> None:
        self.registry, self.owner, self.every_s = registry, owner, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loyaltysim-lease", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(StorageError):
                self.registry.renew_leases(self.owner, retry_s=0.0)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------


def _mask_url(url: str) -> str:
    """The URL with its password hidden, safe for error messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _one_line(exc: BaseException) -> str:
    """Short reason for an error: the driver's own message if any, whitespace collapsed to one line."""
    orig = getattr(exc, "orig", None) or exc
    text = _os_reason(orig) if isinstance(orig, OSError) else str(orig)
    text = " ".join(text.split()) or type(orig).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _transient(exc: BaseException) -> bool:
    """Whether a database error may go away by itself: the server unreachable or restarting, a connection
    dropped, a SQLite file locked by another connection, no pooled connection free in time."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.DisconnectionError, sa_exc.TimeoutError))


def retry_bound_from_env() -> float:
    """The retry bound in seconds: ``$LOYALTYSIM_DB_RETRY_S`` if set, else :data:`DB_RETRY_S`."""
    raw = os.environ.get(DB_RETRY_ENV_VAR, "").strip()
    if not raw:
        return DB_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise StorageError(f"{DB_RETRY_ENV_VAR} must be a number of seconds >= 0, got '{raw}'")
    return value


RETRY_FIRST_DELAY_S = 0.1
KEYS_PER_QUERY = 500  # keys in one IN (...) look-up: well below SQLite's limit of bound parameters
RETRY_MAX_DELAY_S = 2.0


class Registry:
    """The results database: one row per run and per experiment, never bulk data.

    The engine is created lazily (in :meth:`check` or on first use), so constructing a ``Registry`` never
    touches the network; call :meth:`check` early to fail before a long simulation rather than after it: it does
    not retry, since nothing is lost by stopping then. Every later operation is retried through transient failures
    (see :func:`_transient`) for ``retry_s`` seconds (default: ``$LOYALTYSIM_DB_RETRY_S``, else :data:`DB_RETRY_S`)
    with a backoff from 0.1 s to 2 s between attempts, each in a fresh session; the pool pings a connection before
    handing it out, so one the server dropped is replaced rather than failing the operation. Each operation is a
    single transaction that is safe to run again (an upsert, a conditional update), so a retry after a commit whose
    acknowledgement was lost does no harm.
    """

    def __init__(self, url: str, *, retry_s: float | None = None) -> None:
        self.url = url
        self.retry_s = retry_bound_from_env() if retry_s is None else retry_s
        self._engine: Engine | None = None
        # asked between two attempts; true ends the retries at once (a sweep asked to stop does not wait them out)
        self.give_up: Callable[[], bool] = lambda: False

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn environmental database failures into a one-line StorageError.

        Integrity and data errors are bugs in the caller, not the user's environment, so they propagate.
        """
        try:
            yield
        except (sa_exc.IntegrityError, sa_exc.DataError):
            raise
        except (sa_exc.SQLAlchemyError, ImportError, OSError) as exc:
            raise StorageError(f"{what} '{_mask_url(self.url)}': {_one_line(exc)}; {_DB_HINT}") from exc

    def check(self) -> None:
        """Connect, create missing tables and columns, raising StorageError if the database is unusable."""
        with self._errors("cannot open results database"):
            self._open()

    def _open(self) -> Engine:
        if self._engine is None:
            engine = self._create_engine()
            try:
                _create_tables(engine)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        backend, database = url.get_backend_name(), url.database or ""
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args["connect_timeout"] = 5  # an unreachable server must fail fast, not hang
        elif backend == "sqlite":
            # a statement waits this long for another connection's lock (SQLite's busy timeout); longer waits
            # are the retries' business
            connect_args["timeout"] = min(SQLITE_BUSY_S, self.retry_s)
            if database not in ("", ":memory:") and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)  # a fresh output dir just works
        # pre_ping: a long simulation may outlive an idle server connection, or the server itself
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if backend == "sqlite":
            wal = database not in ("", ":memory:") and not database.startswith("file:") and not _on_network_fs(
                Path(database))
            event.listen(engine, "connect", functools.partial(_sqlite_on_connect, wal=wal))
        return engine

    def _retrying(self, work: Callable[[Session], T], retry_s: float | None = None) -> T:
        """``work(session)`` in a fresh session, again after each transient failure until ``retry_s`` (default:
        the registry's bound) has passed; then :class:`DatabaseUnavailable`. Other failures raise at once."""
        bound = self.retry_s if retry_s is None else retry_s
        deadline = time.monotonic() + bound
        delay = RETRY_FIRST_DELAY_S
        attempt = 0
        while True:
            try:
                # Objects stay readable after the session closes; callers get plain detached rows.
                with self._errors("results database error at"), Session(self._open(),
                                                                         expire_on_commit=False) as session:
                    done = work(session)
                if attempt:
                    log.info("results database '%s' answers again after %d retr%s", _mask_url(self.url), attempt,
                             "y" if attempt == 1 else "ies")
                return done
            except StorageError as err:
                cause = err.__cause__
                if cause is None or not _transient(cause):
                    raise
                if time.monotonic() + delay > deadline or self.give_up():
                    raise DatabaseUnavailable(f"results database '{_mask_url(self.url)}' still unavailable after "
                                              f"{bound:g} s of retries: {_one_line(cause)}") from cause
                attempt += 1
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                        "results database '%s' unavailable (%s): retrying (attempt %d), for up to %.0f s more",
                        _mask_url(self.url), _one_line(cause), attempt, max(deadline - time.monotonic(), 0.0))
            time.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_DELAY_S)

    def upsert_run(self, run: RunRecord) -> RunRecord:
        """Insert or update the row for ``run.key``: recording the same run twice never duplicates it."""
        try:
            return self._retrying(lambda session: _merge(session, run))
        except sa_exc.IntegrityError:
            # Another process may have inserted this key between our SELECT and INSERT; the retry
            # then becomes an UPDATE.  A second IntegrityError is a genuine constraint violation.
            return self._retrying(lambda session: _merge(session, run))

    def get_run(self, key: str) -> RunRecord | None:
        return self._retrying(lambda session: session.get(RunRecord, key))

    def runs(self, experiment_name: str | None = None, status: str | None = None) -> list[RunRecord]:
        """All runs, or those of one experiment or with one status, oldest first."""
        query = select(RunRecord).order_by(RunRecord.started_at, RunRecord.key)
        if experiment_name is not None:
            query = query.where(RunRecord.experiment_name == experiment_name)
        if status is not None:
            query = query.where(RunRecord.status == status)
        return self._retrying(lambda session: list(session.exec(query).all()))

    def keys(self, experiment_name: str | None = None, status: str | None = None) -> list[str]:
        """The keys of all runs, or of those of one experiment or with one status (no row is loaded)."""
        query = select(RunRecord.key)
        if experiment_name is not None:
            query = query.where(RunRecord.experiment_name == experiment_name)
        if status is not None:
            query = query.where(RunRecord.status == status)
        return self._retrying(lambda session: list(session.exec(query).all()))

    def runs_by_key(self, keys: Iterable[str], columns: Sequence[str] | None = None) -> dict[str, Any]:
        """The rows of the given keys that exist, by key, in a few queries (of :data:`KEYS_PER_QUERY` keys each)
        rather than one a key. With ``columns`` (names of :class:`RunRecord` fields), only those: a named tuple per
        row, far lighter than a whole row (a sweep of 10,000 runs looks up every key when it starts)."""
        keys = list(dict.fromkeys(keys))
        fields = [getattr(RunRecord, c) for c in columns] if columns is not None else None
        found: dict[str, Any] = {}
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start:start + KEYS_PER_QUERY]
            if fields is None:
                query = select(RunRecord).where(RunRecord.key.in_(chunk))
                rows = self._retrying(lambda session, q=query: list(session.exec(q).all()))
                found.update((r.key, r) for r in rows)
            else:
                query = select(RunRecord.key, *fields).where(RunRecord.key.in_(chunk))
                rows = self._retrying(lambda session, q=query: list(session.exec(q).all()))
                found.update((r[0], tuple(r[1:])) for r in rows)
        return found

    def is_empty(self) -> bool:
        """Whether no run is recorded at all."""
        return self._retrying(lambda session: session.exec(select(RunRecord.key).limit(1)).first() is None)

    def ensure_experiment(self, name: str, description: str = "") -> ExperimentRecord:
        """The experiment called ``name``, created if absent (an existing description is kept)."""
        query = select(ExperimentRecord).where(ExperimentRecord.name == name)

        def work(session: Session) -> ExperimentRecord:
            experiment = session.exec(query).first()
            if experiment is None:
                experiment = ExperimentRecord(name=name, description=description)
                session.add(experiment)
                try:
                    session.commit()
                except sa_exc.IntegrityError:  # created concurrently by another process
                    session.rollback()
                    experiment = session.exec(query).one()
            return experiment

        return self._retrying(work)

    def claim_run(self, run: RunRecord, owner: Owner,
                  replaceable: Callable[[RunRecord], bool]) -> RunRecord | None:
        """Set the row of ``run.key`` to ``running`` by ``owner``, atomically, unless another row stands in the way;
        None when claimed, else that row.

        A missing row is inserted (the key is the primary key, so of two processes inserting it one fails and
        looks again); an existing one is taken if ``owner`` already holds it or ``replaceable(row)`` says so
        (e.g. failed, or running for an owner that is gone), by an update conditional on the row being unchanged
        since it was read, so that of two processes taking it only one succeeds.
        """
        claim = {**run.model_dump(), **owner.stamp(), "status": "running", "error": None, "finished_at": None}

        def work(session: Session) -> RunRecord | None:
            insert = _insert_new_statement(session.get_bind().dialect.name)
            if insert is not None:  # the common case, a run not in the registry yet: one statement
                inserted = session.connection().execute(insert, claim)
                session.commit()
                if inserted.rowcount == 1:
                    return None
            for _ in range(20):  # each round another process changed the row first: bounded, never a loop forever
                row = session.get(RunRecord, run.key, populate_existing=True)
                if row is None:
                    session.add(RunRecord(**claim))
                    try:
                        session.commit()
                        return None
                    except sa_exc.IntegrityError:
                        session.rollback()
                        continue
                if not ((row.status == "running" and owner.owns(row)) or replaceable(row)):
                    session.expunge(row)
                    return row
                changes = {k: v for k, v in claim.items() if k != "key"}
                taken = session.exec(update(RunRecord).where(*_unchanged(row)).values(**changes))
                session.commit()
                if taken.rowcount == 1:
                    return None
            raise StorageError(f"cannot claim run {run.key[:16]} in '{_mask_url(self.url)}': its row keeps changing")

        return self._retrying(work)

    def renew_leases(self, owner: Owner, retry_s: float | None = None) -> int:
        """Extend the lease of every running row of ``owner``; how many there are."""
        values = {"lease_until": owner.stamp()["lease_until"]}
        query = update(RunRecord).where(RunRecord.status == "running", *_owned_by(owner)).values(**values)
        return self._retrying(lambda session: _execute_update(session, query), retry_s)

    def release_claims(self, owner: Owner, error: str, retry_s: float | None = None) -> int:
        """Mark every running row of ``owner`` failed with ``error`` (its runs stopped before being stored)."""
        values = {"status": "failed", "error": error, "finished_at": _utcnow(), "lease_until": None}
        query = update(RunRecord).where(RunRecord.status == "running", *_owned_by(owner)).values(**values)
        return self._retrying(lambda session: _execute_update(session, query), retry_s)

    def mark_abandoned(self) -> int:
        """Mark failed every ``running`` row whose owner is gone (see :func:`owner_alive`): a run whose process
        died, or lost its database, before it recorded the end. Each row is marked only if unchanged since it was
        read, so a row another process has just claimed again is left alone. Returns how many were marked."""
        now = _utcnow()
        marked = 0
        for row in self.runs(status="running"):
            if owner_alive(row, now):
                continue
            owner = Owner.of(row)
            who = f"its process ({owner.describe()})" if owner else "the process that ran it (which recorded no owner)"
            values = {"status": "failed", "finished_at": now, "lease_until": None,
                      "error": f"interrupted: {who} ended before the run was stored"}
            query = update(RunRecord).where(*_unchanged(row)).values(**values)
            marked += self._retrying(lambda session, q=query: _execute_update(session, q))
        return marked

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_UPSERT = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}  # dialects with INSERT ... ON CONFLICT


# File systems on which SQLite's write-ahead log must not be used: it needs memory shared between the processes that
# open the database, which a network file system cannot give (https://www.sqlite.org/wal.html).
_NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs",
                         "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "beegfs", "ocfs2", "gfs2"})


def _on_network_fs(path: Path) -> bool:
    """Whether ``path`` lies on a network or cluster file system, by Linux's /proc/mounts (False where unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    target = str(path.resolve())
    best, fstype = -1, ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, fstype = len(point), fields[2]
    return fstype in _NETWORK_FS


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any, *, wal: bool) -> None:
    """Make a SQLite commit cheap without making it unsafe: in write-ahead-log mode with ``synchronous=NORMAL`` a
    commit appends to the log and does not wait for the disk (the log is synced when it is copied back into the
    database), so recording a run costs a fraction of a millisecond instead of tens (two fsyncs per commit in
    SQLite's default mode). A committed row survives the death of any process, the sweep's included; only a crash
    of the operating system or a power cut may lose the last commits, and what they recorded is in run folders,
    from which the next sweep records it again. Where the log cannot be used (an in-memory database, a network file
    system) the defaults stay."""
    if not wal:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        (mode,) = cursor.fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _merge(session: Session, run: RunRecord) -> RunRecord:
    """Insert or replace the row of ``run.key``: one ``INSERT ... ON CONFLICT DO UPDATE`` statement where the
    database has it (SQLite, PostgreSQL), else the ORM's merge (a look-up, then an insert or an update)."""
    statement = _upsert_statement(session.get_bind().dialect.name)
    if statement is None:
        stored = session.merge(run)
        session.commit()
        return stored
    session.connection().execute(statement, {column.name: getattr(run, column.name)
                                             for column in RunRecord.__table__.columns})
    session.commit()
    return run.model_copy()


@functools.cache
def _insert_new_statement(dialect: str) -> Any:
    """The insert of a whole ``runs`` row that does nothing if the key is there already, or None."""
    if dialect not in _UPSERT:
        return None
    return _UPSERT[dialect](RunRecord.__table__).on_conflict_do_nothing(index_elements=[RunRecord.__table__.c.key])


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """The upsert of a whole ``runs`` row in ``dialect``, built once (its compiled form is then cached), or None."""
    if dialect not in _UPSERT:
        return None
    table = RunRecord.__table__
    statement = _UPSERT[dialect](table)
    return statement.on_conflict_do_update(index_elements=[table.c.key], set_={
        column.name: statement.excluded[column.name] for column in table.columns if column.name != "key"})


def _execute_update(session: Session, query: Any) -> int:
    result = session.exec(query)
    session.commit()
    return result.rowcount


def _unchanged(row: RunRecord) -> tuple[Any, ...]:
    """Conditions that hold while the row is as read: every claim changes its status or its lease (a new one
    runs out at another microsecond), and its owner."""
    return (RunRecord.key == row.key, RunRecord.status == row.status,
            RunRecord.owner_host.is_not_distinct_from(row.owner_host),
            RunRecord.owner_pid.is_not_distinct_from(row.owner_pid),
            RunRecord.lease_until.is_not_distinct_from(row.lease_until))


def _owned_by(owner: Owner) -> tuple[Any, ...]:
    return RunRecord.owner_host == owner.host, RunRecord.owner_pid == owner.pid


def _create_tables(engine: Engine) -> None:
    """Create the registry's missing tables and columns. Two processes opening a new registry at once (two sweeps
    started together) may both try to create a table; the one that loses finds it there on a second look."""
    try:
        SQLModel.metadata.create_all(engine)
    except (sa_exc.OperationalError, sa_exc.ProgrammingError, sa_exc.IntegrityError):
        time.sleep(0.2)
        SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """Add to an existing ``runs`` table the (nullable) columns added since it was created: registries of an
    earlier version keep working, their rows unchanged. Two processes may race to add a column; the loser finds
    it there."""
    table = RunRecord.__table__
    present = {c["name"] for c in inspect(engine).get_columns(table.name)}
    for column in table.columns:
        if column.name in present:
            continue
        assert column.nullable, f"a column added to an existing registry must be nullable: {column.name}"
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(dialect=engine.dialect)}"
        try:
            with engine.begin() as conn:
                conn.execute(sql_text(ddl))
        except sa_exc.SQLAlchemyError:
            if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                raise


def open_results(out_root: Path | str, db_url: str) -> tuple[Path, Registry]:
    """Check that the output root can be written and open the registry; if the database is unusable, remove the
    (still empty) folders this made and raise :class:`StorageError`, so that nothing is left behind.

    Rows left ``running`` by processes that are gone are marked failed (:meth:`Registry.mark_abandoned`), and an
    empty registry is rebuilt from the run folders."""
    out_root = Path(out_root).resolve()
    created = [d for d in (out_root, out_root / "runs") if not d.exists()]
    check_writable(out_root)
    registry = Registry(db_url)
    try:
        registry.check()
        if registry.is_empty():  # a registry lost or emptied while its run folders stay: index them again
            rebuild_registry(out_root, registry)
        registry.mark_abandoned()
    except StorageError:
        registry.close()
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return out_root, registry


def record_run_dir(registry: Registry, run_dir: Path, key: str | None = None) -> RunRecord | None:
    """Record a complete, intact run folder as a ``done`` run (from its manifest), unless the registry holds it as
    done already; None if the folder is damaged or incomplete, or (given ``key``) is not that run's. A run whose
    folder was written but not recorded (its recording process died, or lost its database) is so recovered."""
    if run_dir_problem(run_dir) is not None:
        return None
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    found = manifest.get("run_key")
    if not isinstance(found, str) or (key is not None and found != key):
        return None
    existing = registry.get_run(found)
    if existing is not None and existing.status == "done":
        return existing
    seed, code = manifest.get("seed", {}), manifest.get("code", {})
    started = datetime.fromisoformat(manifest["created_at"]) if manifest.get("created_at") else _utcnow()
    return registry.upsert_run(RunRecord(
        key=found, experiment_name=manifest.get("experiment"), scenario_name=manifest["scenario"]["name"],
        seed_entropy=str(seed.get("entropy")), spawn_key=json.dumps(seed.get("spawn_key", [])),
        version=manifest.get("package", {}).get("version", ""), commit=code.get("commit"),
        dirty=bool(code.get("dirty")), status="done", started_at=started,
        duration_s=sum(manifest.get("timings", {}).values()) or None, run_dir=str(run_dir.resolve()),
        summary_json=json.dumps(manifest.get("summary", {}), sort_keys=True)))


def rebuild_registry(out_root: Path | str, registry: Registry) -> tuple[int, int]:
    """Record in the registry every complete, intact run folder under ``out_root/runs`` it does not hold as done
    (the folders are the data; the registry is their index, so a lost or emptied one can be rebuilt). Returns
    (runs recorded, folders skipped as damaged or incomplete)."""
    runs = Path(out_root) / "runs"
    recorded = skipped = 0
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if run_dir.name.startswith(".") or not run_dir.is_dir():
            continue  # a temporary folder of a writer: not a run (yet)
        if run_dir_problem(run_dir) is not None:
            skipped += 1
            continue
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        key = manifest.get("run_key")
        existing = registry.get_run(key) if isinstance(key, str) else None
        if not isinstance(key, str) or (existing is not None and existing.status == "done"):
            continue
        if record_run_dir(registry, run_dir, key) is not None:
            recorded += 1
    return recorded, skipped


def resolve_db_url(cli_url: str | None, out_root: Path) -> str:
    """Results database URL: ``--db`` beats ``$LOYALTYSIM_DB`` beats a SQLite file inside the output root.

    The default path is absolute so the registry does not depend on the working directory.
    """
    if cli_url:
        return cli_url
    env_url = os.environ.get(DB_ENV_VAR, "").strip()
    if env_url:
        return env_url
    return f"sqlite:///{(Path(out_root) / 'registry.sqlite').resolve()}"
