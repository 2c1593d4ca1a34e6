"""Word of mouth (ODD 3.3.5): who talks to whom, and what each customer hears about each firm in a step.

Each step a customer in the market talks with chance ``network.talk`` (times a programme's buzz, for members):
one with a firm recommends it when satisfied above ``network.advocate_level``, warns against it when below its own
threshold, and one who left a firm in the previous step warns against that firm. What a customer hears is the share
of its neighbours who spoke about each firm, positive and negative; the customer rules turn it into beliefs.

The network is a Watts-Strogatz small world (Watts & Strogatz 1998): a ring lattice where each customer knows
``degree/2`` neighbours on each side, with each tie rewired to a random customer with probability ``rewire``. Built
with numpy and scipy.sparse so a million customers take seconds; :func:`to_networkx` converts a small one for
display.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from loyaltysim.model.arrays import flat_index, pick, select, take
from loyaltysim.model.state import CustomerState


class WordOfMouth:
    """The network, how often customers talk, and the shares of neighbours heard speaking about each firm."""

    def __init__(self, spec, n: int, unit: str, rng: np.random.Generator, network_rng: np.random.Generator):
        self.network = small_world(n, spec.degree, spec.rewire, network_rng) if spec.kind == "small_world" else empty(n)
        degree = np.asarray(self.network.sum(axis=1)).ravel()
        # the network's rows as CSR arrays, for the speakers' ties (numpy gathers cost less than sparse row indexing)
        self._indptr, self._indices = self.network.indptr, self.network.indices
        self.inv_degree = np.divide(1.0, degree, out=np.zeros(n), where=degree > 0)
        self.p_talk = spec.talk.per_step(unit)
        self.advocate_level = spec.advocate_level
        self.rng = rng
        self.spoken = None
        self._ties: list = []  # the step's speakers and their ties, for what else they tell (reliability_beliefs.told)

    def signals(self, st: CustomerState, n_firms: int, talk_factor: np.ndarray | float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """([n, F] recommending, [n, F] warning): the share of each customer's neighbours who spoke for and against
        each firm this step, from the previous step's state."""
        n = len(st)
        u_talk = self.rng.random(n)
        has = st.current >= 0
        cur = select(has, st.current, 0)
        sat = pick(st.satisfaction, flat_index(np.arange(n), cur, st.satisfaction.shape[1]))
        p_talk = self.p_talk if talk_factor is None else self.p_talk * talk_factor
        talk = st.active & has & (u_talk < p_talk)
        recommend = talk & (sat > self.advocate_level)
        left = st.step_left >= 0
        warn = (u_talk < p_talk) & (left | (talk & (sat < st.threshold)))
        about = select(left, st.step_left, cur)
        self.spoken = (recommend, cur, warn, about)
        self._ties = []
        return self.heard(recommend, cur, n_firms), self.heard(warn, about, n_firms)

    def heard(self, speakers: np.ndarray, about: np.ndarray, n_firms: int,
              weights: np.ndarray | None = None, told_of: np.ndarray | None = None) -> np.ndarray:
        """[n, F] share of each customer's neighbours who spoke about each firm: the speakers' rows of the
        symmetric 0/1 network, counted by the firm each spoke of. The same numbers as ``network @ one_hot(about)``
        over the speakers (whole counts either way), at a cost that grows with the speakers' ties rather than all
        ties. With ``weights`` [n], each speaker counts its weight instead of 1 (what it told, e.g. a belief); with
        ``told_of`` [F, n] instead, its element at the firm the speaker spoke of (gathered for the speakers alone)."""
        n = self.network.shape[0]
        who, per_speaker, heard_at = self._reach(speakers, about, n)
        if told_of is not None:
            weights_who = pick(told_of, flat_index(take(about, who), who, n))
        else:
            weights_who = None if weights is None else take(weights, who)
        # unweighted, each tie counts 1.0: the counts come out as floats (whole numbers, exactly those np.bincount
        # counts), so the shares are scaled in place instead of in a fresh array of the counts' product
        told = np.ones(heard_at.size) if weights_who is None else np.repeat(weights_who, per_speaker)
        heard = np.bincount(heard_at, told, minlength=n_firms * n).reshape(n_firms, n)  # firm-major
        if heard.dtype == np.float64:
            heard *= self.inv_degree
        else:  # no ties at all: np.bincount gives integer zeros, whatever the weights
            heard = heard * self.inv_degree
        return heard.T

    def _reach(self, speakers: np.ndarray, about: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(speakers, ties per speaker, flat [F, n] position of each tie's listener and firm spoken of), kept for the
        step's speakers (the same arrays, told again with weights: found by identity)."""
        for key, value in self._ties:
            if key[0] is speakers and key[1] is about:
                return value
        who = np.flatnonzero(speakers)
        per_speaker, listeners = csr_rows(self._indptr, self._indices, who)
        value = (who, per_speaker, np.repeat(take(about, who), per_speaker) * n + listeners)
        self._ties.append(((speakers, about), value))
        return value


def csr_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entries per row, column indices) of rows ``rows`` of a CSR matrix given by ``indptr`` and ``indices``: the
    ``np.diff(m[rows].indptr)`` and ``m[rows].indices`` of scipy's row indexing, row after row in stored order."""
    start = take(indptr, rows)
    count = take(indptr, rows + 1) - start
    # each entry's position in ``indices``: its row's start plus its place within the row
    ends = np.cumsum(count)
    position = np.arange(ends[-1] if ends.size else 0) + np.repeat(start - (ends - count), count)
    return count, take(indices, position)


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
