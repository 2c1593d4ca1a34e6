"""Logs a run keeps step by step: lists of column dicts (one per step), joined into columns at the end."""

from __future__ import annotations

import numpy as np


def concat(parts: list[dict[str, np.ndarray]], columns: list[str]) -> dict[str, np.ndarray]:
    """The columns of every part, joined in step order (empty arrays when nothing was logged)."""
    if not parts:
        return {c: np.array([]) for c in columns}
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}
