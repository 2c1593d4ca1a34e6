"""Tests of loyaltysim.measures."""
