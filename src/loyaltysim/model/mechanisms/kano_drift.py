"""Kano drift (ODD 3.3.3): an attribute customers come to expect moves from attractive to one-dimensional, then to
must-be (Kano et al. 1984: today's delighter is tomorrow's basic need), when the mean expectation of the customers
in the market reaches the attribute's ``drift`` levels."""

from __future__ import annotations

import numpy as np

from loyaltysim.model.state import ATTRACTIVE, MUST_BE, ONE_DIMENSIONAL, CustomerState


def drift_kano(kano: np.ndarray, attributes: list, st: CustomerState) -> None:
    """Update the attributes' Kano classes (``kano``, codes) in place from the customers' expectations."""
    anyone = None
    for a, attr in enumerate(attributes):
        if attr.drift is None or kano[a] == MUST_BE:
            continue
        anyone = st.active.any() if anyone is None else anyone
        # (the attribute's column, then the active customers: the values of st.expectation[st.active, a], in order)
        expected = st.expectation[:, a][st.active].mean() if anyone else 0.0
        if expected >= attr.drift.must_be_at:
            kano[a] = MUST_BE
        elif expected >= attr.drift.one_dimensional_at and kano[a] == ATTRACTIVE:
            kano[a] = ONE_DIMENSIONAL
