"""Running the real ``loyaltysim`` command in a subprocess, for the CLI and sweep tests, and checking what it stored."""

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loyaltysim.experiments.storage import DB_ENV_VAR

TIMEOUT = 120


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a registry URL (the caller's registry must not leak in), plus extra;
    Python's fault handler is on, so a child that hangs can be made to print every thread's stack."""
    env = {k: v for k, v in os.environ.items() if k != DB_ENV_VAR}
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


def cli_args(*args) -> list[str]:
    return [sys.executable, "-m", "loyaltysim.cli", *map(str, args)]


def _interruptible() -> None:
    """In the child: Ctrl-C acts as at a terminal, even when the tests themselves run in the background of a
    non-interactive shell (which starts them with SIGINT ignored, and a process inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(cli_args(*args), cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # the fault handler prints where each thread waits
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"{proc.args} timed out\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``proc`` after checking it succeeded without a traceback."""
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def dead_pid() -> int:
    """The process id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def parquet_hashes(out: Path) -> dict[str, str]:
    """SHA-256 of every table of every run stored under ``out``, by run folder and file name."""
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "runs").glob("*/*.parquet"))}
