"""Steering (phase 2): the batched steering engine and the study built on it."""
