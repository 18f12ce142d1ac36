"""GO gate: at least one coarse anchor has `min_sub_features` (3) or more sub-features.

Decision (harness.engine.claims_engine.go_gate_claim): held when some anchor has that many tested
sub-features; refuted when no anchor could reach it on these prompts. Its failure is NO-GO.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("go_gate")
def test_go_gate(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
