"""Transaction logs (measures.transactions): reading and checking a CSV log, same-day aggregation, and every moment
on a tiny hand-made log whose values are computed by hand below."""

import numpy as np
import pandas as pd
import pytest

from loyaltysim.measures import transactions as tr
from loyaltysim.scenario import ScenarioError

# Days since 1 January 1997 (day 0): A buys twice on day 0 (one transaction of 15), then on days 9 and 50; B once on
# day 2; C on days 4, 5, 6 and 7; D on days 1..9; E first on day 20 (week 3, after the cohort's weeks 1-2) and on 27.
LOG = """customer,date,amount,channel
A,1997-01-01,10.00,web
A,1997-01-01,5,shop
A,19970110,20,web
A,1997-02-20T13:45,7.5,web
B,1997-01-03 09:00:00,3,web
C,1997-01-05,1,web
C,1997-01-06,2,
C,1997-01-07,2,web
C,1997-01-08,2,web
E,1997-01-21,4,web

E,1997-01-28,4,web
""" + "".join(f"D,1997-01-{day:02d},1,web\n" for day in range(2, 11))


@pytest.fixture
def frame(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    return tr.from_dates(tr.read_log(path))


def test_the_log_is_read_with_every_date_format_and_same_day_orders_made_one_transaction(tmp_path, frame):
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    log = tr.read_log(path)
    assert len(log) == 20 and list(log.columns) == ["customer", "date", "amount"]
    assert log["date"].iloc[3] == pd.Timestamp("1997-02-20")  # the time of day is dropped
    assert len(frame) == 19  # A's two orders on 1 January are one transaction, worth their sum
    a = frame[frame["customer"] == "A"]
    np.testing.assert_allclose(a["time"], [0, 9 / 7, 50 / 7])
    np.testing.assert_allclose(a["amount"], [15, 20, 7.5])


def test_rfm_of_the_calibration_weeks(frame):
    s = tr.rfm(frame, end=2)  # weeks 1-2: days 0-13; T runs to day 13
    assert list(s.index) == ["A", "B", "C", "D"]  # E first bought in week 3
    assert s["x"].tolist() == [1, 0, 3, 8]
    np.testing.assert_allclose(s["t_x"], [9 / 7, 0, 3 / 7, 8 / 7])
    np.testing.assert_allclose(s["T"], [13 / 7, 11 / 7, 9 / 7, 12 / 7])


def test_repeat_histograms_with_the_top_bin(frame):
    calibration = tr.repeat_histogram(frame, 0, 2)
    assert calibration.index.tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert calibration.tolist() == [1, 1, 0, 1, 0, 0, 0, 1]  # B; A; C; D's 8 repeats in "7+"
    holdout = tr.repeat_histogram(tr.cohort(frame, 2), 2, 8)  # weeks 3-8: A's day 50
    assert holdout.tolist() == [3, 1, 0, 0, 0, 0, 0, 0]
    assert tr.repeat_histogram(frame, 0, 2, top=3).tolist() == [1, 1, 0, 2]


def test_weekly_and_cumulative_repeat_transactions(frame):
    weekly = tr.weekly_repeats(frame, 8)
    # week 1: C's days 5, 6 and D's days 2-6; week 2: A's day 9, C's 7, D's 7-9; week 4: E's 27; week 8: A's 50
    assert weekly["repeats"].tolist() == [7, 5, 0, 1, 0, 0, 0, 1]
    assert weekly["cumulative"].tolist() == [7, 12, 12, 13, 13, 13, 13, 14]
    assert weekly.index.tolist() == list(range(1, 9))
    assert tr.weekly_repeats(tr.cohort(frame, 2), 8)["cumulative"].iloc[-1] == 13
    assert tr.weekly_repeats(frame, 3)["cumulative"].tolist() == [7, 12, 12]


def test_interpurchase_times_cohort_decay_and_spend(frame):
    gaps = tr.interpurchase_times(frame)
    expected = sorted([9 / 7, 41 / 7] + [1 / 7] * 3 + [1 / 7] * 8 + [1.0])
    np.testing.assert_allclose(sorted(gaps), expected)
    decay = tr.cohort_decay(tr.cohort(frame, 2), 3)
    assert decay.tolist() == [0.5, 0.75, 0.0]  # of A-D: C, D in week 1; A, C, D in week 2
    assert tr.spend(frame).sum() == pytest.approx(15 + 20 + 7.5 + 3 + 7 + 8 + 9)
    assert tr.spend(frame, repeat_only=True).sum() == pytest.approx(20 + 7.5 + 6 + 4 + 8)


def test_a_simulated_log_of_weekly_steps_goes_through_the_same_code():
    frame = tr.tidy(customer=[1, 1, 1, 2, 2], time=[0, 0, 3, 1, 2], amount=[2.0, 3.0, 1.0, 4.0, 4.0], period=1.0)
    assert frame["time"].tolist() == [0.0, 3.0, 1.0, 2.0] and frame["amount"].tolist() == [5.0, 1.0, 4.0, 4.0]
    s = tr.rfm(frame, end=4, period=1.0)
    assert s["x"].tolist() == [1, 1] and s["t_x"].tolist() == [3.0, 1.0] and s["T"].tolist() == [3.0, 2.0]
    assert tr.weekly_repeats(frame, 4)["repeats"].tolist() == [0, 0, 1, 1]


def _bad(tmp_path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(tr.TransactionLogError) as err:
        tr.read_log(path)
    assert isinstance(err.value, ScenarioError)  # the command line prints it as one message, without a traceback
    message = str(err.value)
    assert message.startswith(str(path))
    return message


def test_bad_logs_are_refused_naming_the_line_the_column_and_what_is_allowed(tmp_path):
    with pytest.raises(tr.TransactionLogError, match=r"(?s)nowhere\.csv: 1 problem.*file not found"):
        tr.read_log(tmp_path / "nowhere.csv")
    assert "missing column(s) date; found 'customer', 'day', 'amount'" in _bad(tmp_path, "customer,day,amount\nA,1,2\n")
    message = _bad(tmp_path, "customer,date,amount\nA,1997-01-01,1\nA,1997/01/05,2\nB,19971301,3\nB,1997-01-02,-2\n"
                             ",1997-01-03,x\nC,1997-01-04\n")
    assert "line 3, column date: '1997/01/05' is not a date (allowed: YYYY-MM-DD or YYYYMMDD" in message
    assert "line 4, column date: '19971301' is not a date" in message
    assert "line 5, column amount: '-2' is negative (allowed: a finite number >= 0)" in message
    assert "line 6, column customer: empty" in message and "line 6, column amount: 'x' is not a number" in message
    assert "line 7: 2 field(s), the header has 3" in message
    assert "no transactions after the header" in _bad(tmp_path, "customer,date,amount\n")
    many = _bad(tmp_path, "customer,date,amount\n" + "A,never,1\n" * 15)
    assert "... and 5 more" in many
