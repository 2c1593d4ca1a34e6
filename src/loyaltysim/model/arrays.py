"""Two array operations the step uses at every customer, written to be fast at a large population and to give
exactly the numbers of the plain numpy expressions they replace.

* :func:`select` is ``np.where(mask, a, b)`` without branches. ``np.where`` tests the mask element by element, and
  when the mask is unpredictable (who bought in the step, which firm is a customer's own) the processor guesses
  wrong about half of the time: at 100,000 customers such a ``np.where`` takes several times as long as an addition.
  :func:`select` picks the bits of ``a`` or ``b`` with bitwise operations on integer views instead; it copies bits,
  so the result is the one ``np.where`` gives, bit for bit, whatever the values (negative zeros, infinities, NaNs).
* :func:`pick` is ``x[i, j]`` for a 2-D array and index arrays of the same length, as one gather on the flattened
  array (:func:`take`), several times faster than numpy's two-array fancy indexing; :func:`place` writes the same
  elements (``np.put``). :func:`take` is ``np.take`` on numpy's fast path.

A mask used by several selects can be given as a :class:`Mask`, which keeps its all-bits integer forms: each is
worked out once instead of at every select.
"""

from __future__ import annotations

import numpy as np

_BITS = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
SMALL = 64  # masks of at most this many elements go to np.where itself


class Mask:
    """A boolean mask for several :func:`select` calls: its all-bits integer forms (and their complements) are
    worked out once per integer width, when first needed, and kept. The mask must not change while in use."""

    __slots__ = ("_bits", "mask")

    def __init__(self, mask: np.ndarray):
        self.mask = np.asarray(mask)
        self._bits: dict = {}

    def bits(self, bits: type, inverted: bool = False) -> np.ndarray:
        """The mask as integers of type ``bits``: all bits set where True (where False if ``inverted``), else 0."""
        key = (bits, inverted)
        out = self._bits.get(key)
        if out is None:
            out = np.invert(self.bits(bits)) if inverted else _all_bits(self.mask, bits)
            self._bits[key] = out
        return out


def select(mask: np.ndarray | Mask, a, b, out: np.ndarray | None = None) -> np.ndarray:
    """``np.where(mask, a, b)`` for a boolean ``mask``: the same dtype, shape and bits, without branches.

    ``a`` and ``b`` are arrays or scalars broadcastable with ``mask``; the result's dtype is the one ``np.where``
    gives them (``np.result_type``). Dtypes other than booleans, integers and floats go to ``np.where``. ``mask``
    may be a :class:`Mask` (the same numbers, its integer forms reused). ``out``: an array of the result's shape to
    write the result into and return, as ``out[...] = select(mask, a, b)`` would (it may be ``a`` or ``b``)."""
    kept = mask if isinstance(mask, Mask) else None
    mask = kept.mask if kept is not None else np.asarray(mask)
    if mask.size <= SMALL:  # a few elements (a customer stepped alone): np.where costs less than the set-up below
        return _written(np.where(mask, a, b), out)
    dtype = np.result_type(a, b)
    bits = _BITS.get(dtype.itemsize)
    if mask.dtype != np.bool_ or dtype.kind not in "biuf" or bits is None:
        return _written(np.where(mask, a, b), out)
    if out is not None and out.dtype != dtype:  # (converted on assignment, as out[...] = ... converts)
        return _written(select(kept if kept is not None else mask, a, b), out)
    target = None if out is None else out.view(bits)
    a = np.asarray(a, dtype)
    b = np.asarray(b, dtype)
    a_bits, b_bits = a.view(bits), b.view(bits)
    if b.ndim == 0 and not b_bits:  # b is a zero (+0.0, 0, False): a where mask, zero bits elsewhere
        wide = _all_bits(mask, bits) if kept is None else kept.bits(bits)
        return np.bitwise_and(a_bits, wide, out=target).view(dtype)
    if a.ndim == 0 and not a_bits:
        wide = _all_bits(~mask, bits) if kept is None else kept.bits(bits, True)
        return np.bitwise_and(b_bits, wide, out=target).view(dtype)
    picked = np.bitwise_xor(a_bits, b_bits)  # a ^ b where mask, 0 elsewhere, then ^ b
    if picked.shape != mask.shape and picked.shape != np.broadcast_shapes(picked.shape, mask.shape):
        picked = np.broadcast_to(picked, np.broadcast_shapes(picked.shape, mask.shape)).copy()
    picked &= _all_bits(mask, bits) if kept is None else kept.bits(bits)
    return np.bitwise_xor(picked, b_bits, out=picked if target is None else target).view(dtype)


def _written(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return result
    out[...] = result
    return out


def _all_bits(mask: np.ndarray, bits: type) -> np.ndarray:
    """A boolean mask as integers of type ``bits``: all bits set (-1) where True, 0 where False. Negated as bytes
    (0 or 1 to 0 or -1) and then widened, which costs less than widening first or multiplying by -1."""
    return np.negative(mask.view(np.int8)).astype(bits, copy=False)


def flat_index(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    """The flat (C-order) positions of elements ``[rows, cols]`` of a 2-D array with ``n_cols`` columns."""
    return rows.astype(np.int64, copy=False) * n_cols + cols.astype(np.int64, copy=False)


def take(x: np.ndarray, indices: np.ndarray, axis: int | None = None) -> np.ndarray:
    """``np.take(x, indices, axis=axis)`` for indices in bounds (a negative one counts from the end): the same
    elements, several times faster. numpy's default mode, which raises on an index out of bounds, gathers on a slow
    path; ``mode="wrap"`` gathers on the fast one and maps every index in bounds, negative or not, to the same element
    (an index out of bounds wraps around instead of raising)."""
    return np.take(x, indices, axis=axis, mode="wrap")


def pick(x: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """The elements of ``x`` at flat C-order positions ``flat`` (see :func:`flat_index`): ``x[rows, cols]``."""
    return take(x, flat)


def place(x: np.ndarray, flat: np.ndarray, values) -> None:
    """Write ``values`` into ``x`` at flat C-order positions ``flat``, in place: ``x[rows, cols] = values``."""
    np.put(x, flat, values)
