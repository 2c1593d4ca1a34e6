"""Scenario files: a validated description of one market and the policy tested in it.

A scenario separates the **market** (the customer population, the competitors, scheduled events: what a
strategy team cannot control) from the **policy** under test (the focal firm's levers), so that a comparison of
policies runs on the same market with common random numbers. Mesa has a ``Scenario`` class of its own; ours is
``LoyaltyScenario``.

Files are TOML, validated by pydantic with unknown keys rejected. Every duration and rate names its unit (see
:mod:`loyaltysim.units`). ``experiments/scenarios/baseline.toml`` documents every field.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .units import DurationField, ProbabilityField, RateField

SCHEMA_VERSION = 1
KANO_CLASSES = ("must_be", "one_dimensional", "attractive")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Level = Annotated[float, Field(ge=0.0, le=1.0)]


class ScenarioError(Exception):
    """A scenario that cannot be used; the message lists every problem, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Normal(_Spec):
    """A normal distribution across customers, clipped to [min, max]."""

    mean: float
    sd: NonNegative = 0.0
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Normal:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class PurchaseRate(_Spec):
    """Purchase occasions per customer: Poisson with a gamma-distributed mean (the NBD; Ehrenberg 1959)."""

    mean: RateField = "1 per week"
    shape: Positive = 2.0  # gamma shape k: lower means more heterogeneous buyers


class Attribute(_Spec):
    """A product or service attribute, classified by the Kano model (Kano et al. 1984)."""

    name: Annotated[str, Field(min_length=1)]
    kano: Literal["must_be", "one_dimensional", "attractive"]
    importance: Normal = Normal(mean=1.0, sd=0.3, min=0.0)  # customer weight before normalising to sum 1


class Customers(_Spec):
    """The customer population: traits are drawn once, from the population stream."""

    population: Annotated[int, Field(ge=1, le=20_000_000)] = 10_000
    purchase_rate: PurchaseRate = PurchaseRate()
    price_sensitivity: Normal = Normal(mean=1.0, sd=0.3, min=0.0)  # utility lost per 100% price above reference
    quality_weight: NonNegative = 4.0  # utility per unit of perceived quality (0..1 scale)
    choice_noise: Positive = 0.3  # scale of the Gumbel taste shock in logit choice
    switching_cost: NonNegative = 0.5  # procedural switching cost, utility units
    satisfaction_threshold: Normal = Normal(mean=-0.05, sd=0.05)  # lower edge of the zone of tolerance
    loss_aversion: Annotated[float, Field(ge=1.0)] = 2.0  # losses weigh this much more (Anderson & Sullivan 1993)
    satisfaction_memory: DurationField = "8 weeks"  # half-life of satisfaction smoothing
    expectation_half_life: DurationField = "26 weeks"  # expectations move halfway to experience in this time
    learning_half_life: DurationField = "8 weeks"  # perceived value moves halfway to experienced quality
    search_when_satisfied: ProbabilityField = "3% per month"  # inertia: rare search above the threshold
    search_when_dissatisfied: ProbabilityField = "30% per month"  # active search below the threshold
    natural_churn: ProbabilityField = "5% per year"  # life events that take a customer out of the market
    reentry: ProbabilityField = "50% per year"  # customers out of the market come back as prospects
    failure_severity: NonNegative = 0.3  # satisfaction lost to an unrecovered service failure
    attribution_window: DurationField = "8 weeks"  # how long a failure or price rise can explain a defection
    marketing_effect: Probability = 0.2  # share of the gap to true quality closed by one marketing exposure


class Network(_Spec):
    """A Watts-Strogatz small world carrying word of mouth (advocates recommend, defectors warn)."""

    kind: Literal["small_world", "none"] = "small_world"
    degree: Annotated[int, Field(ge=2, le=200)] = 8
    rewire: Probability = 0.1
    talk: ProbabilityField = "50% per month"  # chance a customer talks about its firm in a period
    influence: Probability = 0.05  # share of the way to 0 or 1 a fully one-sided neighbourhood moves a belief
    advocate_level: float = 0.05  # satisfaction above which a customer recommends its firm

    @field_validator("degree")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"degree must be even (each node links to degree/2 neighbours on each side), got {v}")
        return v


class Survey(_Spec):
    """A sampled, noisy survey: a 1-5 satisfaction item and a 0-10 recommendation item (NPS)."""

    every: DurationField = "4 weeks"
    sample: Probability = 0.05  # share of active customers asked each survey period
    noise: NonNegative = 0.05  # standard deviation of the answer noise, satisfaction units
    cutpoints: tuple[float, float, float, float] = (-0.20, -0.10, -0.04, 0.04)  # satisfaction at scores 2, 3, 4, 5
    nps_scale: Positive = 20.0  # 0-10 item: 7 + nps_scale * satisfaction, rounded and clipped

    @field_validator("cutpoints")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"cutpoints must be strictly increasing, got {list(v)}")
        return v


class Programme(_Spec):
    """Placeholder for loyalty programme designs: none are available in schema version 1."""

    kind: str

    @model_validator(mode="after")
    def _unsupported(self) -> Programme:
        raise ValueError(f"programme kind '{self.kind}' is not available in this version (none are yet)")


class Campaign(_Spec):
    """Placeholder for retention and win-back campaigns: none are available in schema version 1."""

    kind: str

    @model_validator(mode="after")
    def _unsupported(self) -> Campaign:
        raise ValueError(f"campaign kind '{self.kind}' is not available in this version (none are yet)")


class Levers(_Spec):
    """What a firm controls."""

    price: Positive  # per purchase
    programmes: list[Programme] = []
    campaigns: list[Campaign] = []


class Firm(Levers):
    """A firm: its structure (costs, attribute levels, service) and its starting levers."""

    name: Annotated[str, Field(min_length=1)]
    unit_cost: NonNegative = 0.0  # cost of goods per purchase
    attributes: dict[str, Level]  # level of each market attribute, 0..1
    reliability: Probability = 0.98  # probability a purchase goes without a service failure
    recovery: Probability = 0.5  # complaint-recovery quality: share of a failure's damage repaired
    recovery_cost: NonNegative = 0.0  # cost per service failure handled
    marketing_reach: ProbabilityField = "10% per month"  # chance a customer meets the firm's marketing
    marketing_spend: RateField = "0 per week"  # money per period
    fixed_cost: RateField = "0 per week"  # money per period
    acquisition_cost: NonNegative = 0.0  # per customer won


class PriceChange(_Spec):
    kind: Literal["price_change"]
    at: DurationField
    firm: str
    price: Positive


class AttributeChange(_Spec):
    kind: Literal["attribute_change"]
    at: DurationField
    firm: str
    attribute: str
    level: Level


class SwitchingCostChange(_Spec):
    kind: Literal["switching_cost_change"]
    at: DurationField
    switching_cost: NonNegative  # e.g. number portability lowers it


Event = Annotated[PriceChange | AttributeChange | SwitchingCostChange, Field(discriminator="kind")]


class Market(_Spec):
    """What a strategy team cannot control: customers, competitors (and the focal firm's structure), events."""

    type: Literal["contractual", "repertoire"] = "contractual"
    lapse: DurationField = "8 weeks"  # repertoire: a customer is lost to a firm after this long without a purchase
    customers: Customers = Customers()
    attributes: Annotated[list[Attribute], Field(min_length=1)]
    firms: Annotated[list[Firm], Field(min_length=2)]
    network: Network = Network()
    survey: Survey = Survey()
    events: list[Event] = []

    @model_validator(mode="after")
    def _consistent(self) -> Market:
        problems = []
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            problems.append(f"attribute names must be unique, got {names}")
        firms = [f.name for f in self.firms]
        if len(set(firms)) != len(firms):
            problems.append(f"firm names must be unique, got {firms}")
        for f in self.firms:
            missing = [a for a in names if a not in f.attributes]
            extra = [a for a in f.attributes if a not in names]
            if missing:
                problems.append(f"firm '{f.name}' gives no level for attribute(s) {missing}")
            if extra:
                problems.append(f"firm '{f.name}' names unknown attribute(s) {extra}; known: {names}")
        for e in self.events:
            if getattr(e, "firm", None) is not None and e.firm not in firms:
                problems.append(f"event '{e.kind}' names unknown firm '{e.firm}'; known: {firms}")
            if isinstance(e, AttributeChange) and e.attribute not in names:
                problems.append(f"event 'attribute_change' names unknown attribute '{e.attribute}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Policy(_Spec):
    """The levers under test for one focal firm; anything left out keeps the market's value."""

    firm: str
    price: Positive | None = None
    programmes: list[Programme] | None = None
    campaigns: list[Campaign] | None = None


class Time(_Spec):
    step: Literal["week", "day"] = "week"
    horizon: DurationField = "104 weeks"
    warmup: DurationField = "26 weeks"  # discarded from reported outcomes

    @model_validator(mode="after")
    def _warmup_shorter(self) -> Time:
        if self.warmup.steps(self.step) >= self.horizon.steps(self.step):
            raise ValueError(f"warmup ({self.warmup}) must be shorter than horizon ({self.horizon})")
        return self


class Economics(_Spec):
    discount_rate: RateField = "8% per year"  # for NPV, compounded once per period named


class LoyaltyScenario(_Spec):
    """One simulation setting: a market, a policy for its focal firm, time and economics."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    time: Time = Time()
    economics: Economics = Economics()
    market: Market
    policy: Policy

    @model_validator(mode="after")
    def _policy_firm(self) -> LoyaltyScenario:
        firms = [f.name for f in self.market.firms]
        if self.policy.firm not in firms:
            raise ValueError(f"policy.firm '{self.policy.firm}' is not a market firm; known: {firms}")
        return self

    # --- derived views -------------------------------------------------------------------------------
    def effective_firms(self) -> list[Firm]:
        """The market's firms with the policy's levers applied to the focal firm."""
        out = []
        for f in self.market.firms:
            if f.name == self.policy.firm:
                overrides = {k: v for k, v in self.policy.model_dump(exclude={"firm"}).items() if v is not None}
                f = Firm.model_validate({**f.model_dump(), **overrides})
            out.append(f)
        return out

    @property
    def focal_index(self) -> int:
        return [f.name for f in self.market.firms].index(self.policy.firm)

    def steps(self) -> int:
        return self.time.horizon.steps(self.time.step)

    def warmup_steps(self) -> int:
        return self.time.warmup.steps(self.time.step)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-ready form (units as strings); round-trips through :func:`scenario_from_dict`."""
        return self.model_dump(mode="json")

    def with_overrides(self, *, steps: int | None = None) -> LoyaltyScenario:
        """The effective scenario after command-line overrides (``--steps`` is in model steps)."""
        data = self.to_dict()
        if steps is not None:
            if steps <= self.warmup_steps():
                raise ScenarioError("--steps", [f"{steps} steps leave nothing after the warm-up of "
                                                f"{self.warmup_steps()} steps (time.warmup = {self.time.warmup}); "
                                                "give more steps"])
            data["time"]["horizon"] = f"{steps} {self.time.step}s"
        return scenario_from_dict(data, source="command-line overrides")


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("price_change", "attribute_change", "switching_cost_change", "function-after"):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        where = _loc(e["loc"])
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema; check the spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        got = e.get("input")
        if e["type"] not in ("missing", "extra_forbidden", "value_error") and not isinstance(got, dict | list):
            msg += f" (got {got!r})"
        problems.append(f"{where}: {msg}")
    return problems


def scenario_from_dict(data: dict[str, Any], source: str = "scenario") -> LoyaltyScenario:
    try:
        return LoyaltyScenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(source, format_validation_error(err)) from None


def load_scenario(path: str | Path) -> LoyaltyScenario:
    """Read and validate a scenario file; raise :class:`ScenarioError` listing every problem."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(str(path), ["file not found"])
    if path.is_dir():
        raise ScenarioError(str(path), ["is a directory, not a scenario file (.toml)"])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(str(path), [f"malformed TOML: {err}"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(str(path), [f"cannot read file: {err}"]) from None
    return scenario_from_dict(data, source=str(path))
