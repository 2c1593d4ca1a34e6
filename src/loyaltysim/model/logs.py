"""Logs a run keeps step by step: lists of column dicts (one per step), joined into columns at the end."""

from __future__ import annotations

import functools
from collections.abc import Sequence

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


@functools.lru_cache(maxsize=256)
def _category_type(categories: tuple[str, ...]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(list(categories))


def categorical(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    """``pd.Categorical.from_codes(codes, categories=categories)``, its type (whose categories pandas checks) made
    once for each list of categories, not once a column."""
    return pd.Categorical.from_codes(codes, dtype=_category_type(tuple(categories)))
