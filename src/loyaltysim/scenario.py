"""Scenario files: a validated description of one market and the policy tested in it.

A scenario separates the **market** (the customer population, the competitors, scheduled events: what a
strategy team cannot control) from the **policy** under test (the focal firm's levers), so that a comparison of
policies runs on the same market with common random numbers. Mesa has a ``Scenario`` class of its own; ours is
``LoyaltyScenario``.

Files are TOML, validated by pydantic with unknown keys rejected. Every duration and rate names its unit (see
:mod:`loyaltysim.units`). ``experiments/scenarios/baseline.toml`` documents every field.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from .units import DAYS, DurationField, PositiveDurationField, ProbabilityField, RateField, parse_duration

SCHEMA_VERSION = 1
# The switches of the second behaviour pass's mechanisms (docs/odd.md 3.3.25-3.3.31): all of them False gives the
# first pass's dynamics bit for bit (tests/model/test_regression_pin.py checks these are every switch of the schema).
SECOND_PASS_SWITCHES = (
    "market.customers.attention.enabled",
    "market.customers.reference_price.enabled",
    "market.customers.market_expectations.enabled",
    "market.customers.reliability_choice.enabled",
    "market.customers.attainable_rewards.enabled",
    "market.tastes.enabled",
    "market.consideration.enabled",
)
KANO_CLASSES = ("must_be", "one_dimensional", "attractive")

# numbers: a boolean is not a number, and NaN and infinity are rejected (model_config's allow_inf_nan)
Number = Annotated[float, Strict()]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Strict(), Field(ge=0.0)]
Positive = Annotated[float, Strict(), Field(gt=0.0)]
Level = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
AtLeastOne = Annotated[float, Strict(), Field(ge=1.0)]  # a multiplier or a factor that only adds
ShareOff = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]  # a share off a price


class ScenarioError(Exception):
    """A scenario that cannot be used; the message lists every problem, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def tagged_union(types: tuple[type[BaseModel], ...]) -> tuple[Any, tuple[str, ...]]:
    """The discriminated union of spec classes on their ``kind`` tag, and the tags in order: each kind of event,
    campaign and programme is listed once, in its ``*_TYPES`` tuple, and the union and the tags derive from it."""
    union = Annotated[Union[types], Field(discriminator="kind")]  # noqa: UP007 (a union built from a tuple)
    return union, tuple(get_args(t.model_fields["kind"].annotation)[0] for t in types)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class Normal(_Spec):
    """A normal distribution across customers, clipped to [min, max]."""

    mean: Number
    sd: NonNegative = 0.0
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Normal:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if (self.min is not None and self.mean < self.min) or (self.max is not None and self.mean > self.max):
            raise ValueError(f"the mean ({self.mean}) must lie between min ({self.min}) and max ({self.max})")
        return self


class PurchaseRate(_Spec):
    """Purchase occasions per customer: Poisson with a gamma-distributed mean (the NBD; Ehrenberg 1959)."""

    mean: RateField = "1 per week"
    shape: Positive = 2.0  # gamma shape k: lower means more heterogeneous buyers


class KanoDrift(_Spec):
    """Attributes drift from attractive to one-dimensional to must-be as customers come to expect them.

    The class changes when the population's mean expectation of the attribute reaches these levels.
    """

    one_dimensional_at: Level = 0.6
    must_be_at: Level = 0.8

    @model_validator(mode="after")
    def _order(self) -> KanoDrift:
        if self.must_be_at < self.one_dimensional_at:
            raise ValueError(f"must_be_at ({self.must_be_at}) must not be below one_dimensional_at "
                             f"({self.one_dimensional_at})")
        return self


class Attribute(_Spec):
    """A product or service attribute, classified by the Kano model (Kano et al. 1984)."""

    name: Annotated[str, Field(min_length=1)]
    kano: Literal["must_be", "one_dimensional", "attractive"]
    importance: Normal = Normal(mean=1.0, sd=0.3, min=0.0)  # customer weight before normalising to sum 1
    cost_per_unit: NonNegative = 1_000_000.0  # money to raise a firm's level by 1.0 (0.1 costs a tenth)
    drift: KanoDrift | None = None  # None: the class never changes


class Segment(_Spec):
    """A customer segment: a share of the population with its own buying and price traits."""

    name: Annotated[str, Field(min_length=1)]
    share: Annotated[float, Strict(), Field(gt=0.0, le=1.0)]
    purchase_rate: PurchaseRate | None = None  # None: the population's
    basket: Normal | None = None
    price_sensitivity: Normal | None = None


class Attention(_Spec):
    """Limited attention to marketing (advertising clutter): a customer notices at most ``capacity`` marketing
    messages in a period, shared among the firms by their share of voice. Off (``enabled = false``): each firm's
    marketing is met with its own reach, whatever the others do."""

    enabled: Annotated[bool, Strict()] = False
    capacity: RateField = "2 per month"  # the most marketing messages a customer notices in a period


class ReferencePrice(_Spec):
    """Perceived value (Zeithaml 1988): each customer judges the price it pays against its own reference price,
    which adapts to the prices it pays, discounts included (Kalyanaram & Winer 1995); a price above the reference
    is a loss that weighs more than a saving of the same size. Off (``enabled = false``): price enters only the
    choice, against the market's average starting price, and never satisfaction."""

    enabled: Annotated[bool, Strict()] = False
    half_life: DurationField = "13 weeks"  # the reference moves halfway to the prices paid in this time
    value_weight: NonNegative = 0.1  # satisfaction per 100% of the price below (gain) or above (loss) the reference
    loss_aversion: AtLeastOne = 2.0  # a price above the reference weighs this many times a saving of the same size


class MarketExpectations(_Spec):
    """Expectations of known needs adapt to the whole market in both directions, toward a mix of the best offer and
    the average offer customers get. Off (``enabled = false``): they rise toward the best offer and never fall
    toward it (a ratchet)."""

    enabled: Annotated[bool, Strict()] = False
    best_offer_weight: Probability = 0.25  # the reference level's weight on the best offer (the rest: the average)


class ReliabilityChoice(_Spec):
    """Reliability in choice: each customer's belief about each firm's service reliability, learned from its own
    failures and recoveries and from word of mouth, weighed when choosing (raised by a service upgrade or priority
    service it holds). Off (``enabled = false``): failures act on choice only through the quality belief."""

    enabled: Annotated[bool, Strict()] = False
    weight: NonNegative = 10.0  # utility per unit of expected reliability (0.01 more: 0.1 utility at the default)
    half_life: DurationField = "26 weeks"  # in steps with a purchase: the belief moves halfway to the outcomes
    word_of_mouth: Probability = 0.05  # share of the way a fully one-sided neighbourhood moves the belief
    recovery_credit: Probability = 0.5  # a failure whose complaint is resolved well teaches this much less


class ExitHazard(_Spec):
    """Each customer's hazard of leaving the market, gamma-distributed across customers (Pareto/NBD)."""

    mean: RateField = "0.03 per year"  # mean hazard μ: expected exits per unit of time
    shape: Positive = 1.0  # gamma shape s: the hazards' coefficient of variation is 1/sqrt(s)


class Dropout(_Spec):
    """Each customer's chance of becoming inactive after a purchase occasion, Beta(a, b) across customers (BG/NBD)."""

    a: Positive = 1.0
    b: Positive = 3.0  # mean a / (a + b): 0.25 at the defaults


class Lifetimes(_Spec):
    """Heterogeneous lifetimes: each customer leaves the market with its own propensity, a hazard per unit of time
    (``kind = "hazard"``) or a dropout chance after each purchase occasion (``kind = "after_purchase"``), instead of
    ``natural_churn``'s one hazard for all. Off (``enabled = false``): natural churn."""

    enabled: Annotated[bool, Strict()] = False
    kind: Literal["hazard", "after_purchase"] = "hazard"
    hazard: ExitHazard = ExitHazard()  # kind "hazard"
    dropout: Dropout = Dropout()  # kind "after_purchase"


class Arrivals(_Spec):
    """Customers who arrive over time (a cohort acquired over weeks) instead of all being in the market at the start.

    Each customer's arrival step is drawn once: uniform over the window ``over`` starting at step 0, or, with
    ``shares``, from a schedule (the share of the cohort arriving in each period of ``every``, then uniform within
    the period). Before it arrives a customer is out of the market; on its arrival step it enters and, with
    ``first_purchase``, buys at least once from the firm it chooses. Off (``enabled = false``): every customer is in
    the market from the start."""

    enabled: Annotated[bool, Strict()] = False
    over: PositiveDurationField | None = None  # arrivals uniform over this window from step 0 (default "12 weeks")
    shares: list[NonNegative] | None = None  # or: the share arriving in each period of ``every`` (sum to 1)
    every: PositiveDurationField = "1 week"  # the length of a period of ``shares``
    first_purchase: Annotated[bool, Strict()] = True  # a customer buys on its arrival step (at least one occasion)

    @field_validator("shares")
    @classmethod
    def _sum_to_one(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or abs(sum(v) - 1.0) > ARRIVAL_SHARES_TOLERANCE):
            raise ValueError(f"the shares of the cohort arriving in each period must sum to 1 (within "
                             f"{ARRIVAL_SHARES_TOLERANCE:g}; they are normalised), got {len(v)} share(s) summing to "
                             f"{sum(v):g}")
        return v

    @model_validator(mode="after")
    def _one_schedule(self) -> Arrivals:
        if self.over is not None and self.shares is not None:
            raise ValueError("give either over (arrivals uniform over a window) or shares (a schedule by period of "
                             "every), not both")
        return self

    def schedule(self) -> tuple[list[float], Any]:
        """(the shares of the cohort arriving in each period, normalised; the period's length)."""
        if self.shares is None:
            return [1.0], self.over if self.over is not None else parse_duration("12 weeks")
        total = sum(self.shares)
        return [x / total for x in self.shares], self.every

    def window_days(self) -> float:
        """The length of the arrival window, in days."""
        shares, period = self.schedule()
        return len(shares) * period.days()


ARRIVAL_SHARES_TOLERANCE = 1e-3  # an arrival schedule's shares may be rounded to three decimals


class AttainableRewards(_Spec):
    """Attainable rewards and spending headroom: a points programme's pressure and pull on a member scale with its
    chance of reaching the next reward before its points expire, from its own spending, and the pressure toward a
    seller with the share of its category spend not yet there. Off (``enabled = false``): pressure and pull depend
    on the progress toward the next reward alone."""

    enabled: Annotated[bool, Strict()] = False


class Customers(_Spec):
    """The customer population: traits are drawn once, from the population stream."""

    population: Annotated[int, Strict(), Field(ge=1, le=20_000_000)] = 10_000
    segments: list[Segment] = []  # empty: one segment, "all"
    purchase_rate: PurchaseRate = PurchaseRate()
    basket: Normal = Normal(mean=1.0, sd=0.3, min=0.1)  # units bought per occasion
    # repertoire markets: the chance that an occasion goes to another firm than the habitual one
    variety_seeking: Normal = Normal(mean=0.0, sd=0.0, min=0.0, max=1.0)
    price_sensitivity: Normal = Normal(mean=1.0, sd=0.3, min=0.0)  # utility lost per 100% price above reference
    quality_weight: NonNegative = 4.0  # utility per unit of perceived quality (0..1 scale)
    choice_noise: Positive = 0.3  # scale of the Gumbel taste shock in logit choice
    switching_cost: NonNegative = 0.6  # procedural switching cost, utility units
    satisfaction_threshold: Normal = Normal(mean=-0.04, sd=0.02)  # lower edge of the zone of tolerance
    loss_aversion: AtLeastOne = 2.0  # losses weigh this much more (Anderson & Sullivan 1993)
    satisfaction_memory: DurationField = "8 weeks"  # half-life of satisfaction smoothing
    expectation_half_life: DurationField = "26 weeks"  # expectations move halfway to experience in this time
    learning_half_life: DurationField = "8 weeks"  # perceived value moves halfway to experienced quality
    search_when_satisfied: ProbabilityField = "5% per month"  # inertia: rare search above the threshold
    search_when_dissatisfied: ProbabilityField = "10% per month"  # active search below the threshold
    natural_churn: ProbabilityField = "3% per year"  # life events that take a customer out of the market
    reentry: ProbabilityField = "50% per year"  # customers out of the market come back as prospects
    failure_severity: NonNegative = 0.1  # satisfaction lost to a service failure nobody repairs
    failure_belief: NonNegative = 1.0  # share of that loss that also lowers belief in the firm (1: all, 0: none)
    complaint_rate: Probability = 0.5  # share of service failures a satisfied customer complains about
    complaint_rate_dissatisfied: Probability = 0.8  # the same for a customer below its threshold
    unresolved_complaint_factor: AtLeastOne = 1.5  # a complaint handled badly hurts more
    recovery_paradox: NonNegative = 0.02  # satisfaction gained when a complaint is resolved well
    attribution_window: DurationField = "8 weeks"  # how long an event can explain a defection
    marketing_effect: Probability = 0.2  # share of the gap to true quality closed by one marketing exposure
    competitor_expectation_half_life: DurationField = "52 weeks"  # known needs rise toward the best offer
    latent_expectation_half_life: DurationField = "104 weeks"  # latent needs adapt to experience this slowly
    expectation_spread: NonNegative = 0.05  # sd of customers' initial expectations around the industry mean
    offer_attention: Probability = 0.5  # chance a rival's marketing makes a customer reconsider
    delight_level: Number = 0.02  # satisfaction of a completely satisfied customer
    attitude_gain: DurationField = "13 weeks"  # half-life of attitude growing while delighted
    attitude_loss: DurationField = "4 weeks"  # half-life of attitude falling while dissatisfied
    attitude_decay: DurationField = "52 weeks"  # half-life of attitude fading while merely satisfied
    relationship_premium: NonNegative = 1.0  # utility of the current firm at full attitudinal loyalty
    relational_cost: RateField = "0.1 per year"  # switching cost added by each year of tenure, utility units
    relational_cost_cap: NonNegative = 0.3  # most the tenure can add
    manager_bond: NonNegative = 0.4  # switching cost added by a relationship manager
    manager_follow: Probability = 0.3  # share of the way a departing manager pulls belief in the new firm up
    club_bond: NonNegative = 0.3  # switching cost of belonging to the current firm's club or community
    # loyalty programmes (used only where a firm runs one)
    goal_gradient: NonNegative = 0.25  # contractual: extra usage, share of the usual rate, at a reward's threshold
    points_pressure: NonNegative = 0.15  # utility of a firm whose next reward is one purchase away (x progress^2)
    membership_dilution: NonNegative = 0.5  # each programme's pull is divided by 1 + this x (memberships - 1)
    enrolment_effort: Normal = Normal(mean=3.0, sd=3.0, min=0.0)  # hassle of joining a programme, money
    programme_attention: Probability = 0.5  # share of an open programme's value a non-member counts when choosing
    attainable_rewards: AttainableRewards = AttainableRewards()  # pull only toward reachable rewards, with headroom
    attention: Attention = Attention()  # limited attention to marketing (off by default)
    reference_price: ReferencePrice = ReferencePrice()  # perceived value against a reference price (off by default)
    market_expectations: MarketExpectations = MarketExpectations()  # two-way adaptation to the market (off)
    reliability_choice: ReliabilityChoice = ReliabilityChoice()  # beliefs about reliability weighed in choice (off)
    lifetimes: Lifetimes = Lifetimes()  # heterogeneous exit propensities instead of natural churn (off)
    arrivals: Arrivals = Arrivals()  # customers who arrive over time instead of all at the start (off)

    @field_validator("variety_seeking")
    @classmethod
    def _a_probability(cls, v: Normal) -> Normal:
        if v.min is None or v.max is None or v.min < 0.0 or v.max > 1.0:
            raise ValueError(f"variety seeking is a chance per occasion: give min and max within [0, 1] (got min "
                             f"{v.min}, max {v.max})")
        return v


class Network(_Spec):
    """A Watts-Strogatz small world carrying word of mouth (advocates recommend, defectors warn)."""

    kind: Literal["small_world", "none"] = "small_world"
    degree: Annotated[int, Strict(), Field(ge=2, le=200)] = 8
    rewire: Probability = 0.1
    talk: ProbabilityField = "50% per month"  # chance a customer talks about its firm in a period
    influence: Probability = 0.05  # share of the way to 0 or 1 a fully one-sided neighbourhood moves a belief
    advocate_level: Number = 0.02  # satisfaction above which a customer recommends its firm

    @field_validator("degree")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"degree must be even (each node links to degree/2 neighbours on each side), got {v}")
        return v


class Survey(_Spec):
    """A sampled, noisy survey: a 1-5 satisfaction item and a 0-10 recommendation item (NPS)."""

    every: PositiveDurationField = "4 weeks"
    sample: Probability = 0.05  # share of active customers asked each survey period
    noise: NonNegative = 0.015  # standard deviation of the answer noise, satisfaction units
    # the satisfaction at which the answer becomes 2, 3, 4 and 5
    cutpoints: tuple[Number, Number, Number, Number] = (-0.075, -0.055, -0.03, 0.02)
    nps_scale: Positive = 80.0  # 0-10 item: 7 + nps_scale * satisfaction, rounded and clipped

    @field_validator("cutpoints")
    @classmethod
    def _increasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"cutpoints must be strictly increasing, got {list(v)}")
        return v


VALUE_TIERS = ("low", "medium", "high")


class Reward(_Spec):
    """One reward in a points programme's catalogue: what it costs in points, what it is worth to the customer,
    and what it costs the firm to provide."""

    points: Number  # the redemption threshold; a reward must cost some points
    value: Positive  # worth to the customer, money
    cost: NonNegative | None = None  # what the firm pays for it; unset: its value (cash-like)

    @field_validator("points")
    @classmethod
    def _threshold(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"a reward's points are its redemption threshold and must be above 0 (got {v:g}): a "
                             "zero threshold would hand out rewards for nothing")
        return v

    def firm_cost(self) -> float:
        return self.value if self.cost is None else self.cost


class Bonus(_Spec):
    """A bonus event: double points (or any multiplier) on a schedule, a member day (a multiplier and a discount
    on a recurring day), or birthday points (once a year, on each member's own birthday)."""

    kind: Literal["double_points", "member_day", "birthday"]
    every: PositiveDurationField = "4 weeks"  # double points, member day: how often the event comes round
    start: DurationField = "0 weeks"  # first event after this
    duration: DurationField = "1 week"  # how long each event lasts
    multiplier: AtLeastOne = 2.0  # points earned per point during the event
    discount: ShareOff = 0.0  # member day: share off the price for members
    points: NonNegative = 0.0  # birthday: points given

    @model_validator(mode="after")
    def _applies(self) -> Bonus:
        if self.discount > 0 and self.kind != "member_day":
            raise ValueError(f"discount: only a member_day gives a discount (this is a {self.kind})")
        if self.points > 0 and self.kind != "birthday":
            raise ValueError(f"points: only a birthday gives points (a {self.kind} multiplies what is earned)")
        if self.kind == "birthday" and self.points <= 0:
            raise ValueError("points: a birthday bonus gives points; set points above 0")
        return self


class TierLevel(_Spec):
    """A status tier: reached by spend or by purchase occasions (visits) over the qualification window."""

    name: Annotated[str, Field(min_length=1)]
    spend: NonNegative | None = None  # money spent in the window that qualifies
    visits: Annotated[int, Strict(), Field(ge=1)] | None = None  # purchase occasions in the window that qualify
    discount: ShareOff = 0.0  # share off the price at this tier
    priority: Probability = 0.0  # priority service: share of service failures removed
    bonus_earn: NonNegative = 0.0  # points programmes: extra points per point earned
    status_value: NonNegative = 0.0  # utility of the status itself (recognition), lost by leaving

    @model_validator(mode="after")
    def _qualification(self) -> TierLevel:
        if self.spend is None and self.visits is None:
            raise ValueError(f"tier '{self.name}' has no qualification rule: give spend (money in the window) "
                             "and/or visits (purchase occasions in the window)")
        return self


class Tiers(_Spec):
    """Status tiers over a rolling window: promotion as soon as a tier's rule is met, demotion at reviews."""

    window: DurationField = "52 weeks"  # qualification counts spend and visits over this rolling window
    review: DurationField = "13 weeks"  # how often status is reviewed for demotion
    demotion: Literal["one_level", "to_qualified", "never"] = "one_level"
    levels: Annotated[list[TierLevel], Field(min_length=1)]  # lowest first

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        for name in ("window", "review"):
            if getattr(self, name).value <= 0:
                raise ValueError(f"{name}: '{getattr(self, name)}' must be longer than 0 (status is judged over it)")
        names = [t.name for t in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        for rule in ("spend", "visits"):
            values = [getattr(t, rule) for t in self.levels if getattr(t, rule) is not None]
            if any(b <= a for a, b in itertools.pairwise(values)):
                raise ValueError(f"levels: each tier's {rule} must be higher than the tier below's (lowest tier "
                                 f"first), got {values}")
        return self


class Enrolment(_Spec):
    """How customers join: a customer of the firm who notices the programme joins when the yearly benefit it
    expects exceeds its own effort of joining plus the fee (so heavier buyers join first)."""

    awareness: ProbabilityField = "25% per month"  # chance a buying customer considers joining in a period
    fee: RateField = "0 per year"  # membership fee, money per period
    invitation: list[Literal["low", "medium", "high"]] | None = None  # invitation only: these value tiers


class _ProgrammeBase(_Spec):
    name: Annotated[str, Field(min_length=1)]
    start: DurationField = "0 weeks"  # launch
    enrolment: Enrolment = Enrolment()
    operating_cost: RateField = "0 per year"  # per member, money per period
    launch_cost: NonNegative = 0.0  # once, at launch
    forgiveness: Probability = 0.2  # share of a service failure's damage members forgive (Bolton et al. 2000)


class PointsProgramme(_ProgrammeBase):
    """Points per money spent, redeemed for rewards from a catalogue; points may expire."""

    kind: Literal["points"]
    earn_rate: Positive = 1.0  # points per unit of money spent
    rewards: Annotated[list[Reward], Field(min_length=1)] = [Reward(points=1500.0, value=15.0)]  # 1% back
    expiry: DurationField = "52 weeks"  # "0 weeks": points never expire
    expire_on: Literal["earning", "inactivity"] = "earning"  # a fixed life from earning, or after no activity
    reminder: DurationField | None = None  # members are told this long before points expire
    redemption: ProbabilityField = "25% per month"  # chance a member with enough points redeems in a period
    bonuses: list[Bonus] = []
    tiers: Tiers | None = None
    expected_breakage: Probability = 0.2  # the firm's estimate, for the liability net of breakage


class TierProgramme(_ProgrammeBase):
    """Status without points: tier benefits (discount, priority service, recognition)."""

    kind: Literal["tiers"]
    tiers: Tiers


class CashbackCondition(_Spec):
    """A frequency condition: purchases on this many days of the period (in a row if ``consecutive``)."""

    days: Annotated[int, Strict(), Field(ge=1)]
    consecutive: bool = False
    rate: Probability  # share of the period's spend returned when the condition is met


class CashbackProgramme(_ProgrammeBase):
    """Money back on spend, paid at the end of each period; frequency-conditioned schedules pay a higher rate
    to customers who buy on enough days (they need day steps)."""

    kind: Literal["cashback"]
    rate: Probability = 0.01  # share of spend returned (when no condition in the schedule is met)
    schedule: list[CashbackCondition] = []
    period: PositiveDurationField = "1 month"


class ClubProgramme(_ProgrammeBase):
    """A club or brand community: a relational bond, more word of mouth, a members' discount."""

    kind: Literal["club"]
    community_value: NonNegative = 60.0  # yearly worth of belonging to a fully attached customer, money
    talk_boost: AtLeastOne = 2.0  # members talk about the firm this many times as often
    discount: ShareOff = 0.0  # members' share off the price


class CoalitionProgramme(PointsProgramme):
    """A coalition (the Nectar model): partners, usually in different categories, share one currency run by an
    operator. Members earn at any partner and redeem at any; each partner pays the operator ``fee`` per point it
    issues, gives the reward when a member redeems with it, and is reimbursed ``reimbursement`` per point redeemed.
    The firm that lists it is one partner; ``partners`` names the others (market firms or category outlets)."""

    kind: Literal["coalition"]
    partners: list[str]  # the other partners: firms of the market or outlets of market.categories
    fee: NonNegative = 0.01  # paid by a partner to the operator per point it issues, money
    reimbursement: NonNegative = 0.01  # paid by the operator to a partner per point redeemed with it, money

    @field_validator("partners")
    @classmethod
    def _two_partners(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a coalition needs at least two partners: the firm that runs it lists at least one "
                             "other (a market firm or a category outlet); with one partner, use kind = \"points\"")
        if len(set(v)) != len(v):
            raise ValueError(f"partner names must be unique, got {v}")
        return v


class CobrandProgramme(PointsProgramme):
    """A co-branded card: issued by the firm that lists it, carrying a partner's benefits too. Members earn the
    issuer's points on what they spend with the issuer and with the partner (``partner_earn_rate``), and get the
    partner's discount; the partner pays the issuer ``fee`` per point issued on its sales."""

    kind: Literal["cobrand"]
    partner: Annotated[str, Field(min_length=1)]  # a market firm or a category outlet
    partner_earn_rate: NonNegative = 1.0  # points per unit of money spent with the partner
    partner_discount: ShareOff = 0.0  # cardholders' share off the partner's price
    fee: NonNegative = 0.0  # paid by the partner to the issuer per point issued on its sales, money


PROGRAMME_TYPES = (PointsProgramme, TierProgramme, CashbackProgramme, ClubProgramme, CoalitionProgramme,
                   CobrandProgramme)
Programme, PROGRAMME_KINDS = tagged_union(PROGRAMME_TYPES)


class Offer(_Spec):
    """What a contacted customer is offered: a discount, a service upgrade, a manager's call, for a while."""

    discount: ShareOff = 0.0  # share off the price
    upgrade: Probability = 0.0  # share of the customer's service failures removed (a service upgrade)
    manager: bool = False  # retention only: a dedicated manager calls and stays the customer's manager
    duration: DurationField = "13 weeks"  # how long the offer lasts once made
    cost: NonNegative = 0.0  # win-back: per customer who comes back; retention: per customer contacted
    # (besides the discount, which costs through revenue)


DEFECTION_CAUSES = ("needs_not_met", "manager_left", "competitor_offer", "price_rise", "service_failure",
                    "integrity_breach", "market_fluctuation", "natural_churn")


class WinBackTarget(_Spec):
    """Which lapsed customers a win-back campaign contacts: those who left the firm (its last firm)."""

    lapsed_at_least: DurationField = "0 weeks"  # time since they left
    lapsed_at_most: DurationField | None = None
    causes: list[str] | None = None  # recorded defection causes to target; unset: all
    min_value: NonNegative = 0.0  # least margin the first lifetime earned
    value_tiers: list[Literal["low", "medium", "high"]] | None = None  # only these expected-spend tiers; unset: all
    segments: list[str] | None = None  # only customers of these segments (market.customers.segments); unset: all
    share: Probability = 1.0  # share of the eligible contacted (drawn at random)
    max_contacts: Annotated[int, Strict(), Field(ge=1)] | None = None  # per round, the most valuable first

    @model_validator(mode="after")
    def _lapse_window(self) -> WinBackTarget:
        if self.lapsed_at_most is not None and self.lapsed_at_most.days() < self.lapsed_at_least.days():
            raise ValueError(f"lapsed_at_most ({self.lapsed_at_most}) must not be shorter than lapsed_at_least "
                             f"({self.lapsed_at_least})")
        return self

    @field_validator("causes")
    @classmethod
    def _known_causes(cls, v: list[str] | None) -> list[str] | None:
        bad = [c for c in v or [] if c not in DEFECTION_CAUSES]
        if bad:
            raise ValueError(f"unknown defection cause(s) {bad}; known: {list(DEFECTION_CAUSES)}")
        return v


class EarlyWarning(_Spec):
    """A churn-risk score built only from what a firm observes of its own customers: points per warning sign."""

    window: DurationField = "8 weeks"  # recent purchases and complaints are judged over this
    horizon: DurationField = "13 weeks"  # a flag counts as right if the customer leaves within this
    usage_drop: NonNegative = 1.0  # x the fall of recent purchases below the customer's own usual rate (0..1)
    low_score: NonNegative = 1.0  # the last survey answer in this relationship was 1-3 (only the sampled have one)
    complaint: NonNegative = 1.0  # complained within the window
    unresolved: NonNegative = 1.0  # ... and the complaint was not resolved
    rival_cheaper: NonNegative = 1.0  # x the share by which the cheapest rival undercuts the firm, per 10%
    new_customer: NonNegative = 0.5  # with the firm for less than a year


class RetentionTarget(_Spec):
    """Which current customers a retention campaign contacts: those its early warning scores riskiest."""

    top_share: Annotated[float, Strict(), Field(gt=0.0, le=1.0)] | None = None  # the top-scoring share of its customers
    threshold: NonNegative | None = None  # or every customer scoring at least this
    value_tiers: list[Literal["low", "medium", "high"]] | None = None  # only these expected-spend tiers; unset: all
    segments: list[str] | None = None  # only customers of these segments (market.customers.segments); unset: all
    holdout: Probability = 0.0  # share of those selected left uncontacted, at random (a control group)
    max_contacts: Annotated[int, Strict(), Field(ge=1)] | None = None  # per round, the top-scoring first

    @model_validator(mode="after")
    def _one_rule(self) -> RetentionTarget:
        if (self.top_share is None) == (self.threshold is None):
            raise ValueError("give exactly one of top_share (the top share of the firm's customers by score: risk, "
                             "or value for a personalised offer) or threshold (a least score)")
        return self


class _CampaignBase(_Spec):
    every: PositiveDurationField = "4 weeks"
    start: DurationField = "0 weeks"
    stop: DurationField | None = None
    offer: Offer = Offer()
    contact_cost: NonNegative = 0.0  # per customer contacted
    recontact_after: DurationField = "52 weeks"  # contacted again (by any of the firm's campaigns) only after this
    budget: NonNegative | None = None  # most committed per round (contacts x contact cost, + offer cost in retention)


class WinBackCampaign(_CampaignBase):
    """A win-back campaign: every ``every``, contact lapsed customers chosen by ``target`` with ``offer``."""

    kind: Literal["win_back"]
    target: WinBackTarget = WinBackTarget()

    @field_validator("offer")
    @classmethod
    def _no_manager(cls, v: Offer) -> Offer:
        if v.manager:
            raise ValueError("manager: a manager's call is a retention offer; a win-back offer is a discount "
                             "and/or an upgrade")
        return v


class RetentionCampaign(_CampaignBase):
    """A retention campaign: every ``every``, score the firm's customers with ``warning`` and give those
    ``target`` selects a save offer."""

    kind: Literal["retention"]
    warning: EarlyWarning = EarlyWarning()
    target: RetentionTarget


class PersonalTarget(RetentionTarget):
    """Which current customers a personalised offer reaches: the most valuable (recent purchases at the firm, as
    its records show) or the riskiest (its early-warning score), within value tiers and segments; ``top_share``,
    ``threshold`` and ``max_contacts`` apply to the ranking by ``rank_by``."""

    rank_by: Literal["value", "risk"] = "value"


class PersonalisedCampaign(_CampaignBase):
    """Personalised offers from the firm's CRM segmentation: every ``every``, rank the firm's customers by the value
    its records show (occasions in the ``warning.window``) or by churn risk, and give those ``target`` selects the
    offer (a targeted discount, a service upgrade, a manager)."""

    kind: Literal["personalised"]
    warning: EarlyWarning = EarlyWarning()  # the window over which value is counted; the risk score's weights
    target: PersonalTarget


CAMPAIGN_TYPES = (WinBackCampaign, RetentionCampaign, PersonalisedCampaign)
Campaign, CAMPAIGN_KINDS = tagged_union(CAMPAIGN_TYPES)


class Investment(_Spec):
    """Spend a budget on raising one attribute, at the attribute's documented cost per unit."""

    attribute: str
    budget: RateField  # money per period
    start: DurationField = "0 weeks"
    stop: DurationField | None = None  # None: until the horizon
    max_level: Level = 1.0


class Levers(_Spec):
    """What a firm controls."""

    price: Positive  # per unit bought
    investments: list[Investment] = []
    programmes: list[Programme] = []
    campaigns: list[Campaign] = []


KANO_CLASSES = ("must_be", "one_dimensional", "attractive")


class Reaction(_Spec):
    """A competitor's simple reactions: match a rival's lower price or better attribute after a delay."""

    delay: DurationField = "8 weeks"
    match_price: bool = True
    match_attributes: bool = False
    attributes: list[str] | None = None  # which attributes it watches; None: all
    target: Literal["best", "mean"] = "best"  # match the best rival's level, or follow the rivals' mean level
    tolerance: NonNegative = 0.02  # differences smaller than this share (price) or level are ignored
    min_margin: NonNegative = 0.0  # never price below unit cost x (1 + min_margin)
    copy_programmes: bool = False  # launch a copy of each rival's own loyalty programmes after ``copy_after``
    copy_after: DurationField = "26 weeks"  # how long after a rival's launch its copy launches
    # imitation by Kano class: how long after a rival's better level the firm matches it, per class ("never": not
    # copied); replaces ``attributes`` and ``delay`` for attribute matching (``delay`` still times price matching)
    lags: dict[Literal["must_be", "one_dimensional", "attractive"], DurationField | Literal["never"]] | None = None

    @model_validator(mode="after")
    def _lags_complete(self) -> Reaction:
        if self.lags is None:
            return self
        missing = [c for c in KANO_CLASSES if c not in self.lags]
        if missing:
            raise ValueError(f"reaction.lags must give a lag (a duration or \"never\") for every Kano class: "
                             f"missing {', '.join(missing)}")
        if not self.match_attributes:
            raise ValueError("reaction.lags times attribute matching: set match_attributes = true with it")
        if self.attributes is not None:
            raise ValueError("reaction.lags chooses what is copied by Kano class: give either attributes or lags")
        return self


class FirmSpec(Levers):
    """A firm: its structure (costs, attribute levels, service) and its starting levers."""

    name: Annotated[str, Field(min_length=1)]
    unit_cost: NonNegative = 0.0  # cost of goods per unit bought
    attributes: dict[str, Level]  # level of each market attribute, 0..1
    reliability: Probability = 0.98  # probability that a customer's purchases in a step go without a failure
    recovery: Probability = 0.5  # complaint-recovery quality: the chance a complaint is resolved well
    recovery_cost: NonNegative = 0.0  # cost per complaint handled
    marketing_reach: ProbabilityField = "10% per month"  # chance a customer meets the firm's marketing
    marketing_spend: RateField = "0 per week"  # money per period
    fixed_cost: RateField = "0 per week"  # money per period
    acquisition_cost: NonNegative = 0.0  # per customer won
    relationship_managers: Annotated[int, Strict(), Field(ge=0, le=100_000)] = 0  # serving its high-value customers
    reaction: Reaction | None = None  # None: never reacts to rivals


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


class Entry(_Spec):
    kind: Literal["entry"]
    at: DurationField
    firm: str  # a market firm that is absent until then


class ManagerLeaves(_Spec):
    kind: Literal["manager_leaves"]
    at: DurationField
    firm: str
    manager: Annotated[int, Strict(), Field(ge=0)] = 0  # which of the firm's relationship managers
    to: str | None = None  # the firm the manager joins, if any


class ServiceCrisis(_Spec):
    kind: Literal["service_crisis"]
    at: DurationField
    firm: str
    duration: DurationField
    reliability: Probability  # during the crisis


class IntegrityBreach(_Spec):
    kind: Literal["integrity_breach"]
    at: DurationField
    firm: str
    severity: Probability  # share of everyone's belief in the firm, and of its customers' attitude, lost


class IncomeShock(_Spec):
    kind: Literal["income_shock"]
    at: DurationField
    duration: DurationField
    price_sensitivity: Positive  # factor on every customer's price sensitivity while it lasts


class PriceWar(_Spec):
    """A firm cuts its price by ``cut`` for ``duration`` (a promotion, or the first shot of a price war): rivals that
    match prices follow it down by their own reaction rules, and when the cut ends its price returns to what it was
    before (a price rise its customers notice)."""

    kind: Literal["price_war"]
    at: DurationField
    firm: str
    cut: Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]  # share off the price
    duration: DurationField


EVENT_TYPES = (PriceChange, AttributeChange, SwitchingCostChange, Entry, ManagerLeaves, ServiceCrisis,
               IntegrityBreach, IncomeShock, PriceWar)
Event, EVENT_KINDS = tagged_union(EVENT_TYPES)


class Outlet(_Spec):
    """A firm of another category: an outlet with a price and a quality, no other levers."""

    name: Annotated[str, Field(min_length=1)]
    price: Positive  # per unit bought
    unit_cost: NonNegative = 0.0
    quality: Level = 0.5  # how good its offer is, 0..1, the same to every customer


class CategorySpec(_Spec):
    """Another of the customers' needs (fuel, a department store, a card): a repertoire market in which each
    customer, on each occasion, picks an outlet by logit over quality, price, programme value and habit."""

    name: Annotated[str, Field(min_length=1)]
    purchase_rate: PurchaseRate = PurchaseRate()  # occasions in this category (gamma-mixed Poisson)
    basket: Normal = Normal(mean=1.0, sd=0.3, min=0.1)  # units per occasion
    habit: NonNegative = 1.0  # utility of the outlet the customer used last (inertia)
    quality_weight: NonNegative = 4.0
    choice_noise: Positive = 0.3
    outlets: Annotated[list[Outlet], Field(min_length=2)]


class Tastes(_Spec):
    """Repertoire markets: each customer's own, lasting propensity toward each firm (a personal repertoire).

    Propensities are drawn once per customer from a symmetric Dirichlet whose polarisation φ = 1 / (1 + S) is the
    Dirichlet model's (Goodhardt, Ehrenberg & Chatfield 1984): near 0 every customer likes every firm alike, near 1
    each customer is drawn to one or two firms. The utility of firm j is ``weight`` x choice_noise x log(F π_ij).
    """

    enabled: Annotated[bool, Strict()] = False  # the ablation switch: off, nobody has tastes (the model without it)
    polarisation: Annotated[float, Strict(), Field(gt=0.0, lt=1.0)] = 0.4  # φ = 1 / (1 + S) of the propensities
    weight: NonNegative = 1.0  # x choice_noise x log(F π): at 1 a customer picks among equal firms by π alone
    drift_half_life: PositiveDurationField | None = None  # half the customers renew their tastes in this time


class Consideration(_Spec):
    """Repertoire markets: a customer chooses only among the firms it knows (its consideration set).

    Awareness of each firm, 0..1, grows with the firm's marketing and with word of mouth about it and fades with a
    half-life; a firm is considered while its awareness is at least ``threshold``. The current firm, and a firm just
    bought from, are always known.
    """

    enabled: Annotated[bool, Strict()] = False  # the ablation switch: off, every customer considers every firm
    initial_awareness: Probability = 0.5  # chance a customer knows each other firm at the start
    half_life: PositiveDurationField = "26 weeks"  # awareness of a firm halves in this time without news of it
    marketing_gain: Probability = 0.5  # share of the way to full awareness one marketing exposure takes it
    word_of_mouth_gain: Probability = 0.5  # the same for hearing every neighbour speak of the firm (x the share)
    threshold: Annotated[float, Strict(), Field(gt=0.0, le=1.0)] = 0.5  # awareness at which a firm is considered


class OutsideOption(_Spec):
    """Buying elsewhere: a searching customer may choose none of the modelled firms (a store not in the model, not
    buying at all), whose utility is ``utility`` plus its own Gumbel shock. It allows a market with one firm. Off
    (``enabled = false``): a searching customer chooses among the firms, and a market needs two of them."""

    enabled: Annotated[bool, Strict()] = False
    utility: Number = 0.0  # the outside option's utility, on the scale of the firms' (quality, price, hold)
    # the price customers expect to pay elsewhere, money per unit: the market's reference price in choice (none: the
    # mean starting price of the firms, which with one firm makes its own price the reference whatever it is)
    reference_price: Positive | None = None


class Market(_Spec):
    """What a strategy team cannot control: customers, competitors (and the focal firm's structure), events."""

    type: Literal["contractual", "repertoire"] = "contractual"
    lapse: DurationField = "8 weeks"  # repertoire: a customer is lost to a firm after this long without a purchase
    customers: Customers = Customers()
    attributes: Annotated[list[Attribute], Field(min_length=1)]
    firms: Annotated[list[FirmSpec], Field(min_length=1)]  # two or more; one with the outside option
    network: Network = Network()
    survey: Survey = Survey()
    events: list[Event] = []
    categories: list[CategorySpec] = []  # the customers' other needs, where coalition partners sell
    tastes: Tastes = Tastes()  # repertoire: persistent, heterogeneous brand propensities (off by default)
    consideration: Consideration = Consideration()  # repertoire: choice among known firms only (off by default)
    outside_option: OutsideOption = OutsideOption()  # searching customers may buy elsewhere (off by default)

    @model_validator(mode="after")
    def _repertoire_only(self) -> Market:
        for name in ("tastes", "consideration"):
            if getattr(self, name).enabled and self.type != "repertoire":
                raise ValueError(f"{name}.enabled: personal repertoires and consideration sets belong to a repertoire "
                                 f"market (this market's type is \"{self.type}\"); set market.type = "
                                 "\"repertoire\" or switch the mechanism off")
        return self


class Policy(_Spec):
    """The levers under test for one focal firm; anything left out keeps the market's value."""

    firm: str
    price: Positive | None = None
    investments: list[Investment] | None = None
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


class Classification(_Spec):
    """How customers are classified for reporting (measurement, not behaviour)."""

    repeat_tenure: DurationField = "26 weeks"  # contractual: behaviourally loyal after this tenure
    repeat_share: Probability = 0.5  # repertoire: behaviourally loyal at this share of wallet
    attitude_high: Probability = 0.5  # attitudinally loyal at this attitude (0..1)


class Outputs(_Spec):
    panel_every: PositiveDurationField | None = None  # per-customer snapshots this often; None: no panel
    # per-customer event logs to keep, as tables: "purchases", "service", "programme_events" (none by default)
    event_logs: list[Literal["purchases", "service", "programme_events"]] = []

    @field_validator("event_logs")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        if len(set(v)) < len(v):
            raise ValueError(f"each event log once; got {v}")
        return v


CurrencyLabel = Annotated[str, Field(min_length=1, max_length=12, pattern=r"^[^\s\x00-\x1f()][^\x00-\x1f()]*$")]


class Economics(_Spec):
    """Discounting, the currency money is labelled with, and how money that depends on the market's size scales."""

    discount_rate: RateField = "8% per year"  # for NPV: scaled to a yearly rate, compounded yearly (pro rata)
    currency: CurrencyLabel | None = None  # the label of money in reports, e.g. "EUR" or "$"; none: "money"
    # the number of customers the market's size-dependent money is stated for (fixed costs, marketing spend,
    # investment budgets and attribute costs, programme launch costs, campaign budgets): each scales by
    # market.customers.population / reference_population (see loyaltysim.economics); none: not scaled
    reference_population: Annotated[int, Strict(), Field(ge=1, le=20_000_000)] | None = None


class LoyaltyScenario(_Spec):
    """One simulation setting: a market, a policy for its focal firm, time and economics."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    time: Time = Time()
    economics: Economics = Economics()
    classification: Classification = Classification()
    outputs: Outputs = Outputs()
    market: Market
    policy: Policy

    @model_validator(mode="after")
    def _cross_references(self) -> LoyaltyScenario:
        problems = cross_reference_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _arrivals_within_the_horizon(self) -> LoyaltyScenario:
        arrivals = self.market.customers.arrivals
        if arrivals.enabled:
            shares, period = arrivals.schedule()
            last = len(shares) * period.steps(self.time.step)
            if last > self.steps():
                raise ValueError(f"market.customers.arrivals: the last arrivals come at step {last}, after the "
                                 f"horizon of {self.steps()} steps (time.horizon = {self.time.horizon}); shorten "
                                 "the arrival window or lengthen the horizon")
        return self

    # --- derived views -------------------------------------------------------------------------------
    def effective_firms(self) -> list[FirmSpec]:
        """The market's firms with the policy's levers applied to the focal firm."""
        out = []
        for f in self.market.firms:
            if f.name == self.policy.firm:
                overrides = {k: v for k, v in self.policy.model_dump(exclude={"firm"}).items() if v is not None}
                f = FirmSpec.model_validate({**f.model_dump(), **overrides})
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

    def with_changes(self, changes: Mapping[str, Any], source: str = "with_changes") -> LoyaltyScenario:
        """This scenario with the values at some paths replaced, validated like a file.

        ``changes`` maps paths to values as an experiment's factors set them, e.g.
        ``{"market.customers.switching_cost": 2.0, "policy.investments[0].budget": "40000 per year"}``. Raises
        :class:`ScenarioError` listing every problem: a path that does not exist, a value out of range.
        """
        data = self.to_dict()
        problems = []
        for path, value in changes.items():
            try:
                set_path(data, path, value)
            except ValueError as err:
                problems.append(f"{path}: {err}")
        if problems:
            raise ScenarioError(source, problems)
        return scenario_from_dict(data, source=source)

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


def as_list(x: Any) -> list:
    """``x`` if it is a list, else an empty one (for checks over raw, possibly malformed data)."""
    return x if isinstance(x, list) else []


def as_dict(x: Any) -> dict:
    """``x`` if it is a dict, else an empty one (for checks over raw, possibly malformed data)."""
    return x if isinstance(x, dict) else {}


def _names(items: list) -> list[str]:
    return [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)]


def cross_reference_problems(data: Any) -> list[str]:
    """Problems between sections (unknown names, inconsistent lists), one ``path: message`` each.

    Written over the raw data, so they are found and listed together with field errors elsewhere in the file.
    """
    problems: list[str] = []
    market = as_dict(as_dict(data).get("market"))
    attributes = _names(as_list(market.get("attributes")))
    firm_items = as_list(market.get("firms"))
    firms = _names(firm_items)
    if len(set(attributes)) != len(attributes):
        problems.append(f"market.attributes: attribute names must be unique, got {attributes}")
    if len(set(firms)) != len(firms):
        problems.append(f"market.firms: firm names must be unique, got {firms}")
    if len(firm_items) == 1 and as_dict(market.get("outside_option")).get("enabled") is not True:
        problems.append("market.firms: a market needs at least two firms (got 1); for a market with one firm, switch "
                        "on the outside option (market.outside_option.enabled = true), so that customers can buy "
                        "elsewhere")
    managers = {}  # by firm name; a name of the wrong type is reported by the field checks, not here
    for i, f in enumerate(firm_items):
        f = as_dict(f)
        if isinstance(f.get("name"), str):
            managers[f["name"]] = f.get("relationship_managers", 0)
        levels = f.get("attributes")
        if isinstance(levels, dict):
            missing = [a for a in attributes if a not in levels]
            extra = [a for a in levels if a not in attributes]
            if missing:
                problems.append(f"market.firms[{i}].attributes: no level for attribute(s) {missing}")
            if extra:
                problems.append(f"market.firms[{i}].attributes: unknown attribute(s) {extra}; known: {attributes}")
        watched = as_dict(f.get("reaction")).get("attributes")
        for name in as_list(watched):
            if isinstance(name, str) and name not in attributes:
                problems.append(f"market.firms[{i}].reaction.attributes: unknown attribute '{name}'; "
                                f"known: {attributes}")
        for k, inv in enumerate(as_list(f.get("investments"))):
            name = as_dict(inv).get("attribute")
            if isinstance(name, str) and name not in attributes:
                problems.append(f"market.firms[{i}].investments[{k}].attribute: unknown attribute '{name}'; "
                                f"known: {attributes}")
    entering = []
    for i, e in enumerate(as_list(market.get("events"))):
        e = as_dict(e)
        for key in ("firm", "to"):
            ref = e.get(key)
            if isinstance(ref, str) and ref not in firms:
                problems.append(f"market.events[{i}].{key}: unknown firm '{ref}'; known: {firms}")
        if e.get("kind") == "attribute_change" and isinstance(e.get("attribute"), str) \
                and e["attribute"] not in attributes:
            problems.append(f"market.events[{i}].attribute: unknown attribute '{e['attribute']}'; "
                            f"known: {attributes}")
        if e.get("kind") == "manager_leaves" and isinstance(e.get("firm"), str) and e["firm"] in managers:
            count = managers[e["firm"]]
            manager = e.get("manager", 0)
            if isinstance(count, int) and isinstance(manager, int) and manager >= count:
                problems.append(f"market.events[{i}].manager: firm '{e['firm']}' has {count} relationship "
                                f"manager(s), so the manager index must be below {count} (got {manager})")
        if e.get("kind") == "entry" and isinstance(e.get("firm"), str):
            entering.append(e["firm"])
    if len(set(entering)) != len(entering):
        problems.append(f"market.events: a firm can enter only once; entry events name {entering}")
    if firms and set(firms) <= set(entering):
        problems.append("market.events: at least one firm must be in the market from the start")
    segments = as_list(as_dict(market.get("customers")).get("segments"))
    shares = [seg.get("share") for seg in map(as_dict, segments)]
    if segments and all(isinstance(x, int | float) for x in shares) and abs(sum(shares) - 1.0) > 1e-9:
        problems.append(f"market.customers.segments: shares must sum to 1, got {sum(shares):g}")
    seg_names = _names(segments)
    if len(set(seg_names)) != len(seg_names):
        problems.append(f"market.customers.segments: segment names must be unique, got {seg_names}")
    policy = as_dict(as_dict(data).get("policy"))
    known_segments = seg_names or ["all"]
    owners = [(f"market.firms[{i}]", as_dict(f)) for i, f in enumerate(firm_items)] + [("policy", policy)]
    for where, owner in owners:
        for k, campaign in enumerate(as_list(owner.get("campaigns"))):
            named = as_dict(as_dict(campaign).get("target")).get("segments")
            bad = [x for x in as_list(named) if isinstance(x, str) and x not in known_segments]
            if bad:
                problems.append(f"{where}.campaigns[{k}].target.segments: unknown segment(s) {bad}; "
                                f"known: {known_segments}")
    problems += _programme_problems(data, owners)
    if isinstance(policy.get("firm"), str) and firms and policy["firm"] not in firms:
        problems.append(f"policy.firm: '{policy['firm']}' is not a market firm; known: {firms}")
    for k, inv in enumerate(as_list(policy.get("investments"))):
        name = as_dict(inv).get("attribute")
        if isinstance(name, str) and name not in attributes:
            problems.append(f"policy.investments[{k}].attribute: unknown attribute '{name}'; known: {attributes}")
    return problems


def _days(text: Any) -> float | None:
    """Days in a duration string, or None if it is not one (its own field check reports that)."""
    try:
        return parse_duration(text).days()
    except ValueError:
        return None


def _text(value: Any) -> str:
    """A duration as its canonical text (so the same problem reads the same from raw and validated data)."""
    try:
        return str(parse_duration(value))
    except ValueError:
        return str(value)


def _programme_problems(data: Any, owners: list[tuple[str, dict]]) -> list[str]:
    """Programme settings that only make sense against the step length, and programme names."""
    problems: list[str] = []
    market = as_dict(as_dict(data).get("market"))
    firms = _names(as_list(market.get("firms")))
    outlets = [name for cat in as_list(market.get("categories"))
               for name in _names(as_list(as_dict(cat).get("outlets")))]
    sellers = firms + outlets
    repeated_sellers = sorted({x for x in outlets if sellers.count(x) > 1})  # repeated firms are reported already
    if repeated_sellers:
        problems.append(f"market.categories: outlet names must differ from each other and from the market's firms, "
                        f"repeated: {repeated_sellers}")
    step = as_dict(as_dict(data).get("time")).get("step", "week")
    step_days = DAYS.get(step) if isinstance(step, str) else None
    names: list[str] = []
    policy_firm = as_dict(as_dict(data).get("policy")).get("firm")
    for where, owner in owners:
        overridden = where != "policy" and owner.get("name") == policy_firm and \
            as_dict(as_dict(data).get("policy")).get("programmes") is not None
        for k, prog in enumerate(as_list(owner.get("programmes"))):
            prog = as_dict(prog)
            at = f"{where}.programmes[{k}]"
            if isinstance(prog.get("name"), str) and not overridden:
                names.append(prog["name"])
            host = policy_firm if where == "policy" else owner.get("name")
            named = as_list(prog.get("partners")) if prog.get("kind") == "coalition" else (
                [prog.get("partner")] if prog.get("kind") == "cobrand" else [])
            key = "partners" if prog.get("kind") == "coalition" else "partner"
            for partner in named:
                if not isinstance(partner, str):
                    continue
                if partner == host:
                    problems.append(f"{at}.{key}: '{partner}' runs the programme; name the other partner(s)")
                elif sellers and partner not in sellers:
                    problems.append(f"{at}.{key}: unknown firm or outlet '{partner}'; known: {sellers}")
            if step_days is None:
                continue
            has_points = prog.get("kind") in ("points", "coalition", "cobrand")
            expiry_text = _text(prog.get("expiry", "52 weeks"))
            expiry = _days(prog.get("expiry", "52 weeks")) if has_points else None
            if expiry is not None and 0 < expiry < step_days:
                problems.append(f"{at}.expiry: '{expiry_text}' is shorter than one step (1 {step}): points "
                                f"would expire before they could be used; give at least 1 {step}, or \"0 weeks\" "
                                "for points that never expire")
            reminder = _days(prog.get("reminder")) if prog.get("reminder") is not None else None
            if reminder is not None and expiry == 0:
                problems.append(f"{at}.reminder: points never expire (expiry '{expiry_text}'), so there is nothing "
                                "to remind members of; remove the reminder or give an expiry")
            elif reminder is not None and expiry is not None and reminder >= expiry:
                problems.append(f"{at}.reminder: '{_text(prog.get('reminder'))}' is not shorter than the expiry "
                                f"'{expiry_text}'; a reminder comes before points expire")
            if prog.get("kind") == "cashback":
                period_text = _text(prog.get("period", "1 month"))
                period = _days(prog.get("period", "1 month"))
                if period is not None and period < step_days:
                    problems.append(f"{at}.period: '{period_text}' is shorter than one step (1 {step})")
                schedule = as_list(prog.get("schedule"))
                if schedule and step != "day":
                    problems.append(f"{at}.schedule: frequency conditions count days with a purchase, so they need "
                                    f"time.step = \"day\" (this scenario steps in {step}s)")
                elif period is not None:
                    for j, cond in enumerate(schedule):
                        days = as_dict(cond).get("days")
                        if isinstance(days, int) and days > round(period):
                            problems.append(f"{at}.schedule[{j}].days: {days} days cannot fit in a period of "
                                            f"'{period_text}' ({round(period)} days)")
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated:
        problems.append(f"programmes: programme names must be unique across the market, repeated: {repeated}")
    return problems


def _loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for k, p in enumerate(loc):
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p == "function-after" or (k > 1 and isinstance(loc[k - 1], int)
                                       and loc[k - 2] in ("events", "campaigns", "programmes")
                                       and p in (*EVENT_KINDS, *CAMPAIGN_KINDS, *PROGRAMME_KINDS)):
            continue  # a discriminated union's tag, right after the index in a list of events, campaigns, programmes
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        where = _loc(e["loc"])
        if e["type"] == "value_error" and not e["loc"]:  # cross references: one "path: message" per line
            problems.extend(msg.split("\n"))
            continue
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
        problems = format_validation_error(err)
        problems += [p for p in cross_reference_problems(data) if p not in problems]
        raise ScenarioError(source, problems) from None


MAX_FILE_BYTES = 5 * 2**20  # a scenario, experiment or manifest file is at most this large


def read_text_file(path: Path, kind: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a regular file of at most ``max_bytes`` (5 MiB unless told; ``kind`` names it in messages: "a
    scenario file (.toml)"); ValueError saying in one line why it cannot be read. A pipe, a device or a socket is
    never opened, so reading cannot hang or fill the memory."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except OSError as err:
        raise ValueError(f"cannot read file: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"is a directory, not {kind}")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"is not a regular file (a pipe, a device or a socket), not {kind}")
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise ValueError(f"is larger than {max_bytes // 2**20} MiB, too large for {kind}")
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read file: {err}") from None


def read_toml(path: Path, kind: str) -> dict[str, Any]:
    """A TOML file's contents (see :func:`read_text_file`); ValueError naming what is wrong, in one line."""
    text = read_text_file(path, kind)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"malformed TOML: {err}") from None
    except RecursionError:
        raise ValueError("malformed TOML: arrays or tables nested too deeply") from None


def load_scenario(path: str | Path) -> LoyaltyScenario:
    """Read and validate a scenario file; raise :class:`ScenarioError` listing every problem."""
    path = Path(path)
    try:
        data = read_toml(path, "a scenario file (.toml)")
    except ValueError as err:
        raise ScenarioError(str(path), [str(err)]) from None
    return scenario_from_dict(data, source=str(path))

# --------------------------------------------------------------------------------------------------
# Paths into a scenario: "market.customers.switching_cost", "policy.investments[0].attribute"
# --------------------------------------------------------------------------------------------------

PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+|\[\d+\])*")
PATH_PART = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+)\]")
PATH_HINT = "use dotted keys with [i] list indices, e.g. 'policy.investments[0].attribute'"


def parse_path(path: str) -> list[str | int]:
    """``'policy.investments[0].attribute'`` -> ``['policy', 'investments', 0, 'attribute']``."""
    if not PATH.fullmatch(path):
        raise ValueError(f"invalid path '{path}'; {PATH_HINT}")
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in PATH_PART.finditer(path)]


def format_path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


def set_path(data: dict, path: str, value: Any) -> None:
    """Replace the value at ``path`` (which must exist) in ``data`` by a deep copy of ``value``.

    Raises ValueError naming the part of the path that does not exist.
    """
    parts = parse_path(path)
    node: Any = data
    for depth, part in enumerate(parts):
        here = format_path(parts[:depth]) or "the scenario"
        last = depth == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                kind = "not set (null)" if node is None else f"a {type(node).__name__}, not a list"
                raise ValueError(f"cannot index '{here}' with [{part}]: it is {kind}")
            if part >= len(node):
                raise ValueError(f"'{here}' has {len(node)} item(s), so there is no [{part}]")
        else:
            if not isinstance(node, dict):
                if node is None:
                    raise ValueError(f"'{here}' is not set (null) in the base scenario; set '{here}' as a whole "
                                     "(a table) instead of a key inside it")
                raise ValueError(f"'{here}' is a {type(node).__name__}, not a table, so it has no key '{part}'")
            if part not in node:
                close = difflib.get_close_matches(part, list(node), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {sorted(node)}"
                raise ValueError(f"'{here}' has no key '{part}'; {hint}")
        if last:
            node[part] = copy.deepcopy(value)
        else:
            node = node[part]
