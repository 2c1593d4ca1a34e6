"""Tier programmes: status without points (the tiers themselves are :mod:`.status`, shared with the points kinds)."""

from __future__ import annotations

from loyaltysim.model.mechanisms.programmes.ledger import Ledger


class TiersLedger(Ledger):
    """A tier programme (kind ``tiers``): status without points, over a rolling window. Its benefits are its tiers'
    (discount, priority service, status value; :class:`~loyaltysim.model.mechanisms.programmes.status.Status`),
    which the common ledger gives any programme with tiers: it overrides nothing."""
