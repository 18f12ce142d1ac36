"""Geometry: "0.3 is where the crowd ends and the signal begins", as two tested parts.

(a) null directions drawn with the fine decoder's own covariance rarely reach the cutoff: the
    `quantile` quantile of their largest cosine (order-statistic interval) lies below `cutoff`;
(b) the anchor has more fine rows beyond the cutoff than null directions do (exact rank p).
Decision (harness.engine.claims_engine.geometry_claim): held when both hold; refuted when either is refuted.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("geometry")
def test_geometry(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
