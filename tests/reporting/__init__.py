"""Tests of loyaltysim.reporting."""
