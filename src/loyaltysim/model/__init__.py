"""The market model: customers and firms as Mesa agents over arrays, stepped in the ODD schedule's order.

:mod:`~loyaltysim.model.market` wires the parts and writes the step order; :mod:`~loyaltysim.model.state` holds the
arrays; :mod:`~loyaltysim.model.rules` the customer rules both paths share; each submodel of the ODD's section 3.3
lives in one module of :mod:`loyaltysim.model.mechanisms`.
"""

from loyaltysim.model.market import LoyaltyMarket

__all__ = ["LoyaltyMarket"]
