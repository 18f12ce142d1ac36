"""Loud but unselective: a feature that writes more into the residual stream than the anchor on
concept prompts, yet is less selective.

Seed: C-11333 (mean 4.48, selectivity 0.89) vs C-3999 (mean 3.67, selectivity 0.97).
Decision (harness.engine.claims_engine.loud_unselective_claim): two BCa intervals, the loudness gap
(paired over concept prompts; units "residual" = activation x decoder norm) and the selectivity gap,
must both lie above 0.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("loud_unselective")
def test_loud_unselective(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
