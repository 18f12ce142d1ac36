"""Empty top-left: no coarse-fine pair points the same way (cosine >= `min_cosine`) without firing
together (correlation >= `min_correlation`).

Decision (harness.engine.claims_engine.empty_top_left_claim): every aligned pair's correlation interval must
clear the bar; one whose interval lies wholly below it refutes the claim.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("empty_top_left")
def test_empty_top_left(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
