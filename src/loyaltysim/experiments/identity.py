"""Which code produced a result, and the key that names a run: :func:`code_identity` and :func:`run_key`.

A run is named by :func:`run_key`, a hash of the effective scenario, the seed and the code identity
(:func:`code_identity`).  Identical inputs on identical code give the same key, which makes re-running
idempotent and makes stale results impossible to confuse with current ones.

Nothing here touches the registry database: a sweep's worker process, which checks that it runs its coordinator's
code (:func:`code_mismatch`), imports this module and not :mod:`loyaltysim.experiments.storage` (whose SQLAlchemy
and SQLModel it never uses), which re-exports these names.
"""

import functools
import hashlib
import importlib.metadata
import json
import operator
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loyaltysim.version import PACKAGE_DIR, __version__

__all__ = [
    "NUMERIC_DEPENDENCIES",
    "CodeIdentity",
    "canonical_json",
    "code_identity",
    "code_mismatch",
    "run_key",
    "run_key_of_canonical",
]


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
    return CodeIdentity(__version__, commit, dirty, *_result_code())


@functools.cache
def _result_code() -> tuple[str, tuple[tuple[str, str], ...]]:
    """The part of this process's code identity that can change a result (no git: quick, for every worker)."""
    return _source_digest(PACKAGE_DIR), _installed_versions(NUMERIC_DEPENDENCIES)


def code_mismatch(expected: CodeIdentity) -> str | None:
    """Why this process must not compute a run planned under ``expected`` (by a sweep's coordinator), or None when
    it runs the same code: the same package version and source digest and the same numeric libraries, what a run
    key hashes. A worker of a cluster installed from another commit, or with another numpy, would store under the
    coordinator's run key results that this code did not produce."""
    digest, dependencies = _result_code()
    differences = []
    if __version__ != expected.version:
        differences.append(f"loyaltysim {__version__} here, {expected.version} there")
    if digest != expected.source_digest:
        differences.append(f"source digest {digest[:12]} here, {expected.source_digest[:12]} there")
    here, there = dict(dependencies), dict(expected.dependencies)
    differences += [f"{name} {here.get(name, 'not installed')} here, {there.get(name, 'not installed')} there"
                    for name in sorted(set(here) | set(there)) if here.get(name) != there.get(name)]
    if not differences:
        return None
    return (f"this worker ({socket.gethostname()}) runs other code than the sweep's coordinator ("
            + "; ".join(differences) + "): install the coordinator's loyaltysim source and library versions on "
            "every worker and restart the workers")


def canonical_json(obj: Any) -> str:
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
    return run_key_of_canonical(canonical_json(effective_scenario), seed_entropy, spawn_key, code)


def run_key_of_canonical(scenario_json: str, seed_entropy: int, spawn_key: tuple[int, ...],
                         code: CodeIdentity) -> str:
    """:func:`run_key` of a scenario given as its canonical JSON (:func:`canonical_json`), which a sweep's plan
    reuses for every replication of a design point instead of writing it out again for each.

    The key hashes the canonical JSON of ``{"scenario": ..., "seed_entropy": ..., "spawn_key": ..., "version": ...,
    "source_digest": ..., "dependencies": ...}``, assembled here in its sorted key order."""
    parts = (("dependencies", canonical_json(dict(code.dependencies))), ("scenario", scenario_json),
             ("seed_entropy", canonical_json(operator.index(seed_entropy))),
             ("source_digest", canonical_json(code.source_digest)),
             ("spawn_key", canonical_json([operator.index(k) for k in spawn_key])),
             ("version", canonical_json(code.version)))
    text = "{" + ",".join(f"{canonical_json(name)}:{value}" for name, value in parts) + "}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
