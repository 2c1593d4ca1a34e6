"""Run directories (``<root>/runs/<key16>/``): ``manifest.json`` plus one Parquet file per table, written
atomically, so a crash or a failing table never leaves a half-written run that could later be mistaken for a
complete one.

Nothing here touches the registry database: a sweep's worker process, which writes its run's directory and
nothing else, imports this module and not :mod:`loyaltysim.experiments.storage` (whose SQLAlchemy and SQLModel it
never uses), which re-exports these names.
"""

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SMALL_TABLE_CELLS",
    "StorageError",
    "check_writable",
    "file_sha256",
    "host_tag",
    "labelled",
    "read_run_dir",
    "run_dir_for",
    "run_dir_problem",
    "write_run_dir",
]

_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class StorageError(Exception):
    """A storage problem the user can fix; the message is one readable line (the CLI prints it, exit 2)."""


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


def write_run_dir(root: Path, key: str, manifest: dict, tables: dict[str, pd.DataFrame],
                  labels: dict[str, str | int] | None = None) -> Path:
    """Write ``manifest.json`` and ``<name>.parquet`` per table into the run directory, atomically.

    ``labels`` are columns put first in every table file, each with one value in every row (see
    :func:`labelled`): the file of a table is then the file of ``labelled(table, labels)``.

    Everything goes into a sibling temp directory that is renamed onto the final name only when complete;
    on any error it is removed.  An existing directory for the same key is replaced: runs are
    deterministic, so its content is the same.
    """
    bad = [name for name in tables if not _TABLE_NAME.fullmatch(name) or name == "manifest"]
    if bad:
        raise ValueError(f"invalid table names {bad}: use letters, digits, '_', '.', '-' (not 'manifest')")
    labels = dict(labels or {})
    for name, frame in tables.items():
        clash = [c for c in labels if c in frame.columns]
        if clash:
            raise ValueError(f"table {name} already has the column(s) {clash} that label a stored run")
    final = run_dir_for(check_writable(root), key)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}.{host_tag()}")
    try:
        tmp.mkdir()
        digests = {name: _write_table(frame, tmp / f"{name}.parquet", labels) for name, frame in tables.items()}
        text = json.dumps({**manifest, "table_sha256": digests}, indent=2, sort_keys=True) + "\n"
        (tmp / "manifest.json").write_text(text, encoding="utf-8")
        _move_into_place(tmp, final)
    except OSError as exc:
        raise StorageError(f"cannot write run directory '{final}': {_os_reason(exc)}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a no-op after a successful rename
    return final


SMALL_TABLE_CELLS = 100  # rows per column up to which a table is converted and written by the small tables' path


def labelled(frame: pd.DataFrame, labels: dict[str, str | int]) -> pd.DataFrame:
    """``frame`` with the ``labels`` columns first, each with its one value in every row: text as a categorical of
    that one category (one dictionary entry per file), an integer as int64."""
    if not labels:
        return frame
    n = len(frame)
    columns = {c: (pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=pd.CategoricalDtype([v]))
                   if isinstance(v, str) else np.full(n, v, dtype=np.int64)) for c, v in labels.items()}
    return pd.concat([pd.DataFrame(columns, index=frame.index), frame], axis=1)


def _write_table(frame: pd.DataFrame, path: Path, labels: dict[str, str | int] | None = None) -> str:
    """Write ``labelled(frame, labels)`` as its ``to_parquet(path, engine="pyarrow", index=False)`` does, byte for
    byte, and return the file's SHA-256.

    A small table (the tables of a short run: a few rows a column) is converted by :func:`_small_arrow_table`,
    written into memory, hashed there and then written to its file, which saves most of pandas' and pyarrow's fixed
    cost a table and the reading back of the file to hash it; a large one goes through pandas and is hashed from its
    file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = labels or {}
    small = len(frame) <= SMALL_TABLE_CELLS * (len(frame.columns) + len(labels))
    table = _small_arrow_table(frame, labels) if small else None
    if table is None:
        labelled(frame, labels).to_parquet(path, engine="pyarrow", index=False)
        return file_sha256(path)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    data = sink.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


_SCHEMAS: dict[tuple, Any] = {}  # by a table's layout: its Arrow schema with pandas' metadata, or None


def _column_values(frame: pd.DataFrame) -> list:
    """The arrays of a frame's columns (numpy arrays, pandas' extension arrays), without making a Series of each."""
    get = getattr(frame, "_get_column_array", None)  # pandas' own, far cheaper than a Series a column
    if get is None:
        return [column.array if not isinstance(column.dtype, np.dtype) else column.to_numpy()
                for _, column in frame.items()]
    return [get(i) for i in range(frame.shape[1])]


@functools.lru_cache(maxsize=64)
def _one_category(value: str) -> pd.CategoricalDtype:
    """The type of a text label's column (checked once for a run's tables, not once a table)."""
    return pd.CategoricalDtype([value])


def _label_values(n: int, labels: dict[str, str | int]) -> list:
    """The arrays of the label columns of a table of ``n`` rows (as :func:`labelled` makes them)."""
    return [pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), dtype=_one_category(v))
            if isinstance(v, str) else np.full(n, v, dtype=np.int64) for v in labels.values()]


def _layout(names: list[str], values: list, arrays: list) -> tuple:
    """What the schema ``pyarrow.Table.from_pandas`` gives a table depends on: its columns' names, pandas types
    (a categorical's by its number of categories, whether they are ordered and their type, not by the categories
    themselves) and Arrow types."""
    kinds = []
    for name, value, array in zip(names, values, arrays, strict=True):
        dtype = value.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            dtype = ("category", len(dtype.categories), dtype.ordered, str(dtype.categories.dtype))
        kinds.append((name, dtype, array.type))
    return tuple(kinds)


def _small_arrow_table(frame: pd.DataFrame, labels: dict[str, str | int]) -> Any:
    """``pyarrow.Table.from_pandas(labelled(frame, labels), preserve_index=False)``, as pandas' ``to_parquet``
    makes it, without its fixed cost a column: each column's values are converted as ``from_pandas`` converts them
    (``pyarrow.array(values, from_pandas=True)``) and the table takes the schema (with pandas' metadata) that
    ``from_pandas`` gave the first table of the same layout in this process, after checking that the two tables are
    equal, metadata included (a layout where they are not is converted by pandas from then on). None for a table
    this path does not take (column names that are not text, ``attrs``): it is then written through pandas."""
    import pyarrow as pa

    names = [*labels, *frame.columns.tolist()]
    if frame.attrs or not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
        return None
    values = _label_values(len(frame), labels) + _column_values(frame)
    arrays = [pa.array(v, from_pandas=True) for v in values]
    layout = _layout(names, values, arrays)
    schema = _SCHEMAS.get(layout, False)
    if schema is False:
        reference = pa.Table.from_pandas(labelled(frame, labels), preserve_index=False)
        try:
            same = pa.Table.from_arrays(arrays, schema=reference.schema).equals(reference, check_metadata=True)
        except (pa.ArrowException, ValueError, TypeError):
            same = False
        schema = _SCHEMAS[layout] = reference.schema if same else None
    return None if schema is None else pa.Table.from_arrays(arrays, schema=schema)


@functools.cache
def host_tag(host: str | None = None) -> str:
    """Eight hex digits naming a host (of its name's SHA-256), in the names of the temporary folders its writers
    make: on an output root that machines share, only a folder of this host can be judged by its process id."""
    return hashlib.sha256((host or socket.gethostname()).encode()).hexdigest()[:8]


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def run_dir_problem(path: Path | str) -> str | None:
    """Why a stored run folder cannot be trusted, or None when it is complete and intact: its manifest reads, and
    every table it lists exists and matches the SHA-256 the manifest records for it (folders written before the
    digests were recorded are checked for the tables' presence only).

    Called for every run of a sweep when it resumes and when it is reported (10,000 runs: 10,000 folders), so it
    works on plain strings and opens each file once."""
    base = os.fspath(path)
    try:
        with open(os.path.join(base, "manifest.json"), "rb") as fh:
            manifest = json.loads(fh.read())
    except FileNotFoundError:
        return "its manifest.json is missing"
    except (OSError, ValueError):
        return "its manifest.json cannot be read"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), list):
        return "its manifest.json lists no tables"
    digests = manifest.get("table_sha256") or {}
    for name in manifest["tables"]:
        table = os.path.join(base, f"{name}.parquet")
        if not os.path.isfile(table):
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
    """Read a run directory back: ``(manifest, {table name: DataFrame})``, the tables as the model made them: without
    the columns that label the stored files with the run (those the manifest lists in ``label_columns``: the run
    key, replication and design labels; read a file itself to have them)."""
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        labels = (manifest.get("label_columns") or []) if isinstance(manifest, dict) else []
        tables = {p.stem: pd.read_parquet(p, engine="pyarrow") for p in sorted(path.glob("*.parquet"))}
        tables = {name: frame.drop(columns=[c for c in labels if c in frame.columns])
                  for name, frame in tables.items()}
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from ValueError or OSError
        reason = _os_reason(exc) if isinstance(exc, OSError) else " ".join(str(exc).split())
        raise StorageError(
            f"run directory '{path}' is missing or incomplete: {reason}; "
            "give a directory written by a completed run (runs/<key16>/), or re-run the scenario"
        ) from exc
    return manifest, tables
