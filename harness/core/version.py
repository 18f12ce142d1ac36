"""The package version: recorded in every ledger, cache key and calibration row."""

__version__ = "0.1.0"
