"""Empty top-left: no pair points the same way (cosine >= 0.3) without firing together."""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "empty_top_left"


def test_empty_top_left(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
