"""GO gate: at least one coarse anchor has 3 or more sub-features. Its failure is NO-GO."""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "go_gate"


def test_go_gate(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert record.verdict == "held", record.message
