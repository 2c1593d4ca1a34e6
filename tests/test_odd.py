"""The model description (docs/odd.md) follows the ODD protocol and documents every scenario parameter.

The scenario schema is walked recursively: nested models give dotted paths (``market.customers.basket.mean``),
lists of models add ``[]`` (``market.firms[].name``), optional, union and annotated wrappers are looked through,
and the discriminated union of scheduled events contributes the fields of every event kind under
``market.events[]``. Every path, leaf or intermediate, must appear in the document between backticks.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from loyaltysim.scenario import LoyaltyScenario

ODD = Path(__file__).resolve().parents[1] / "docs" / "odd.md"

ODD_HEADINGS = (
    "Purpose and patterns",
    "Entities, state variables and scales",
    "Process overview and scheduling",
    "Design concepts",
    "Basic principles",
    "Emergence",
    "Adaptation",
    "Objectives",
    "Learning",
    "Prediction",
    "Sensing",
    "Interaction",
    "Stochasticity",
    "Collectives",
    "Observation",
    "Initialization",
    "Input data",
    "Submodels",
)


def _models_in(annotation) -> tuple[list[type[BaseModel]], bool]:
    """The pydantic models an annotation can hold, and whether they sit in a list (or tuple, set)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType):
        models, listed = [], False
        for arg in args:
            found, in_list = _models_in(arg)
            models += [m for m in found if m not in models]
            listed = listed or in_list
        return models, listed
    if origin in (list, tuple, set, frozenset):
        models = []
        for arg in args:
            if arg is not Ellipsis:
                models += [m for m in _models_in(arg)[0] if m not in models]
        return models, bool(models)
    return [], False  # a leaf: a number, a string, a unit string, a literal, a dict of levels


def schema_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of every field of ``model`` and of the models nested in it, leaves and intermediates."""
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        nested, listed = _models_in(info.annotation)
        for sub in nested:
            paths |= schema_paths(sub, f"{path}[]." if listed else f"{path}.")
    return paths


def backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


@pytest.fixture(scope="module")
def odd_text() -> str:
    assert ODD.exists(), f"{ODD} is missing"
    return ODD.read_text(encoding="utf-8")


def test_the_walker_sees_nested_lists_optionals_and_every_event_kind():
    paths = schema_paths(LoyaltyScenario)
    expected = {
        "schema_version", "name", "description", "time.horizon", "economics.discount_rate",
        "classification.repeat_tenure", "outputs.panel_every",
        "market.customers", "market.customers.switching_cost", "market.customers.purchase_rate.mean",
        "market.customers.segments[].purchase_rate.shape",  # an optional model inside a list
        "market.firms", "market.firms[].name", "market.firms[].reliability", "market.firms[].reaction.delay",
        "market.firms[].investments[].budget",  # a list inside a list
        "market.attributes[].drift.one_dimensional_at",  # an optional model
        "policy.investments[].budget",  # an optional list of models
        "market.events", "market.events[].kind", "market.events[].at", "market.events[].firm",
        "market.events[].price", "market.events[].switching_cost", "market.events[].manager",
        "market.events[].to", "market.events[].duration", "market.events[].severity",
        "market.events[].price_sensitivity", "market.events[].level", "market.events[].attribute",
        "market.events[].reliability",
    }
    assert expected <= paths, sorted(expected - paths)
    assert not any(p.endswith("[]") for p in paths)


def test_every_scenario_parameter_is_documented(odd_text):
    documented = backticked(odd_text)
    missing = sorted(schema_paths(LoyaltyScenario) - documented)
    assert not missing, f"{len(missing)} scenario parameter(s) missing from {ODD.name}:\n" + "\n".join(missing)


def test_the_document_has_the_odd_sections(odd_text):
    headings = [h.strip().lower() for h in re.findall(r"^#{1,6}\s+(.+)$", odd_text, flags=re.MULTILINE)]
    missing = [h for h in ODD_HEADINGS if not any(h.lower() in line for line in headings)]
    assert not missing, f"ODD section heading(s) missing from {ODD.name}: {missing}"
    for part in ("Overview", "Design concepts", "Details"):
        assert any(line.startswith(part.lower()) or f" {part.lower()}" in line for line in headings), part
