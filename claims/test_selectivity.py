"""Selectivity: an anchor fires on concept prompts far more than on neutral or near-miss ones.

Seed: C-3999 selectivity 0.97 (> 0.9). Permutation p over label shuffles; bootstrap CI.
"""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "selectivity"


def test_selectivity(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
