"""Sub-features: fine features whose decoder rows point the anchor's way (cosine >= `min_cosine`)
and that co-fire with it.

Statistic: the within-set (partial) correlation of pooled activations, so that two features that
merely both prefer the concept do not count; permutation p with shuffles inside each prompt set;
Benjamini-Hochberg over the cosine-qualified rows.
Decision (harness.engine.claims_engine.sub_features_claim): held when at least `min_count` rows are
sub-features (q < alpha, positive partial correlation); refuted when not even that many could be.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("sub_features")
def test_sub_features(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
