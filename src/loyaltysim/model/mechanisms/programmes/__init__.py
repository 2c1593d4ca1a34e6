"""Loyalty programmes: the ledgers firms keep of their members, and what membership means to a customer.

Each programme a firm runs (points, tiers, cashback, club, coalition, cobrand; see :mod:`loyaltysim.scenario`) is one
ledger: who is a member, their points by the period they were earned in, their status tier and the spend and visits
that qualify for it, their cashback period. The modules:

* :mod:`.book`: the :class:`Book`, every ledger of a market, and the market-wide wiring of a step (prepare before
  customers step, settle after; dilution, shares of wallet and expected spend, firms' totals, the ``programmes``
  and ``settlement`` tables' rows);
* :mod:`.ledger`: the :class:`Ledger` every programme keeps (members, enrolment, fees, the hooks its kind
  overrides);
* :mod:`.views`: the :class:`Perks` the rules read, what the book hands the ledgers in a step, and what a ledger
  may ask of the book;
* :mod:`.status`: status tiers, which a ``tiers`` programme is and a points programme may have;
* one module per kind, its ledger class: :mod:`.points`, :mod:`.tiers`, :mod:`.cashback`, :mod:`.club`,
  :mod:`.coalition`, :mod:`.cobrand`; and :mod:`.registry`, which maps a specification's ``kind`` to its class.
"""

from loyaltysim.model.mechanisms.programmes.book import Book
from loyaltysim.model.mechanisms.programmes.cashback import CashbackLedger
from loyaltysim.model.mechanisms.programmes.club import ClubLedger
from loyaltysim.model.mechanisms.programmes.coalition import CoalitionLedger
from loyaltysim.model.mechanisms.programmes.cobrand import CobrandLedger
from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.points import PointsLedger
from loyaltysim.model.mechanisms.programmes.registry import KINDS, ledger_class
from loyaltysim.model.mechanisms.programmes.status import Status
from loyaltysim.model.mechanisms.programmes.tiers import TiersLedger
from loyaltysim.model.mechanisms.programmes.views import Perks, among

__all__ = ["KINDS", "Book", "CashbackLedger", "ClubLedger", "CoalitionLedger", "CobrandLedger", "Ledger", "Perks",
           "PointsLedger", "Status", "TiersLedger", "among", "ledger_class"]
