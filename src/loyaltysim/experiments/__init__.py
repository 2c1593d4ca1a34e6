"""Runs, experiment files and their designs, sweeps, the results store and the calibration check."""
