"""Club programmes: a club or brand community, a relational bond rather than a reward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loyaltysim.model.mechanisms.programmes.ledger import Ledger
from loyaltysim.model.mechanisms.programmes.views import Outlook, Sales
from loyaltysim.model.state import CustomerState

if TYPE_CHECKING:
    from loyaltysim.model.mechanisms.programmes.views import BookView


class ClubLedger(Ledger):
    """A club (kind ``club``): a member gets the club's discount at the firm; a member whose current firm runs it
    belongs to its club (a relational switching cost, ``club_bond``) and talks about the firm ``talk_boost`` times
    as often. Enthusiasts join: the benefit a customer expects is the club's ``community_value`` times its
    attitudinal loyalty, plus the discount. Leaving the firm ends club membership; memberships of other kinds
    outlast a switch (the card stays in the wallet)."""

    def perceive(self, outlook: Outlook, at_firm: np.ndarray,
                 discount: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The members' discount, the club bond at the current firm and the talk boost; no value as a price cut."""
        discount = np.where(self.member, self.spec.discount, 0.0)
        outlook.club |= at_firm
        outlook.talk = np.where(at_firm, np.maximum(outlook.talk, self.spec.talk_boost), outlook.talk)
        return discount, {self.firm: np.zeros(self.n)}

    def departures(self, sales: Sales) -> np.ndarray:
        """Members who left the firm: another current firm (contractual), or no purchase there for the lapse window
        (repertoire)."""
        st, firm = sales.st, self.firm
        return self.member & ((st.current != firm) if sales.contractual
                              else (sales.t - st.last_buy[:, firm] >= sales.lapse_steps))

    def add_benefit(self, benefit: np.ndarray, book: BookView, st: CustomerState, price: np.ndarray,
                    spend: np.ndarray) -> None:
        """``community_value`` times the attitude of a customer whose current firm runs it, plus the discount on its
        expected spend."""
        cur = st.current == self.firm
        benefit += self.spec.community_value * np.where(cur, st.attitude, 0.0) + spend * self.spec.discount
