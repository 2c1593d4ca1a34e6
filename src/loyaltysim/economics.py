"""Money that depends on the market's size, and the currency money is labelled with.

A scenario states its money for one market. Some of it is per unit or per customer and so grows with the number of
customers by itself (prices, unit costs, a programme's operating cost per member, a campaign's cost per contact,
acquisition cost per customer won). The rest is a firm's overhead, stated as a total: fixed costs, marketing spend,
investment budgets and what an attribute costs to improve, a programme's launch cost, a campaign's budget per round.
Run the same market with five times fewer customers and those totals stay as they are, while revenue and margins
shrink five-fold: every firm's profit falls, and a programme's gain (which grows with its members) no longer
compares with its launch cost as it would at full size.

``economics.reference_population`` says for how many customers the totals are stated. A run with another
``market.customers.population`` (an experiment's ``population`` override, a quick exploratory run) scales every
size-dependent amount by population / reference_population, so the economics per customer are those of the
reference market whatever the size simulated. Without it nothing is scaled (the scenario's amounts are the totals
of the market as simulated).

:data:`SIZE_DEPENDENT` lists the amounts scaled; counts (relationship managers, a campaign's most contacts per
round) are not money and are not scaled.
"""

from __future__ import annotations

from typing import Any

from .scenario import LoyaltyScenario, scenario_from_dict
from .units import Rate, parse_rate

DEFAULT_CURRENCY = "money"  # the label of money when a scenario names no currency

# Paths of the size-dependent amounts in a scenario ("[]": every item of a list; an unset list or value is skipped).
SIZE_DEPENDENT = (
    "market.attributes[].cost_per_unit",
    "market.firms[].fixed_cost",
    "market.firms[].marketing_spend",
    "market.firms[].investments[].budget",
    "market.firms[].programmes[].launch_cost",
    "market.firms[].campaigns[].budget",
    "policy.investments[].budget",
    "policy.programmes[].launch_cost",
    "policy.campaigns[].budget",
)


def currency(scenario: LoyaltyScenario) -> str:
    """The label of the scenario's money: its ``economics.currency``, else ``"money"``."""
    return scenario.economics.currency or DEFAULT_CURRENCY


def size_factor(scenario: LoyaltyScenario) -> float:
    """What the scenario's size-dependent amounts are multiplied by: population / reference population (1.0 when
    no reference population is given)."""
    reference = scenario.economics.reference_population
    return 1.0 if reference is None else scenario.market.customers.population / reference


def _scaled(value: Any, factor: float) -> Any:
    if value is None:
        return None
    if isinstance(value, str):  # a rate of money per period: the same period, the amount scaled
        rate = parse_rate(value)
        return Rate(rate.value * factor, rate.unit)  # a Rate is taken as it is (no upper bound on money)
    return float(value) * factor


def _scale_at(node: Any, parts: list[str], factor: float) -> None:
    if node is None:
        return
    head, rest = parts[0], parts[1:]
    listed = head.endswith("[]")
    key = head.removesuffix("[]")
    if key not in node or node[key] is None:
        return
    if listed:
        for item in node[key]:
            if rest:
                _scale_at(item, rest, factor)
    elif rest:
        _scale_at(node[key], rest, factor)
    else:
        node[key] = _scaled(node[key], factor)


def at_market_size(scenario: LoyaltyScenario) -> LoyaltyScenario:
    """The scenario as the model runs it: every amount of :data:`SIZE_DEPENDENT` multiplied by
    :func:`size_factor`. The scenario itself when there is nothing to scale (no reference population, or the
    population is the reference)."""
    factor = size_factor(scenario)
    if factor == 1.0:
        return scenario
    data = scenario.to_dict()
    for path in SIZE_DEPENDENT:
        _scale_at(data, path.split("."), factor)
    return scenario_from_dict(data, source=f"{scenario.name} at {scenario.market.customers.population} customers")
