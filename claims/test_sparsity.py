"""Sparsity: features firing per token (L0) stay under a fraction of the SAE's width.

Seed: about 82 of 16,384 (< 1%).
Decision (harness.engine.claims_engine.sparsity_claim): the upper bound of L0's interval over prompts, as a
fraction of the width, must lie below `max_l0_fraction`. For a TopK SAE, L0 = k by construction: the
record says so and it is not a finding.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("sparsity")
def test_sparsity(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
