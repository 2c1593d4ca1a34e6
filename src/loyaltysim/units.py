"""Durations and rates with units, converted to the model's step length.

Every duration and rate in a scenario names its unit, so that a scenario means the same thing whether the
model steps in weeks or days. A year is 365.25 days and a month a twelfth of it; a week is 7 days.

* A **duration** (``"8 weeks"``, ``"12 months"``, ``"30 days"``) converts to a whole number of steps
  (rounded to the nearest; a positive duration is never rounded down to zero).
* A **rate** (``"1.5 per week"``, ``"20 per year"``) is an expected count per period; per step it scales
  linearly with the step length.
* A **period probability** (``"0.15 per year"``, ``"2% per month"``) is the probability that an event
  happens within one period; per step it is ``1 - (1 - p) ** (step / period)`` (a constant hazard), so
  twelve monthly steps of ``"12% per year"`` compound back to exactly 12% a year.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12.0, "year": 365.25}
STEP_UNITS = ("day", "week")
_UNIT_ALIASES = {
    "d": "day", "day": "day", "days": "day",
    "w": "week", "wk": "week", "week": "week", "weeks": "week",
    "m": "month", "mo": "month", "month": "month", "months": "month",
    "y": "year", "yr": "year", "year": "year", "years": "year", "annum": "year",
}
_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-zA-Z]+)\s*$")
_RATE_RE = re.compile(rf"^\s*{_NUMBER}\s*(%?)\s*(?:per|/)\s*([a-zA-Z]+)\s*$", re.IGNORECASE)
ALLOWED_UNITS = "days, weeks, months or years"
MAX_YEARS = 10_000  # the longest duration a scenario may state (longer is a typo, and overflows step counts)
MAX_RATE = 1e12  # the largest count or amount per period (larger overflows the random draws)


def _num(value: float) -> str:
    """Shortest text that reads back as exactly ``value``."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _unit(word: str) -> str:
    unit = _UNIT_ALIASES.get(word.lower())
    if unit is None:
        raise ValueError(f"unknown time unit '{word}'; use {ALLOWED_UNITS}")
    return unit


@dataclass(frozen=True)
class Duration:
    """A length of time such as ``8 weeks``."""

    value: float
    unit: str

    def days(self) -> float:
        return self.value * DAYS[self.unit]

    def steps(self, step_unit: str) -> int:
        """Whole steps, rounded to nearest; never zero for a positive duration."""
        exact = self.days() / DAYS[step_unit]
        n = math.floor(exact + 0.5)
        return max(n, 1) if self.value > 0 else 0

    def __str__(self) -> str:
        return f"{_num(self.value)} {self.unit}s"


@dataclass(frozen=True)
class Rate:
    """An expected count per period, such as ``1.5 per week``."""

    value: float
    unit: str

    def per_step(self, step_unit: str) -> float:
        return self.value * DAYS[step_unit] / DAYS[self.unit]

    def __str__(self) -> str:
        return f"{_num(self.value)} per {self.unit}"


@dataclass(frozen=True)
class PeriodProbability:
    """The probability that an event happens within one period, such as ``0.15 per year``."""

    value: float
    unit: str

    def per_step(self, step_unit: str) -> float:
        frac = DAYS[step_unit] / DAYS[self.unit]
        if self.value >= 1.0:
            return 1.0
        return -math.expm1(frac * math.log1p(-self.value))

    def __str__(self) -> str:
        return f"{_num(self.value)} per {self.unit}"


def parse_duration(text: Any) -> Duration:
    if isinstance(text, Duration):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string such as '8 weeks' ({ALLOWED_UNITS}), got {text!r}")
    m = _DURATION_RE.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a duration; write a number and a unit, e.g. '8 weeks' ({ALLOWED_UNITS})")
    value = float(m.group(1))
    if value < 0:
        raise ValueError(f"duration '{text}' is negative; it must be >= 0")
    duration = Duration(value, _unit(m.group(2)))
    if not duration.days() <= MAX_YEARS * DAYS["year"]:  # also catches an infinite value
        raise ValueError(f"duration '{text}' is longer than {MAX_YEARS:,} years")
    return duration


def parse_positive_duration(text: Any) -> Duration:
    """A duration that must be longer than zero (how often something recurs, a period)."""
    duration = parse_duration(text)
    if duration.value <= 0:
        raise ValueError(f"'{text}' must be longer than 0 (it says how often something happens)")
    return duration


def _parse_rate_parts(text: Any, example: str) -> tuple[float, str]:
    if not isinstance(text, str):
        raise ValueError(f"a rate is a string such as '{example}' (per day, week, month or year), got {text!r}")
    m = _RATE_RE.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a rate; write e.g. '{example}' (per day, week, month or year)")
    value = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if value < 0:
        raise ValueError(f"rate '{text}' is negative; it must be >= 0")
    if not value <= MAX_RATE:  # also catches an infinite value
        raise ValueError(f"rate '{text}' is larger than {MAX_RATE:g} per period")
    return value, _unit(m.group(3))


def parse_rate(text: Any) -> Rate:
    if isinstance(text, Rate):
        return text
    value, unit = _parse_rate_parts(text, "1.5 per week")
    return Rate(value, unit)


def parse_probability(text: Any) -> PeriodProbability:
    if isinstance(text, PeriodProbability):
        return text
    value, unit = _parse_rate_parts(text, "15% per year")
    if value > 1.0:
        raise ValueError(f"'{text}' is a probability per period and must lie in [0, 1] (or 0%-100%)")
    return PeriodProbability(value, unit)


# Pydantic field types: validated from strings, serialised back to the same canonical strings.
DurationField = Annotated[Duration, BeforeValidator(parse_duration), PlainSerializer(str, return_type=str)]
PositiveDurationField = Annotated[
    Duration, BeforeValidator(parse_positive_duration), PlainSerializer(str, return_type=str)
]
RateField = Annotated[Rate, BeforeValidator(parse_rate), PlainSerializer(str, return_type=str)]
ProbabilityField = Annotated[
    PeriodProbability, BeforeValidator(parse_probability), PlainSerializer(str, return_type=str)
]
