"""A check shared by the one-at-a-time oracle tests: two runs' state arrays agree, and which of them moved."""

from __future__ import annotations

import numpy as np


def assert_same_arrays(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], label: str,
                       start: dict[str, np.ndarray] | None = None) -> set[str]:
    """Every array of ``got`` equals the one of ``expected`` with the same name and dtype (floats within 1e-12,
    the rest exactly); returns the names whose ``expected`` array differs from ``start`` (the state that moved)."""
    assert expected.keys() == got.keys()
    moved = set()
    for name, x in expected.items():
        y = got[name]
        assert x.dtype == y.dtype, name
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=0, atol=1e-12, err_msg=f"{name} {label}")
        else:
            np.testing.assert_array_equal(y, x, err_msg=f"{name} {label}")
        if start is not None and not np.array_equal(x, start[name]):
            moved.add(name)
    return moved
