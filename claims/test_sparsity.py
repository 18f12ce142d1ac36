"""Sparsity: features firing per token (L0) stay under a fraction of the SAE's width.

Seed: about 82 of 16,384 (< 1%).
"""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "sparsity"


def test_sparsity(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
