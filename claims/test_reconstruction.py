"""Reconstruction: the SAE is an approximation; say how much of the residual it explains
(explained variance) and how much next-token loss it costs (CE-loss score).

Decision (harness.engine.claims_engine.reconstruction_claim): both measured on this run's concept and
neutral prompts, each a ratio of sums bootstrapped over prompts; held when both lower bounds clear
their floors (`min_explained_variance`, `min_ce_loss_score`).
"""

from harness import assert_held, claim_family, evaluate


@claim_family("reconstruction")
def test_reconstruction(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
