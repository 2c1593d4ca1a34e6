"""Co-brand programmes: a co-branded card, the firm's points earned also with a partner."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.mechanisms.programmes.points import PointsLedger
from loyaltysim.model.state import CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView


class CobrandLedger(PointsLedger):
    """A co-branded card (kind ``cobrand``): issued by the firm that lists it, carrying a partner's benefits too.
    Members earn the issuer's points on what they spend with the issuer (``earn_rate``) and with the ``partner``
    (``partner_earn_rate``; a market firm or a category outlet), and get the partner's discount on top of any member
    discount there. The issuer bears the rewards, operating and launch costs and collects the fees; the partner
    pays it ``fee`` per point issued on the partner's sales. Rivals do not copy it."""

    copyable = False

    @staticmethod
    def partners_of(spec, index: dict[str, int]) -> tuple[int, ...]:
        """The partner it names."""
        return (index[spec.partner],)

    def earn_rates(self) -> dict[int, float]:
        """``earn_rate`` at the issuer, ``partner_earn_rate`` at the partner."""
        rates = super().earn_rates()
        rates[self.partners[0]] = self.spec.partner_earn_rate
        return rates

    def discounts(self, discount: np.ndarray) -> dict[int, np.ndarray]:
        """The member discount where members earn, and at the partner the ``partner_discount`` on top of it."""
        discounts = super().discounts(discount)
        partner = self.partners[0]
        discounts[partner] = 1.0 - (1.0 - discount) * (1.0 - np.where(self.member, self.spec.partner_discount, 0.0))
        return discounts

    def add_benefit(self, benefit: np.ndarray, book: BookView, st: CustomerState, price: np.ndarray,
                    spend: np.ndarray) -> None:
        """The points' benefit, plus the partner discount on its expected spend with the partner."""
        super().add_benefit(benefit, book, st, price, spend)
        partner = self.partners[0]
        partner_spend = spend if partner == self.firm else book.yearly_spend(st, price, partner)
        benefit += partner_spend * self.spec.partner_discount

    def account(self, book: BookView, t: int, totals: dict) -> None:
        """As the issuer's own programme (every reward, wherever redeemed), and the partner pays the issuer ``fee``
        per point issued on its sales. Both payments are settlement rows."""
        super().account(book, t, totals)
        cost, fees = book.firm_totals["programme_cost"], book.firm_totals["programme_fees"]
        running = totals["operating_cost"] + totals["launch_cost"]
        partner = self.partners[0]
        fee = self.spec.fee * self.by_seller[partner]["issued"]
        cost[partner] += fee
        fees[self.firm] += fee
        for j, role, paid, received, reward, run_cost, member_fees in (
                (self.firm, "issuer", 0.0, fee, totals["reward_cost"], running, totals["fees"]),
                (partner, "partner", fee, 0.0, 0.0, 0.0, 0.0)):
            at_seller = self.by_seller[j]
            book.add_settlement(t, self, book.seller_names[j], role, points_issued=at_seller["issued"],
                                points_redeemed=at_seller["redeemed"], paid=paid, received=received, reward_cost=reward,
                                running_cost=run_cost, membership_fees=member_fees)
