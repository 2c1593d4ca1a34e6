"""Logs a run keeps step by step: lists of column dicts (one per step), joined into columns at the end."""

from __future__ import annotations

import numpy as np
import pandas as pd


def concat(parts: list[dict[str, np.ndarray]], columns: list[str]) -> dict[str, np.ndarray]:
    """The columns of every part, joined in step order (empty arrays when nothing was logged)."""
    if not parts:
        return {c: np.array([]) for c in columns}
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}


def int8_missing_at(values: np.ndarray, missing: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values`` as pandas' nullable ``Int8``, missing (NA) where ``missing`` is true: the column a frame gets from
    ``pd.array(values, dtype="Int8")`` and then ``frame.loc[missing, column] = pd.NA``, without a frame's cost."""
    array = pd.array(values, dtype="Int8")
    array[np.asarray(missing, dtype=bool)] = pd.NA
    return array
