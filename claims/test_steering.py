"""Steering (phase 2): does adding the anchor's decoder direction shift what the model writes?

Controls: random directions of equal norm, another concept's words, and multi-resolution
(coarse + sub-features) against single-resolution at matched fluency cost. Either answer is
a finding.
"""

from harness.claims_engine import evaluate

CLAIM_FAMILY = "steering"


def test_steering(claim, analysis, steering_study, record_claim):
    record = record_claim(evaluate(claim, analysis, steering=steering_study))
    assert record.verdict == "held", record.message
