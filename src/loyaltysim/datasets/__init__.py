"""Public data sets a calibration can be checked on, fetched on demand (never shipped in the repository)."""
