"""The kinds of loyalty programme: a specification's ``kind`` (:data:`loyaltysim.scenario.PROGRAMME_KINDS`) -> the
ledger class that runs it. A new kind is a specification in the scenario schema, a module with its ledger class and
its line here."""

from __future__ import annotations

from loyaltysim.model.mechanisms.programmes.cashback import CashbackLedger
from loyaltysim.model.mechanisms.programmes.club import ClubLedger
from loyaltysim.model.mechanisms.programmes.coalition import CoalitionLedger
from loyaltysim.model.mechanisms.programmes.cobrand import CobrandLedger
from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.points import PointsLedger
from loyaltysim.model.mechanisms.programmes.tiers import TiersLedger

KINDS: dict[str, type[Ledger]] = {
    "points": PointsLedger,
    "tiers": TiersLedger,
    "cashback": CashbackLedger,
    "club": ClubLedger,
    "coalition": CoalitionLedger,
    "cobrand": CobrandLedger,
}


def ledger_class(kind: str) -> type[Ledger]:
    """The ledger class of a programme kind."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown programme kind {kind!r}; known: {sorted(KINDS)}") from None
