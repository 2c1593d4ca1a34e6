"""The NBD-Dirichlet fit (measures.dirichlet): parameters recovered from panels drawn from a known Dirichlet, its
predictions against exact cases, and its observed measures on a hand-built panel."""

import numpy as np
import pytest

from loyaltysim.measures import dirichlet as d

SHARES = np.array([0.4, 0.3, 0.2, 0.1])


@pytest.mark.parametrize("method", ["classic", "ml"])
@pytest.mark.parametrize(("mean", "k", "s"), [(3.0, 0.8, 1.5), (12.0, 1.5, 0.6), (2.0, 0.5, 4.0)])
def test_m_k_and_s_are_recovered_from_a_known_dirichlet(method, mean, k, s):
    """40,000 customers drawn from the NBD-Dirichlet: M within 2%, K and S within 12%."""
    counts = d.sample(np.random.default_rng(7), 40_000, mean, k, s, SHARES)
    fit = d.fit_dirichlet(counts, method)
    assert fit.mean == pytest.approx(mean, rel=0.02)
    assert fit.k == pytest.approx(k, rel=0.12)
    assert fit.s == pytest.approx(s, rel=0.12)
    assert fit.polarisation == pytest.approx(1 / (1 + fit.s))
    np.testing.assert_allclose(fit.shares, SHARES, atol=0.01)


def test_predictions_match_the_panel_they_were_fitted_to_when_it_is_a_dirichlet():
    counts = d.sample(np.random.default_rng(8), 40_000, 4.0, 1.0, 1.2, SHARES)
    table, _ = d.brand_table(counts, ["A", "B", "C", "D"])
    brands = table.iloc[:4]
    for m in ("penetration", "frequency", "scr"):
        np.testing.assert_allclose(brands[m], brands[f"{m}_dirichlet"], rtol=0.04, err_msg=m)
    # double jeopardy: the smaller the brand, the fewer its buyers and the less often they buy it
    assert (np.diff(brands["penetration_dirichlet"]) < 0).all() and (np.diff(brands["frequency_dirichlet"]) < 0).all()
    category = table.iloc[4]
    assert category["brands_per_buyer"] == pytest.approx(category["brands_per_buyer_dirichlet"], rel=0.02)


def test_without_polarisation_limits_the_brand_split_is_multinomial_and_with_it_each_buyer_is_loyal():
    fit = d.DirichletFit(mean=2.0, k=np.inf, s=1e6, shares=np.array([0.5, 0.5]), customers=1, method="classic")
    pred, category = d.predict(fit)
    # S -> inf: each purchase is a fair coin, so P(no purchase of brand 1) = E[0.5^n] = exp(-1) for a Poisson(2)
    assert pred.loc[0, "penetration"] == pytest.approx(1 - np.exp(-1.0), rel=1e-4)
    loyal = d.DirichletFit(mean=2.0, k=np.inf, s=1e-6, shares=np.array([0.5, 0.5]), customers=1, method="classic")
    pred, category = d.predict(loyal)
    # S -> 0: each buyer buys one brand only: penetration = share x category penetration, SCR = 1
    assert pred.loc[0, "penetration"] == pytest.approx(0.5 * (1 - np.exp(-2.0)), rel=1e-4)
    assert pred.loc[0, "scr"] == pytest.approx(1.0, rel=1e-4)
    assert category["brands_per_buyer"] == pytest.approx(1.0, rel=1e-4)


def test_observed_measures_of_a_hand_built_panel():
    counts = np.array([[2, 0], [1, 1], [0, 3], [0, 0]])
    obs, category = d.observe(counts)
    np.testing.assert_allclose(obs["share"], [3 / 7, 4 / 7])
    np.testing.assert_allclose(obs["penetration"], [0.5, 0.5])
    np.testing.assert_allclose(obs["frequency"], [1.5, 2.0])
    np.testing.assert_allclose(obs["scr"], [3 / 4, 4 / 5])  # brand purchases / its buyers' category purchases
    assert category == pytest.approx({"penetration": 0.75, "frequency": 7 / 3, "brands_per_buyer": 4 / 3})


def test_a_poisson_category_and_bad_input():
    mean, k = d.fit_nbd(np.random.default_rng(9).poisson(3.0, 20_000))
    assert mean == pytest.approx(3.0, rel=0.02) and k > 100  # a Poisson (inf), or all but
    with pytest.raises(ValueError, match="two brands"):
        d.fit_dirichlet(np.zeros((5, 1), int))
    with pytest.raises(ValueError, match="unknown method"):
        d.fit_dirichlet(np.ones((5, 2), int), "moments")
