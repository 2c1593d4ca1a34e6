"""The customers' social network, as a sparse adjacency matrix.

A Watts-Strogatz small world (Watts & Strogatz 1998): a ring lattice where each customer knows ``degree/2``
neighbours on each side, with each tie rewired to a random customer with probability ``rewire``. Built with
numpy and scipy.sparse so a million customers take seconds; :func:`to_networkx` converts a small one for
display.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def small_world(n: int, degree: int, rewire: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Symmetric 0/1 CSR adjacency of a Watts-Strogatz graph (no self-loops, duplicates merged)."""
    half = min(degree // 2, (n - 1) // 2)
    if n < 3 or half < 1:
        return sp.csr_matrix((n, n), dtype=np.float64)
    src = np.repeat(np.arange(n, dtype=np.int64), half)
    offset = np.tile(np.arange(1, half + 1, dtype=np.int64), n)
    dst = (src + offset) % n
    rewired = rng.random(src.size) < rewire
    # a rewired tie goes to a uniformly chosen other customer (offset 1..n-1 never hits the source)
    dst[rewired] = (src[rewired] + rng.integers(1, n, size=int(rewired.sum()))) % n
    rows = np.concatenate([src, dst])
    cols = np.concatenate([dst, src])
    adj = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    adj.sum_duplicates()
    adj.data[:] = 1.0
    return adj


def empty(n: int) -> sp.csr_matrix:
    return sp.csr_matrix((n, n), dtype=np.float64)


def to_networkx(adj: sp.csr_matrix):
    """A networkx Graph of a (small) network, for display."""
    import networkx as nx

    return nx.from_scipy_sparse_array(adj)
