"""Tests of result storage: run keys, atomic run directories and the run registry (SQLite and PostgreSQL)."""

import contextlib
import dataclasses
import importlib.metadata
import json
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
from sqlmodel import SQLModel

import loyaltysim
from loyaltysim.experiments import rundirs, storage
from loyaltysim.experiments.storage import (
    CodeIdentity,
    ExperimentRecord,
    Registry,
    RunRecord,
    StorageError,
    code_identity,
    file_sha256,
    read_run_dir,
    resolve_db_url,
    run_dir_for,
    run_key,
    write_run_dir,
)

SCENARIO = {"name": "base", "n_customers": 500, "churn": {"rate": 0.1, "winback": [0.25, 1e-9]}, "ok": True}
CLEAN = CodeIdentity(version="0.1.0", commit="c" * 40, dirty=False, source_digest="d" * 64)


def _key(scenario=SCENARIO, seed=12345, spawn=(0, 3), code=CLEAN) -> str:
    return run_key(scenario, seed, spawn, code)


# ----------------------------------------------------------------------------------- run keys


def test_run_key_is_stable_hex_and_ignores_dict_order():
    reordered = dict(reversed(list(SCENARIO.items())))
    assert _key() == _key() == _key(scenario=reordered)
    assert len(_key()) == 64 and int(_key(), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"scenario": {**SCENARIO, "n_customers": 501}},
        {"scenario": {**SCENARIO, "churn": {"rate": 0.1, "winback": [0.25, 1.0000000000000002e-9]}}},
        {"scenario": {**SCENARIO, "extra": None}},
        {"scenario": {**SCENARIO, "n_customers": 500.0}},
        {"seed": 12346},
        {"seed": 2**200},
        {"spawn": (0, 4)},
        {"spawn": (0, 3, 0)},
        {"code": dataclasses.replace(CLEAN, version="0.1.1")},
        {"code": dataclasses.replace(CLEAN, source_digest="f" * 64)},
        {"code": dataclasses.replace(CLEAN, dependencies=(("numpy", "2.5.5"),))},
    ],
    ids=lambda change: next(iter(change)),
)
def test_run_key_changes_with_every_input(change):
    assert _key(**change) != _key()


def test_run_key_ignores_the_commit_and_the_state_of_the_checkout():
    """What can change a result is the package's source and the numeric libraries: a commit that changes only
    documents or tests, or a new file in the checkout (a dirty tree), leaves the keys of stored runs valid."""
    for traced in (dict(commit="e" * 40), dict(dirty=True), dict(commit=None)):
        assert _key(code=dataclasses.replace(CLEAN, **traced)) == _key()


def test_code_identity_names_the_numeric_libraries_installed():
    names = [name for name, _ in code_identity().dependencies]
    assert names == list(storage.NUMERIC_DEPENDENCIES)
    assert dict(code_identity().dependencies)["numpy"] == importlib.metadata.version("numpy")


def test_run_key_rejects_non_integer_seed():
    with pytest.raises(TypeError):
        run_key(SCENARIO, 1.5, (0,), CLEAN)  # type: ignore[arg-type]


def test_code_identity_describes_installed_package():
    ident = code_identity()
    assert ident is code_identity()  # cached
    assert ident.version == loyaltysim.__version__
    assert len(ident.source_digest) == 64
    assert ident.commit is None or len(ident.commit) == 40


def test_code_identity_without_git_never_fails(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    code_identity.cache_clear()
    try:
        ident = code_identity()
        digest = code_identity.__wrapped__().source_digest
    finally:
        code_identity.cache_clear()
    assert (ident.commit, ident.dirty) == (None, False)
    assert ident.source_digest == digest


def _git(cwd: Path, *args: str) -> str:
    config = ["user.name=t", "user.email=t@example.org", "init.defaultBranch=main", "commit.gpgsign=false"]
    cmd = ["git"] + [arg for item in config for arg in ("-c", item)]
    return subprocess.run([*cmd, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_follows_the_tracked_package(tmp_path):
    pkg = tmp_path / "repo" / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    assert storage._git_state(pkg) == (None, False)  # no repository at all
    repo = tmp_path / "repo"
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".venv/\n")
    _git(repo, "add", ".")
    assert storage._git_state(pkg) == (None, True)  # staged, but no commit yet
    _git(repo, "commit", "-q", "-m", "init")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert storage._git_state(pkg) == (head, False)
    (pkg / "__init__.py").write_text("x = 2\n")
    assert storage._git_state(pkg) == (head, True)
    installed = repo / ".venv" / "site-packages" / "pkg"  # an install inside an ignored directory
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert storage._git_state(installed) == (None, False)


def test_source_digest_sees_content_and_renames(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("ignored")
    first = storage._source_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("still ignored")
    assert storage._source_digest(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    second = storage._source_digest(tmp_path)
    assert second != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    assert storage._source_digest(tmp_path) != second


# ----------------------------------------------------------------------------------- run directories

MANIFEST = {"key": "k", "scenario": SCENARIO, "seed_entropy": 2**70, "code": {"commit": None}, "x": 0.1}


def _tables() -> dict[str, pd.DataFrame]:
    daily = pd.DataFrame({"step": [0, 1, 2], "active": [500, 480, 470], "revenue": [1.5, 2.25, float("nan")]})
    agents = pd.DataFrame({"id": [7, 8], "segment": ["gold", "basic"], "churned": [False, True]})
    return {"daily": daily, "agents": agents}


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs").iterdir())


def test_write_read_round_trip(tmp_path):
    key = _key()
    path = write_run_dir(tmp_path / "out", key, MANIFEST, _tables())
    assert path == run_dir_for(tmp_path / "out", key) == tmp_path / "out" / "runs" / key[:16]
    assert _leftovers(tmp_path / "out") == [key[:16]]
    assert sorted(p.name for p in path.iterdir()) == ["agents.parquet", "daily.parquet", "manifest.json"]
    text = (path / "manifest.json").read_text()
    digests = {name: file_sha256(path / f"{name}.parquet") for name in ("agents", "daily")}
    expected = {**MANIFEST, "table_sha256": digests}  # each table's SHA-256, to detect damage later
    assert text == json.dumps(expected, indent=2, sort_keys=True) + "\n"

    manifest, tables = read_run_dir(path)
    assert manifest == expected
    assert tables.keys() == {"daily", "agents"}
    for name, frame in _tables().items():
        pd.testing.assert_frame_equal(tables[name], frame)


def test_rewrite_replaces_existing_run_dir(tmp_path):
    key = _key()
    write_run_dir(tmp_path, key, MANIFEST, _tables())
    path = write_run_dir(tmp_path, key, {"v": 2}, {"daily": _tables()["daily"]})
    manifest, tables = read_run_dir(path)
    assert manifest == {"v": 2, "table_sha256": {"daily": file_sha256(path / "daily.parquet")}}
    assert list(tables) == ["daily"]
    assert _leftovers(tmp_path) == [key[:16]]


def test_failing_table_leaves_nothing_behind(tmp_path):
    tables = {**_tables(), "bad": pd.DataFrame({"x": [1, "a", object()]})}
    with pytest.raises(Exception, match=r"(?i)conversion|convert|type"):
        write_run_dir(tmp_path, _key(), MANIFEST, tables)
    assert _leftovers(tmp_path) == []


def test_os_error_while_writing_is_storage_error_and_keeps_old_run(tmp_path, monkeypatch):
    key = _key()
    write_run_dir(tmp_path, key, MANIFEST, _tables())
    calls = []

    def failing_write(frame, path, labels=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        return original(frame, path, labels)

    original = rundirs._write_table
    monkeypatch.setattr(rundirs, "_write_table", failing_write)
    with pytest.raises(StorageError, match=r"cannot write run directory .*No space left on device"):
        write_run_dir(tmp_path, key, {"v": 2}, _tables())
    monkeypatch.undo()
    assert _leftovers(tmp_path) == [key[:16]]
    assert {k: v for k, v in read_run_dir(run_dir_for(tmp_path, key))[0].items() if k != "table_sha256"} == MANIFEST


def test_unwritable_output_dir(tmp_path):
    (tmp_path / "afile").write_text("a regular file, so nothing can be created below it")
    root = tmp_path / "afile" / "sub"
    with pytest.raises(StorageError) as info:
        write_run_dir(root, _key(), MANIFEST, _tables())
    message = str(info.value)
    assert message.startswith(f"output directory '{root}' is not writable: ")
    assert "\n" not in message
    assert not root.exists()


def test_invalid_table_name(tmp_path):
    with pytest.raises(ValueError, match="invalid table names"):
        write_run_dir(tmp_path, _key(), MANIFEST, {"../evil": _tables()["daily"]})


def test_read_missing_or_incomplete_run_dir(tmp_path):
    with pytest.raises(StorageError, match="is missing or incomplete") as info:
        read_run_dir(tmp_path / "runs" / "0123456789abcdef")
    assert "\n" not in str(info.value)
    path = write_run_dir(tmp_path, _key(), MANIFEST, _tables())
    (path / "daily.parquet").write_bytes(b"not parquet")
    with pytest.raises(StorageError, match="is missing or incomplete"):
        read_run_dir(path)
    (path / "manifest.json").unlink()
    with pytest.raises(StorageError, match=r"manifest\.json"):
        read_run_dir(path)


# ----------------------------------------------------------------------------------- registry


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry(request, tmp_path):
    """A checked Registry on a fresh SQLite file or the session's PostgreSQL server (tables dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/not/yet/created/registry.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    reg = Registry(url)
    reg.check()
    yield reg
    reg.close()
    engine = sqlalchemy.create_engine(url)
    SQLModel.metadata.drop_all(engine, tables=[RunRecord.__table__, ExperimentRecord.__table__])
    engine.dispose()


def _run(**overrides) -> RunRecord:
    started = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    fields = dict(
        key=_key(),
        experiment_name="sweep-a",
        scenario_name="base",
        seed_entropy=str(2**100 + 1),
        spawn_key=json.dumps([0, 3]),
        version="0.1.0",
        commit=None,
        dirty=True,
        status="running",
        started_at=started,
        run_dir="/results/runs/abc",
    )
    return RunRecord(**{**fields, **overrides})


def _columns(run: RunRecord) -> dict:
    return {name: getattr(run, name) for name in RunRecord.model_fields}


def test_registry_tables_keep_the_names_existing_databases_use(tmp_path):
    """The row classes are RunRecord and ExperimentRecord; their tables, indexes and constraints keep the names
    registries written before the rename have, so those are read as they are."""
    assert (RunRecord.__tablename__, ExperimentRecord.__tablename__) == ("runs", "experiments")
    assert {i.name for i in RunRecord.__table__.indexes} == {"ix_runs_experiment_name"}
    assert {i.name for i in ExperimentRecord.__table__.indexes} == {"ix_experiments_name"}
    assert {c.name for c in RunRecord.__table__.constraints if c.name} == {"ck_runs_status"}
    db = tmp_path / "registry.sqlite"
    with Registry(f"sqlite:///{db}") as reg:
        reg.check()
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # a row written by other code, straight into "runs"
        con.execute("INSERT INTO runs (key, scenario_name, seed_entropy, spawn_key, version, dirty, status, "
                    "started_at, run_dir, summary_json) VALUES ('k', 'base', '1', '[]', '0.1.0', 0, 'done', "
                    "'2025-03-01 12:00:00', '/r', '{}')")
    with Registry(f"sqlite:///{db}") as reg:
        assert [(r.key, r.status) for r in reg.runs()] == [("k", "done")]
        assert isinstance(reg.ensure_experiment("sweep-a"), ExperimentRecord)


def test_registry_upsert_is_idempotent_and_round_trips(registry):
    first = _run()
    registry.upsert_run(first)
    assert _columns(registry.get_run(first.key)) == _columns(first)

    finished = _run(
        status="done",
        commit="c" * 40,
        finished_at=datetime(2025, 3, 1, 13, 0, tzinfo=UTC),
        duration_s=3600.25,
        summary_json=json.dumps({"retention": 0.81}),
    )
    registry.upsert_run(finished)
    registry.upsert_run(finished)
    rows = registry.runs()
    assert len(rows) == 1
    assert _columns(rows[0]) == _columns(finished)
    assert rows[0].finished_at.tzinfo is not None
    assert int(rows[0].seed_entropy) == 2**100 + 1


def test_registry_timestamps_are_utc(registry):
    local = datetime(2025, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    registry.upsert_run(_run(started_at=local))
    stored = registry.get_run(_key()).started_at
    assert stored == local and stored.tzinfo == UTC


def test_registry_queries_and_experiments(registry):
    assert registry.get_run("0" * 64) is None
    assert registry.runs() == []
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    registry.upsert_run(_run(key="b" * 64, started_at=t0 + timedelta(seconds=2)))
    registry.upsert_run(_run(key="a" * 64, started_at=t0 + timedelta(seconds=1)))
    registry.upsert_run(_run(key="c" * 64, experiment_name=None, error="boom\ntraceback", status="failed"))
    assert [r.key[0] for r in registry.runs()] == ["a", "b", "c"]
    assert [r.key[0] for r in registry.runs("sweep-a")] == ["a", "b"]
    assert registry.runs("other") == []
    assert registry.get_run("c" * 64).error == "boom\ntraceback"

    exp = registry.ensure_experiment("sweep-a", "first sweep")
    again = registry.ensure_experiment("sweep-a", "ignored")
    assert exp.id is not None and again.id == exp.id and again.description == "first sweep"
    assert registry.ensure_experiment("sweep-b").id != exp.id


def test_registry_rejects_unknown_status(registry):
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        registry.upsert_run(_run(status="exploded"))


def test_sqlite_registry_creates_parent_dirs(tmp_path):
    path = tmp_path / "deep" / "er" / "registry.sqlite"
    with Registry(f"sqlite:///{path}") as reg:
        reg.upsert_run(_run())  # first use opens lazily
    assert path.is_file()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://u@127.0.0.1:1/x", "Connection refused"),
        ("postgresql+psycopg://u:s3cret@127.0.0.1:1/x", "Connection refused"),
        ("nosuchdb://x/y", "Can't load plugin"),
        ("postgresql+nosuchdriver://u@h/x", "Can't load plugin"),
        ("not a url", "Could not parse"),
        ("sqlite:///{tmp}/afile/sub/registry.sqlite", "Not a directory"),
    ],
)
def test_unusable_database_is_one_line_storage_error(url, reason, tmp_path):
    (tmp_path / "afile").write_text("")
    url = url.format(tmp=tmp_path)
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        Registry(url).check()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("cannot open results database '") and reason in message
    assert "\n" not in message and "s3cret" not in message
    assert "--db" in message


def test_resolve_db_url_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("LOYALTYSIM_DB", raising=False)
    default = resolve_db_url(None, Path("relative-out"))
    assert default == f"sqlite:///{Path('relative-out').resolve()}/registry.sqlite"
    assert Path(default.removeprefix("sqlite:///")).is_absolute()
    monkeypatch.setenv("LOYALTYSIM_DB", "postgresql+psycopg://env@h/db")
    assert resolve_db_url(None, tmp_path) == "postgresql+psycopg://env@h/db"
    assert resolve_db_url("sqlite:///cli.sqlite", tmp_path) == "sqlite:///cli.sqlite"
    monkeypatch.setenv("LOYALTYSIM_DB", "")
    assert resolve_db_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/registry.sqlite"


def test_sqlite_registry_commits_to_a_write_ahead_log_without_waiting_for_the_disk(tmp_path):
    """WAL with synchronous=NORMAL: a commit survives any process's death without an fsync per commit."""
    with Registry(f"sqlite:///{tmp_path}/registry.sqlite") as reg:
        reg.upsert_run(_run())
        with reg._open().connect() as con:
            assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert not (tmp_path / "registry.sqlite-wal").exists()  # the last connection closed folds the log back in
    with contextlib.closing(sqlite3.connect(tmp_path / "registry.sqlite")) as con:  # readable by any SQLite
        assert con.execute("SELECT key FROM runs").fetchall() == [(_key(),)]


def test_sqlite_registry_on_a_network_file_system_keeps_sqlites_default_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_on_network_fs", lambda path: True)
    with Registry(f"sqlite:///{tmp_path}/registry.sqlite") as reg:
        reg.upsert_run(_run())
        with reg._open().connect() as con:
            assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_network_file_systems_are_told_by_proc_mounts(tmp_path, monkeypatch):
    mounts = f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path}/shared nfs4 rw 0 0\n"
    real_read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: mounts if str(self) == "/proc/mounts"
                        else real_read_text(self, *a, **k))
    assert storage._on_network_fs(tmp_path / "shared" / "out" / "registry.sqlite")
    assert not storage._on_network_fs(tmp_path / "sharedother" / "registry.sqlite")
    assert not storage._on_network_fs(tmp_path / "registry.sqlite")


def test_tables_are_written_as_pandas_writes_them(tmp_path):
    """A run's tables are written byte for byte as ``DataFrame.to_parquet`` writes them, whichever path they take
    (small tables skip pandas' conversion, reusing the schema checked on the first table of their layout), and
    the SHA-256 returned is the file's."""
    import numpy as np

    def frame(n, seed, categories):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({
            "run_key": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[f"k{seed}"]),
            "replication": np.full(n, seed, dtype=np.int64),
            "step": np.arange(n, dtype=np.int32),
            "x": rng.normal(size=n), "flag": rng.random(n) > 0.5,
            "score": pd.array([None if i % 3 == 0 else i % 5 for i in range(n)], dtype="Int8"),
            "firm": pd.Series([None if i % 4 == 0 else f"f{i % 3}" for i in range(n)], dtype="str"),
            "cause": pd.Categorical.from_codes(np.arange(n) % len(categories), categories=categories),
            "nan": np.where(np.arange(n) % 2 == 0, np.nan, 1.0),
            "other": np.array([None] * n, dtype=object),
        })

    tables = [frame(n, seed, cats) for n, seed, cats in [
        (0, 1, ["a"]), (3, 2, ["a", "b"]), (7, 3, ["a", "b"]), (5, 4, ["c", "d", "e"]), (5000, 5, ["a", "b"])]]
    tables.append(tables[2].assign(x=tables[2]["x"].astype("float32")))
    for i, table in enumerate(tables * 2):
        ours, theirs = tmp_path / f"ours{i}.parquet", tmp_path / f"theirs{i}.parquet"
        digest = storage._write_table(table, ours)
        table.to_parquet(theirs, engine="pyarrow", index=False)
        assert ours.read_bytes() == theirs.read_bytes()
        assert digest == storage.file_sha256(ours)
        # with labels: the file of the labelled frame, its text labels categoricals of one category
        labels = {"run_key": f"key{i}", "replication": i, "design_x": str(i / 7)}
        table = table.drop(columns=["run_key", "replication"])
        digest = storage._write_table(table, ours, labels)
        n = len(table)
        by_hand = pd.concat([pd.DataFrame({
            "run_key": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[f"key{i}"]),
            "replication": np.full(n, i, dtype=np.int64),
            "design_x": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[str(i / 7)])}), table],
            axis=1)
        by_hand.to_parquet(theirs, engine="pyarrow", index=False)
        assert ours.read_bytes() == theirs.read_bytes()
        assert digest == storage.file_sha256(ours)
        pd.testing.assert_frame_equal(storage.labelled(table, labels), by_hand)
