"""Findings checks and figures, one module per experiment family, on the shared helpers of ``common``."""
