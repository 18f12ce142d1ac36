"""Reconstruction: the SAE is an approximation; say how much of the residual it explains
(explained variance) and how much next-token loss it costs (CE-loss score)."""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "reconstruction"


def test_reconstruction(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
