"""The BG/NBD (measures.bgnbd): its P(X(t) = x) against E[X(t)], its predictions against customers drawn from the
model, parameters recovered from such draws, and a likelihood that tells wrong parameters and data of another kind
apart. The fit on the CDNOW data the paper used is checked in tests/datasets/test_cdnow.py."""

import numpy as np
import pytest
from scipy import stats

from loyaltysim.measures import bgnbd as bg

CDNOW = bg.BGNBDFit(0.243, 4.414, 0.793, 2.426)  # Fader, Hardie & Lee (2005), Table 1
TRUE = bg.BGNBDFit(0.5, 6.0, 0.7, 2.5)
CRITICAL = stats.chi2.ppf(0.999, 4)  # a likelihood-ratio test of the four parameters at the 0.1% level


@pytest.mark.parametrize("fit", [CDNOW, TRUE, bg.BGNBDFit(2.0, 10.0, 1.5, 4.0)])
@pytest.mark.parametrize("t", [0.0, 1.0, 39.0, 78.0])
def test_the_pmf_sums_to_one_and_its_mean_is_the_expected_repeats(fit, t):
    p = bg.pmf(fit, t, 2000)
    assert (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.arange(p.size) @ p == pytest.approx(float(bg.expected_repeats(fit, t)), rel=1e-7, abs=1e-12)


def test_a_new_customer_expects_what_a_customer_of_age_zero_does():
    t = np.array([1.0, 13.0, 52.0])
    np.testing.assert_allclose(bg.conditional_expected(TRUE, t, 0, 0.0, 0.0), bg.expected_repeats(TRUE, t))
    # a customer who bought often and lately expects more than one who bought as often long ago
    assert bg.conditional_expected(CDNOW, 39, 5, 35.0, 38.0) > bg.conditional_expected(CDNOW, 39, 5, 5.0, 38.0)


@pytest.fixture(scope="module")
def drawn():
    """20,000 customers drawn from the BG/NBD at TRUE, aged 27 to 39 weeks (CDNOW's first purchases spread over 12
    weeks), and the fit to them."""
    rng = np.random.default_rng(2005)
    data = bg.sample(rng, TRUE, np.round(rng.uniform(27, 39, 20_000) * 7) / 7)  # whole days, as a dated log
    return data, bg.fit_bgnbd(data["x"], data["t_x"], data["T"])


def test_predictions_match_customers_drawn_from_the_model():
    data = bg.sample(np.random.default_rng(11), TRUE, np.full(100_000, 39.0))
    observed = np.bincount(np.minimum(data["x"], 7), minlength=8) / len(data)
    np.testing.assert_allclose(observed, bg.expected_histogram(TRUE, data["T"]) / len(data), atol=0.004)
    assert data["x"].mean() == pytest.approx(float(bg.expected_repeats(TRUE, 39.0)), rel=0.02)


def test_the_fit_recovers_known_parameters_and_the_likelihood_rejects_wrong_ones(drawn):
    data, fit = drawn
    assert fit.customers == 20_000
    for name, rel in (("r", 0.1), ("alpha", 0.15), ("a", 0.15), ("b", 0.15)):
        assert getattr(fit, name) == pytest.approx(getattr(TRUE, name), rel=rel), name
    def lr(params):
        return 2 * (fit.loglik - bg.loglik(params, data["x"], data["t_x"], data["T"]).sum())
    assert 0 <= lr(TRUE.params) < CRITICAL  # the true parameters are not rejected
    for wrong in ((0.5, 6.0, 1.4, 2.5), (0.5, 6.0, 0.7, 5.0), (0.6, 6.0, 0.7, 2.5), CDNOW.params):
        assert lr(wrong) > CRITICAL, wrong
    # the maximum is a maximum: a fit started elsewhere ends at the same place
    again = bg.fit_bgnbd(data["x"], data["t_x"], data["T"], start=(2.0, 1.0, 3.0, 0.5))
    np.testing.assert_allclose(again.params, fit.params, rtol=1e-3)


def _histogram_chi2(fit, x, T) -> float:
    observed = np.bincount(np.minimum(x, 7), minlength=8)
    expected = bg.expected_histogram(fit, T).to_numpy()
    return float(((observed - expected) ** 2 / expected).sum())


def test_the_fitted_histogram_fits_bgnbd_customers_and_not_regular_buyers(drawn):
    data, fit = drawn
    critical = stats.chi2.ppf(0.999, 8 - 1 - 4)
    assert _histogram_chi2(fit, data["x"], data["T"]) < critical
    # customers who buy every 4 weeks like clockwork, for good: no mixture of Poisson processes makes that
    T = data["T"].to_numpy()
    x = np.floor(T / 4).astype(int)
    regular = bg.fit_bgnbd(x, x * 4.0, T)
    assert _histogram_chi2(regular, x, T) > 100 * critical


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="t_x <= T"):
        bg.fit_bgnbd([1], [5.0], [3.0])
    with pytest.raises(ValueError, match="no customer made a repeat"):
        bg.fit_bgnbd([0, 0], [0.0, 0.0], [3.0, 4.0])
