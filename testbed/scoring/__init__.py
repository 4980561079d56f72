"""Scoring: pure functions from records to numbers; no network, no I/O."""
