"""Tests of durations, rates and period probabilities: parsing, conversion to steps, serialisation."""

import json
import math

import pytest

from loyaltysim.scenario import scenario_from_dict
from loyaltysim.units import (
    DAYS,
    Duration,
    PeriodProbability,
    Rate,
    parse_duration,
    parse_probability,
    parse_rate,
)

WEEKS_PER_YEAR = 365.25 / 7.0


# ----------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("8 weeks", 8.0, "week"),
        ("8 week", 8.0, "week"),
        ("8 w", 8.0, "week"),
        ("3wk", 3.0, "week"),
        ("  12 months ", 12.0, "month"),
        ("2 mo", 2.0, "month"),
        ("1 m", 1.0, "month"),
        ("30 days", 30.0, "day"),
        ("1 d", 1.0, "day"),
        ("1.5 years", 1.5, "year"),
        ("2 yr", 2.0, "year"),
        ("1 y", 1.0, "year"),
        ("8 WEEKS", 8.0, "week"),
        (".5 weeks", 0.5, "week"),
        ("1e1 days", 10.0, "day"),
        ("0 weeks", 0.0, "week"),
    ],
)
def test_parse_duration_numbers_and_unit_aliases(text, value, unit):
    assert parse_duration(text) == Duration(value, unit)


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("1.5 per week", 1.5, "week"),
        ("20 per year", 20.0, "year"),
        ("20/yr", 20.0, "year"),
        ("3 per annum", 3.0, "year"),
        ("0.5 / day", 0.5, "day"),
        ("4 per Month", 4.0, "month"),
        ("250% per month", 2.5, "month"),  # a rate (not a probability) may exceed 100%
    ],
)
def test_parse_rate(text, value, unit):
    assert parse_rate(text) == Rate(value, unit)


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("15% per year", 0.15, "year"),
        ("0.15 per year", 0.15, "year"),
        ("2% per month", 0.02, "month"),
        ("2%/mo", 0.02, "month"),
        ("50 % per week", 0.5, "week"),
        ("100% per day", 1.0, "day"),
        ("1 per day", 1.0, "day"),
        ("0% per year", 0.0, "year"),
    ],
)
def test_parse_probability_with_and_without_percent(text, value, unit):
    parsed = parse_probability(text)
    assert parsed.unit == unit
    assert parsed.value == pytest.approx(value, rel=1e-15, abs=0.0)


def test_percent_is_a_hundredth():
    assert parse_probability("12% per year").value == parse_probability("0.12 per year").value
    assert parse_rate("8% per year").value == parse_rate("0.08 per year").value


def test_parsers_pass_parsed_values_through():
    d, r, p = Duration(2.0, "week"), Rate(1.0, "day"), PeriodProbability(0.1, "year")
    assert parse_duration(d) is d
    assert parse_rate(r) is r
    assert parse_probability(p) is p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8 fortnights", "unknown time unit 'fortnights'"),
        ("8 hours", "unknown time unit 'hours'"),
        ("-3 weeks", "negative"),
        ("8", "not a duration"),
        ("weeks", "not a duration"),
        ("8 weeks ago", "not a duration"),
        ("50% weeks", "not a duration"),
        ("", "not a duration"),
        (8, "a duration is a string"),
        (None, "a duration is a string"),
    ],
)
def test_parse_duration_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5 per fortnight", "unknown time unit 'fortnight'"),
        ("-2 per week", "negative"),
        ("-5% per week", "negative"),
        ("1.5 weekly", "not a rate"),
        ("per week", "not a rate"),
        ("1.5", "not a rate"),
        (1.5, "a rate is a string"),
    ],
)
def test_parse_rate_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("150% per year", r"must lie in \[0, 1\]"),
        ("1.5 per year", r"must lie in \[0, 1\]"),
        ("100.0001% per year", r"must lie in \[0, 1\]"),
        ("-1% per year", "negative"),
        ("12% per decade", "unknown time unit 'decade'"),
        ("12%", "not a rate"),
        (0.12, "a rate is a string"),
    ],
)
def test_parse_probability_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_probability(text)


# ----------------------------------------------------------------------------------- conversion


def test_day_month_year_lengths():
    assert DAYS == {"day": 1.0, "week": 7.0, "month": 365.25 / 12.0, "year": 365.25}


def test_yearly_probability_compounds_back_over_a_year_of_weekly_steps():
    per_week = parse_probability("12% per year").per_step("week")
    # constant hazard: 1 - (1 - 0.12) ** (7 / 365.25)
    assert per_week == pytest.approx(1.0 - 0.88 ** (7.0 / 365.25), rel=1e-13)
    assert 0.12 / WEEKS_PER_YEAR < per_week < 0.13 / WEEKS_PER_YEAR  # compounding needs a bit more per step
    survive_a_year = (1.0 - per_week) ** WEEKS_PER_YEAR  # a year is 365.25 / 7 weekly steps
    assert 1.0 - survive_a_year == pytest.approx(0.12, rel=1e-12)
    # 52 whole weeks are 1.25 days short of a year, so they compound to slightly less than 12%
    p52 = 1.0 - (1.0 - per_week) ** 52
    assert p52 == pytest.approx(1.0 - 0.88 ** (364.0 / 365.25), rel=1e-12)
    assert p52 < 0.12


@pytest.mark.parametrize(("step", "steps_per_period"), [("month", 12.0), ("week", WEEKS_PER_YEAR), ("day", 365.25)])
def test_probability_round_trips_through_any_step_length(step, steps_per_period):
    per_step = parse_probability("12% per year").per_step(step)
    assert 1.0 - (1.0 - per_step) ** steps_per_period == pytest.approx(0.12, rel=1e-12)


def test_probability_per_step_in_longer_steps_than_its_period():
    # "2% per week" over a year of weeks: 1 - 0.98 ** (365.25 / 7)
    assert parse_probability("2% per week").per_step("week") == pytest.approx(0.02, rel=1e-14)
    assert parse_probability("2% per day").per_step("week") == pytest.approx(1.0 - 0.98**7, rel=1e-13)


def test_probability_edges():
    assert parse_probability("100% per year").per_step("week") == 1.0
    assert parse_probability("0% per year").per_step("week") == 0.0
    assert parse_probability("1 per month").per_step("day") == 1.0


def test_rate_scales_linearly_with_step_length():
    assert parse_rate("20 per year").per_step("week") == pytest.approx(20.0 * 7.0 / 365.25, rel=1e-15)
    assert parse_rate("1.5 per week").per_step("day") == pytest.approx(1.5 / 7.0, rel=1e-15)
    assert parse_rate("1 per day").per_step("week") == pytest.approx(7.0, rel=1e-15)
    assert parse_rate("12 per year").per_step("week") == pytest.approx(parse_rate("1 per month").per_step("week"))


@pytest.mark.parametrize(
    ("text", "step", "steps"),
    [
        ("8 weeks", "week", 8),
        ("2 weeks", "day", 14),
        ("12 months", "week", 52),  # 52.18 weeks
        ("6 months", "week", 26),  # 26.09
        ("1 year", "week", 52),
        ("1 year", "day", 365),  # 365.25 rounds down
        ("10 days", "week", 1),  # 1.43 rounds down
        ("11 days", "week", 2),  # 1.57 rounds up
        ("0.5 weeks", "week", 1),  # halves round up
        ("1.5 weeks", "week", 2),
        ("2.5 weeks", "week", 3),  # not to even
        ("2.49 weeks", "week", 2),
        ("0 weeks", "week", 0),
        ("0 days", "day", 0),
    ],
)
def test_duration_steps_round_to_nearest(text, step, steps):
    assert parse_duration(text).steps(step) == steps


@pytest.mark.parametrize("text", ["1 day", "3 days", "0.01 weeks", "1e-9 years"])
def test_positive_duration_is_never_zero_steps(text):
    assert parse_duration(text).steps("week") == 1


def test_duration_days():
    assert parse_duration("2 months").days() == pytest.approx(365.25 / 6.0, rel=1e-15)
    assert parse_duration("3 weeks").days() == 21.0


# ----------------------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_duration, "8 weeks"),
        (parse_duration, "1.5 months"),
        (parse_duration, "30 d"),
        (parse_rate, "1.5 per week"),
        (parse_rate, "8% per year"),
        (parse_probability, "3% per month"),
        (parse_probability, "0.1% per day"),
        (parse_probability, f"{1 / 3!r} per year"),
    ],
)
def test_canonical_string_parses_back_to_the_same_value(parse, text):
    value = parse(text)
    assert parse(str(value)) == value


def test_canonical_strings_name_the_full_unit():
    assert str(parse_duration("8 wk")) in ("8 weeks", "8.0 weeks")
    assert str(parse_duration("1 d")) in ("1 days", "1.0 days")
    assert str(parse_rate("20/yr")) in ("20 per year", "20.0 per year")
    assert str(parse_probability("3% per month")) == "0.03 per month"


def test_scenario_serialises_units_as_canonical_strings(make_scenario):
    data = make_scenario(
        market__customers__natural_churn="5% per year",
        market__customers__satisfaction_memory="56 days",
        market__customers__purchase_rate={"mean": "52 per year"},
    ).to_dict()
    json.dumps(data)  # JSON-ready
    c = data["market"]["customers"]
    assert c["natural_churn"] == "0.05 per year"
    assert parse_duration(c["satisfaction_memory"]) == Duration(56.0, "day")
    assert parse_rate(c["purchase_rate"]["mean"]) == Rate(52.0, "year")
    assert parse_duration(data["time"]["horizon"]) == Duration(30.0, "week")
    assert all(isinstance(c[k], str) for k in ("natural_churn", "reentry", "satisfaction_memory"))


def test_scenario_round_trip_is_equal(make_scenario):
    original = make_scenario(
        market__type="repertoire",
        market__lapse="2 months",
        market__customers__search_when_satisfied="0.1% per day",
        market__customers__reentry=f"{100 / 3!r}% per year",
        market__firms__0__marketing_spend="1234.5 per month",
        market__events=[
            {"kind": "price_change", "at": "10 weeks", "firm": "Rival A", "price": 26.0},
            {"kind": "attribute_change", "at": "3 months", "firm": "Rival B", "attribute": "perks", "level": 0.9},
            {"kind": "switching_cost_change", "at": "20 weeks", "switching_cost": 0.0},
        ],
    )
    data = original.to_dict()
    again = scenario_from_dict(json.loads(json.dumps(data)))
    assert again == original
    assert again.to_dict() == data
    # the converted numbers survive exactly, not just the strings
    c, c2 = original.market.customers, again.market.customers
    assert c2.reentry.per_step("week") == c.reentry.per_step("week")
    assert again.market.lapse.steps("week") == original.market.lapse.steps("week") == 9
    assert again.market.events == original.market.events


def test_round_trip_detects_a_changed_value(make_scenario):
    original = make_scenario()
    data = original.to_dict()
    data["market"]["customers"]["natural_churn"] = "6% per year"
    assert scenario_from_dict(data) != original


def test_step_unit_changes_step_counts_not_meaning(make_scenario):
    weekly = make_scenario(time__horizon="12 weeks", time__warmup="2 weeks")
    daily = make_scenario(time__step="day", time__horizon="12 weeks", time__warmup="2 weeks")
    assert (weekly.steps(), weekly.warmup_steps()) == (12, 2)
    assert (daily.steps(), daily.warmup_steps()) == (84, 14)
    churn = daily.market.customers.natural_churn
    assert 1.0 - (1.0 - churn.per_step("day")) ** 7 == pytest.approx(churn.per_step("week"), rel=1e-12)
    assert math.isclose(1.0 - (1.0 - churn.per_step("day")) ** 365.25, churn.value, rel_tol=1e-12)
