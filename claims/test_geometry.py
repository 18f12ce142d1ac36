"""Geometry: the 0.3 decoder-cosine cutoff lies beyond the crowd of fine features and a random null."""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "geometry"


def test_geometry(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
