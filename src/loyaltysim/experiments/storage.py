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

Every failure a user can cause or fix (unwritable directory, bad or unreachable database URL, missing run
directory) raises :class:`StorageError` with a one-line message; programming errors propagate unchanged.
"""

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import json
import operator
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pandas as pd
from sqlalchemy import CheckConstraint, DateTime, Engine, Text, TypeDecorator, create_engine, make_url
from sqlalchemy import exc as sa_exc
from sqlmodel import Field, Session, SQLModel, select

from loyaltysim.version import PACKAGE_DIR, __version__

__all__ = [
    "CodeIdentity",
    "ExperimentRecord",
    "Registry",
    "RunRecord",
    "StorageError",
    "check_writable",
    "code_identity",
    "file_sha256",
    "open_results",
    "read_run_dir",
    "rebuild_registry",
    "resolve_db_url",
    "run_dir_for",
    "run_dir_problem",
    "run_key",
    "write_run_dir",
]

DB_ENV_VAR = "LOYALTYSIM_DB"
_DB_HINT = "use --db or LOYALTYSIM_DB with e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class StorageError(Exception):
    """A storage problem the user can fix; the message is one readable line (the CLI prints it, exit 2)."""


# --------------------------------------------------------------------------------------------------
# Code identity and run keys
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeIdentity:
    """Which code produced a result: enough to reproduce it, or to know that it cannot be reproduced.

    ``source_digest`` covers the package's ``*.py`` files and ``dependencies`` the versions of the libraries the
    numbers go through: together they are what can change a result, and what a run key hashes. The commit and
    whether the checkout had uncommitted changes (``dirty``) are recorded for tracing, not hashed: a new file in
    the checkout, or a commit that changes only documents or tests, leaves stored runs valid.
    """

    version: str
    commit: str | None
    dirty: bool
    source_digest: str
    dependencies: tuple[tuple[str, str], ...] = ()  # (distribution, version) of NUMERIC_DEPENDENCIES


def _git(cwd: Path, *args: str) -> str | None:
    """Run git and return stdout, or None on any failure: a missing git must never stop a simulation."""
    # GIT_OPTIONAL_LOCKS=0 stops `git status` from taking index.lock behind the user's back.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _source_digest(pkg_dir: Path) -> str:
    """sha256 over sorted relative paths and contents of every ``*.py`` file under ``pkg_dir``.

    Each path and content is length-prefixed so that moving bytes between files changes the digest.
    """
    digest = hashlib.sha256()
    files = sorted((p.relative_to(pkg_dir).as_posix(), p) for p in pkg_dir.rglob("*.py") if p.is_file())
    for rel, path in files:
        for chunk in (rel.encode(), path.read_bytes()):
            digest.update(len(chunk).to_bytes(8, "big"))
            digest.update(chunk)
    return digest.hexdigest()


def _git_state(pkg_dir: Path) -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the work tree that tracks ``pkg_dir``, or ``(None, False)`` if none does.

    The package must be tracked, not merely inside a work tree: a copy installed into an ignored
    ``.venv/`` of some repository would otherwise be labelled with that repository's unrelated commit.
    """
    if _git(pkg_dir, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return None, False
    head = _git(pkg_dir, "rev-parse", "--verify", "HEAD")  # fails in a repository without commits
    status = _git(pkg_dir, "status", "--porcelain")
    # An unknown status counts as dirty: the safe side, it puts the source digest into run keys.
    return (head or "").strip() or None, status is None or bool(status.strip())


NUMERIC_DEPENDENCIES = ("numpy", "scipy", "mesa", "pandas", "pyarrow")  # what a run's numbers pass through


def _installed_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = []
    for name in names:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return tuple(versions)


@functools.cache
def code_identity() -> CodeIdentity:
    """Identity of the installed ``loyaltysim`` code (cached: the code does not change within a process)."""
    commit, dirty = _git_state(PACKAGE_DIR)
    return CodeIdentity(__version__, commit, dirty, _source_digest(PACKAGE_DIR),
                        _installed_versions(NUMERIC_DEPENDENCIES))


def _canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats as their shortest exact ``repr``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def run_key(
    effective_scenario: dict, seed_entropy: int, spawn_key: tuple[int, ...], code: CodeIdentity
) -> str:
    """sha256 hex naming one run: same inputs and code give the same key, any change gives another.

    ``effective_scenario`` must be JSON-native (e.g. a pydantic ``model_dump(mode="json")``) and fully
    resolved, defaults included, so that an unchanged run keeps its key when a default changes.  The code enters
    as what can change a result: the package's source digest and version and the numeric libraries' versions
    (see :class:`CodeIdentity`), so the same source reproduces keys across machines, installs and commits.
    """
    payload: dict[str, Any] = {
        "scenario": effective_scenario,
        "seed_entropy": operator.index(seed_entropy),
        "spawn_key": [operator.index(k) for k in spawn_key],
        "version": code.version,
        "source_digest": code.source_digest,
        "dependencies": dict(code.dependencies),
    }
    return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------------------------------


def _os_reason(exc: OSError) -> str:
    return f"{exc.strerror}: '{exc.filename}'" if exc.strerror and exc.filename else str(exc)


def check_writable(root: Path) -> Path:
    """Create ``root/runs`` and prove it is writable, so a long simulation does not fail only at the end.

    A real probe file is written: permission bits lie (e.g. for root, or on read-only mounts).
    """
    root = Path(root)
    runs = root / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"output directory '{root}' is not writable: {_os_reason(exc)}; "
            "choose a directory that can be created and written to"
        ) from exc
    return root


def run_dir_for(root: Path, key: str) -> Path:
    """Where run ``key`` lives: 16 hex digits (64 bits) keep paths short yet collision-free in practice."""
    return Path(root) / "runs" / key[:16]


def write_run_dir(root: Path, key: str, manifest: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write ``manifest.json`` and ``<name>.parquet`` per table into the run directory, atomically.

    Everything goes into a sibling temp directory that is renamed onto the final name only when complete;
    on any error it is removed.  An existing directory for the same key is replaced: runs are
    deterministic, so its content is the same.
    """
    bad = [name for name in tables if not _TABLE_NAME.fullmatch(name) or name == "manifest"]
    if bad:
        raise ValueError(f"invalid table names {bad}: use letters, digits, '_', '.', '-' (not 'manifest')")
    final = run_dir_for(check_writable(root), key)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", engine="pyarrow", index=False)
        digests = {name: file_sha256(tmp / f"{name}.parquet") for name in tables}
        text = json.dumps({**manifest, "table_sha256": digests}, indent=2, sort_keys=True) + "\n"
        (tmp / "manifest.json").write_text(text, encoding="utf-8")
        _move_into_place(tmp, final)
    except OSError as exc:
        raise StorageError(f"cannot write run directory '{final}': {_os_reason(exc)}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op after a successful rename
    return final


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_dir_problem(path: Path) -> str | None:
    """Why a stored run folder cannot be trusted, or None when it is complete and intact: its manifest reads, and
    every table it lists exists and matches the SHA-256 the manifest records for it (folders written before the
    digests were recorded are checked for the tables' presence only)."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "its manifest.json is missing"
    except (OSError, ValueError):
        return "its manifest.json cannot be read"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), list):
        return "its manifest.json lists no tables"
    digests = manifest.get("table_sha256") or {}
    for name in manifest["tables"]:
        table = Path(path) / f"{name}.parquet"
        if not table.is_file():
            return f"its table {name}.parquet is missing"
        if name in digests and file_sha256(table) != digests[name]:
            return f"its table {name}.parquet does not match the SHA-256 in its manifest (the file was changed)"
    return None


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first so the gap stays tiny."""
    try:
        os.replace(tmp, final)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    aside = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.replace(final, aside)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            # A concurrent writer of the same key won the race; its content is identical, so keep it.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def read_run_dir(path: Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Read a run directory back: ``(manifest, {table name: DataFrame})``."""
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        tables = {p.stem: pd.read_parquet(p, engine="pyarrow") for p in sorted(path.glob("*.parquet"))}
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from ValueError or OSError
        reason = _os_reason(exc) if isinstance(exc, OSError) else " ".join(str(exc).split())
        raise StorageError(
            f"run directory '{path}' is missing or incomplete: {reason}; "
            "give a directory written by a completed run (runs/<key16>/), or re-run the scenario"
        ) from exc
    return manifest, tables


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
    ``spawn_key`` is a JSON list; ``summary_json`` is the run's small JSON summary.
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


class Registry:
    """The results database: one row per run and per experiment, never bulk data.

    The engine is created lazily (in :meth:`check` or on first use), so constructing a ``Registry`` never
    touches the network; call :meth:`check` early to fail before a long simulation rather than after it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None

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
        """Connect and create missing tables, raising StorageError if the database is unusable."""
        with self._errors("cannot open results database"):
            engine, self._engine = self._engine or self._create_engine(), None
            try:
                SQLModel.metadata.create_all(engine)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        backend, database = url.get_backend_name(), url.database or ""
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args["connect_timeout"] = 5  # an unreachable server must fail fast, not hang
        elif backend == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # a fresh output dir just works
        # pre_ping: a long simulation may outlive an idle server connection
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)

    def _session(self) -> Session:
        if self._engine is None:
            self.check()
        assert self._engine is not None
        # Objects stay readable after the session closes; callers get plain detached rows.
        return Session(self._engine, expire_on_commit=False)

    def upsert_run(self, run: RunRecord) -> RunRecord:
        """Insert or update the row for ``run.key``: recording the same run twice never duplicates it."""
        with self._errors("results database error at"):
            try:
                return self._merge(run)
            except sa_exc.IntegrityError:
                # Another process may have inserted this key between our SELECT and INSERT; the retry
                # then becomes an UPDATE.  A second IntegrityError is a genuine constraint violation.
                return self._merge(run)

    def _merge(self, run: RunRecord) -> RunRecord:
        with self._session() as session:
            stored = session.merge(run)
            session.commit()
            return stored

    def get_run(self, key: str) -> RunRecord | None:
        with self._errors("results database error at"), self._session() as session:
            return session.get(RunRecord, key)

    def runs(self, experiment_name: str | None = None) -> list[RunRecord]:
        """All runs, or those of one experiment, oldest first."""
        query = select(RunRecord).order_by(RunRecord.started_at, RunRecord.key)
        if experiment_name is not None:
            query = query.where(RunRecord.experiment_name == experiment_name)
        with self._errors("results database error at"), self._session() as session:
            return list(session.exec(query).all())

    def is_empty(self) -> bool:
        """Whether no run is recorded at all."""
        with self._errors("results database error at"), self._session() as session:
            return session.exec(select(RunRecord.key).limit(1)).first() is None

    def ensure_experiment(self, name: str, description: str = "") -> ExperimentRecord:
        """The experiment called ``name``, created if absent (an existing description is kept)."""
        query = select(ExperimentRecord).where(ExperimentRecord.name == name)
        with self._errors("results database error at"), self._session() as session:
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

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_results(out_root: Path | str, db_url: str) -> tuple[Path, Registry]:
    """Check that the output root can be written and open the registry; if the database is unusable, remove the
    (still empty) folders this made and raise :class:`StorageError`, so that nothing is left behind."""
    out_root = Path(out_root).resolve()
    created = [d for d in (out_root, out_root / "runs") if not d.exists()]
    check_writable(out_root)
    registry = Registry(db_url)
    try:
        registry.check()
        if registry.is_empty():  # a registry lost or emptied while its run folders stay: index them again
            rebuild_registry(out_root, registry)
    except StorageError:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return out_root, registry


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
        seed, code = manifest.get("seed", {}), manifest.get("code", {})
        started = datetime.fromisoformat(manifest["created_at"]) if manifest.get("created_at") else _utcnow()
        registry.upsert_run(RunRecord(
            key=key, experiment_name=manifest.get("experiment"), scenario_name=manifest["scenario"]["name"],
            seed_entropy=str(seed.get("entropy")), spawn_key=json.dumps(seed.get("spawn_key", [])),
            version=manifest.get("package", {}).get("version", ""), commit=code.get("commit"),
            dirty=bool(code.get("dirty")), status="done", started_at=started,
            duration_s=sum(manifest.get("timings", {}).values()) or None, run_dir=str(run_dir.resolve()),
            summary_json=json.dumps(manifest.get("summary", {}), sort_keys=True)))
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
