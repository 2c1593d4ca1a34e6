"""Coalition programmes: one points currency shared by partners and run by an operator (the Nectar model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyaltysim.model.mechanisms.programmes.points import PointsLedger

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView


class CoalitionLedger(PointsLedger):
    """A coalition (kind ``coalition``): partners, usually in different categories, share one currency run by an
    operator. Members earn ``earn_rate`` at every partner (the firm that lists it and its ``partners``: market firms
    or category outlets) and redeem at any. Each partner pays the operator ``fee`` per point it issues, gives the
    reward when a member redeems with it, and is reimbursed ``reimbursement`` per point redeemed; the operator, a
    party of its own, collects the membership fees and bears the operating and launch costs. Rivals do not copy
    it."""

    copyable = False

    @staticmethod
    def partners_of(spec, index: dict[str, int]) -> tuple[int, ...]:
        """The other partners it names."""
        return tuple(index[p] for p in spec.partners)

    def earn_rates(self) -> dict[int, float]:
        """The same earn rate at the firm and at every partner."""
        rates = super().earn_rates()
        rates.update(dict.fromkeys(self.partners, self.spec.earn_rate))
        return rates

    def account(self, book: BookView, t: int, totals: dict) -> None:
        """Each partner (the listing firm included) pays the operator ``fee`` per point it issues and bears the
        rewards redeemed with it, and the operator reimburses it ``reimbursement`` per point redeemed there; the
        operator collects membership fees and bears the operating and launch costs. Every payment is a settlement
        row."""
        cost, fees = book.firm_totals["programme_cost"], book.firm_totals["programme_fees"]
        running = totals["operating_cost"] + totals["launch_cost"]
        spec = self.spec
        operator = {"paid_in": 0.0, "paid_out": 0.0}
        for j, at_seller in self.by_seller.items():
            fee, back = spec.fee * at_seller["issued"], spec.reimbursement * at_seller["redeemed"]
            cost[j] += fee + at_seller["reward_cost"]
            fees[j] += back
            operator["paid_in"] += fee
            operator["paid_out"] += back
            book.add_settlement(t, self, book.seller_names[j], "partner", points_issued=at_seller["issued"],
                                points_redeemed=at_seller["redeemed"], paid=fee, received=back,
                                reward_cost=at_seller["reward_cost"], running_cost=0.0, membership_fees=0.0)
        book.add_settlement(t, self, f"{self.name} operator", "operator", points_issued=totals["issued"],
                            points_redeemed=totals["redeemed"], paid=operator["paid_out"],
                            received=operator["paid_in"], reward_cost=0.0, running_cost=running,
                            membership_fees=totals["fees"])
