"""Tests of loyaltysim.experiments."""
