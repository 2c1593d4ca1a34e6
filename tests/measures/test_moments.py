"""The moments a calibration fits, computed from a tidy transaction frame, and their bootstrap covariance."""

import numpy as np
import pandas as pd
import pytest

from loyaltysim.measures import moments as mom
from loyaltysim.measures import transactions as tr


@pytest.fixture
def frame():
    # weekly transactions: a buys in weeks 1, 2 and 4 (two repeats), b only in week 1, c first in week 3 and again
    # four days later, in week 3 too (one repeat), d first in week 9 (after the cohort's weeks)
    return tr.tidy(["a", "a", "a", "b", "c", "c", "d"], [0.0, 1.0, 3.0, 0.0, 2.0, 18 / 7, 8.0],
                   [10.0, 20.0, 30.0, 5.0, 8.0, 4.0, 9.0], period=tr.DAY)


def test_each_kind_of_moment_on_a_frame_worked_by_hand(frame):
    window = mom.Window(weeks=6, cohort_weeks=4.0, tracking=(2, 6), decay_block=3)
    m = mom.compute(frame, list(mom.KINDS), window)
    # the cohort: a, b, c (d's first transaction is after week 4)
    assert m["repeats_0"] == pytest.approx(1 / 3)  # b
    assert m["repeats_1"] == pytest.approx(1 / 3)  # c
    assert m["repeats_2"] == pytest.approx(1 / 3)  # a
    assert m[[f"repeats_{k}" for k in tr.histogram_labels()]].sum() == pytest.approx(1.0)
    assert m["cumulative_w2"] == pytest.approx(1 / 3)  # a's week-2 repeat
    assert m["cumulative_w6"] == pytest.approx(1.0)  # a's two and c's one
    # weeks 1-3: a in week 2, c in week 3 -> (0 + 1/3 + 1/3) / 3; weeks 4-6: a in week 4 -> (1/3 + 0 + 0) / 3
    assert m["active_w1-3"] == pytest.approx(2 / 9)
    assert m["active_w4-6"] == pytest.approx(1 / 9)
    assert m["interpurchase_mean"] == pytest.approx((1.0 + 2.0 + 4 / 7) / 3)
    assert m["spend_mean"] == pytest.approx((20 + 30 + 4) / 3)
    # the last transaction to the end of week 6: c (one repeat) on 18/7, a (two) in week 4; nobody with 4+
    assert m["recency_x1"] == pytest.approx(6 - 18 / 7)
    assert m["recency_x2-3"] == pytest.approx(6 - 3.0)
    assert np.isnan(m["recency_x4+"])
    assert list(m.index) == mom.names(list(mom.KINDS), window)


def test_the_window_leaves_out_later_transactions_and_an_empty_cohort_gives_nan(frame):
    short = mom.compute(frame, ["cumulative_repeats", "spend"], mom.Window(3, 4.0, (3,)))
    assert short["cumulative_w3"] == pytest.approx(2 / 3)  # a's week-2 and c's week-3 repeats, not a's week 4
    assert short["spend_mean"] == pytest.approx((20 + 4) / 2)
    empty = mom.compute(frame[frame["customer"] == "zz"], ["repeat_histogram"], mom.Window(3, 4.0, (3,)))
    assert empty.isna().all()
    with pytest.raises(ValueError, match="unknown moment kind"):
        mom.names(["frequency"], mom.Window(3, 4.0, (3,)))


def test_recency_tells_a_customer_who_stopped_from_one_who_buys_on():
    # two customers with the same five repeat transactions in 20 weeks: e buys every week from week 1 to 6 and
    # stops, f buys every fourth week and in week 20; the customer who stopped is the one with the long gap
    frame = tr.tidy(["e"] * 6 + ["f"] * 6, [0, 1, 2, 3, 4, 5, 0, 4, 8, 12, 16, 19], np.ones(12), period=1.0)
    window = mom.Window(20, 4.0, (20,))
    both = mom.compute(frame, ["repeat_histogram", "recency"], window)
    assert both["repeats_5"] == 1.0
    assert both["recency_x4+"] == pytest.approx(((20 - 5) + (20 - 19)) / 2)
    stopped = mom.compute(frame[frame["customer"] == "e"], ["recency"], window)
    buying = mom.compute(frame[frame["customer"] == "f"], ["recency"], window)
    assert stopped["recency_x4+"] == pytest.approx(15.0) and buying["recency_x4+"] == pytest.approx(1.0)


def test_the_bootstrap_covariance_is_that_of_resampled_customers():
    rng = np.random.default_rng(4)
    n = 400
    counts = rng.poisson(2.0, n)
    customer = np.repeat(np.arange(n), counts + 1)
    time = np.concatenate([np.sort(rng.uniform(0, 20, c + 1)) for c in counts])
    frame = tr.tidy(customer, time, np.ones(customer.size), period=tr.DAY)
    window = mom.Window(20, 20.0, (10, 20))
    kinds = ["repeat_histogram", "cumulative_repeats"]
    cov = mom.bootstrap(frame, kinds, window, 100, np.random.default_rng(1))
    again = mom.bootstrap(frame, kinds, window, 100, np.random.default_rng(1))
    pd.testing.assert_frame_equal(cov, again)
    assert np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov.to_numpy()).min() > -1e-12
    # the standard error of a share p over n customers is sqrt(p (1 - p) / n)
    p = mom.compute(frame, kinds, window)["repeats_2"]
    assert np.sqrt(cov.loc["repeats_2", "repeats_2"]) == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.2)
    # more customers, smaller errors
    half = frame[frame["customer"] < n // 4]
    small = mom.bootstrap(half, kinds, window, 100, np.random.default_rng(1))
    assert small.loc["cumulative_w20", "cumulative_w20"] > 2 * cov.loc["cumulative_w20", "cumulative_w20"]
