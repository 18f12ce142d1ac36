"""Sub-features: fine features with decoder cosine >= 0.3 to a coarse anchor co-fire with it
(activation correlation significant after Benjamini-Hochberg)."""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "sub_features"


def test_sub_features(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
