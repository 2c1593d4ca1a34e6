"""Tests of word of mouth (model/mechanisms/word_of_mouth.py) on hand-built networks and customers."""

import numpy as np
import scipy.sparse as sp

from loyaltysim.model.mechanisms.word_of_mouth import WordOfMouth, empty, small_world
from loyaltysim.model.state import NO_FIRM, CustomerState


class _Spec:
    """A network section of a scenario, as WordOfMouth reads it."""

    kind, degree, rewire, advocate_level = "small_world", 4, 0.0, 0.05

    class talk:  # the scenario's field, lower case
        @staticmethod
        def per_step(unit):
            return 1.0  # everyone talks


def _heard_by_matrix(network: sp.csr_matrix, speakers: np.ndarray, about: np.ndarray, n_firms: int) -> np.ndarray:
    """The definition: the share of each customer's neighbours who spoke about each firm."""
    one_hot = np.zeros((network.shape[0], n_firms))
    one_hot[np.flatnonzero(speakers), about[speakers]] = 1.0
    degree = np.asarray(network.sum(axis=1)).ravel()
    return (network @ one_hot) / np.where(degree > 0, degree, 1.0)[:, None]


def test_heard_is_the_share_of_neighbours_who_spoke_about_each_firm():
    rng = np.random.default_rng(3)
    wom = WordOfMouth(_Spec, 40, "week", rng, np.random.default_rng(4))
    speakers = rng.random(40) < 0.4
    about = rng.integers(0, 3, 40)
    np.testing.assert_array_equal(wom.heard(speakers, about, 3), _heard_by_matrix(wom.network, speakers, about, 3))
    assert np.allclose(wom.heard(np.ones(40, bool), about, 3).sum(axis=1), 1.0)  # everyone's neighbours all spoke


def test_a_ring_lattice_and_an_empty_network():
    ring = small_world(10, 4, 0.0, np.random.default_rng(0))
    assert (ring != ring.T).nnz == 0 and ring.diagonal().sum() == 0
    np.testing.assert_array_equal(np.asarray(ring.sum(axis=1)).ravel(), 4)
    assert empty(5).nnz == 0


def test_satisfied_customers_recommend_and_leavers_warn():
    """Customer 0 is delighted with firm 1, customer 2 just left firm 0; their neighbours hear it (talk = 1)."""
    wom = WordOfMouth(_Spec, 6, "week", np.random.default_rng(1), np.random.default_rng(2))
    st = CustomerState.allocate(6, 2, 1)
    st.current[:] = [1, NO_FIRM, NO_FIRM, NO_FIRM, NO_FIRM, NO_FIRM]
    st.satisfaction[0, 1] = 0.2  # above the advocate level
    st.step_left[2] = 0
    st.threshold[:] = -1.0
    positive, negative = wom.signals(st, 2)
    neighbours_of_0 = wom.network[0].indices
    assert (positive[neighbours_of_0, 1] > 0).all() and positive[:, 0].sum() == 0
    assert (negative[wom.network[2].indices, 0] > 0).all() and negative[:, 1].sum() == 0


def test_what_is_told_of_reliability_is_each_speakers_own_belief():
    """Customer 0 (delighted with firm 1, believing it 0.99 reliable) and customer 2 (who just left firm 0, believing
    it 0.5 reliable) speak; each neighbour hears their belief, weighted by its share of the neighbourhood."""
    from loyaltysim.model.mechanisms.reliability_beliefs import told

    wom = WordOfMouth(_Spec, 6, "week", np.random.default_rng(1), np.random.default_rng(2))
    st = CustomerState.allocate(6, 2, 1)
    st.current[:] = [1, NO_FIRM, NO_FIRM, NO_FIRM, NO_FIRM, NO_FIRM]
    st.satisfaction[0, 1] = 0.2
    st.step_left[2] = 0
    st.threshold[:] = -1.0
    st.rel_belief[:] = 0.9
    st.rel_belief[0, 1], st.rel_belief[2, 0] = 0.99, 0.5
    positive, negative = wom.signals(st, 2)
    said = told(wom, st, 2)
    share = positive + negative  # the share of neighbours who spoke of each firm, as the market passes it
    spoke = np.zeros((6, 2))
    spoke[0, 1] = spoke[2, 0] = 1.0
    expected_share = (wom.network @ spoke) / 4.0  # a ring of degree 4
    np.testing.assert_allclose(share, expected_share, rtol=1e-15)
    np.testing.assert_allclose(said, expected_share * np.array([0.5, 0.99]), rtol=1e-15)
