"""Loud but unselective: a feature that fires harder than the anchor yet is less selective.

Seed: C-11333 (mean 4.48, selectivity 0.89) vs C-3999 (mean 3.67, selectivity 0.97).
"""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "loud_unselective"


def test_loud_unselective(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
