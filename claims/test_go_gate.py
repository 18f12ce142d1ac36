"""The GO/NO-GO gate: the seed's pre-registered Phase 1 rule, "a coarse anchor has 3+ sub-features",
decided as one test. Its verdict is the main job's exit status; every other claim is a finding.

GO when some coarse anchor
  1. prefers the concept: selectivity interval's lower bound > `min_selectivity` (0.5);
  2. has a meaningful cutoff: more fine rows at cosine >= `min_cosine` (0.3) than directions drawn with
     the fine decoder's own covariance reach (rank p; `geometry`);
  3. has at least `min_sub_features` (3) true sub-features: the step-down min-P count over the
     cosine-qualified rows' within-set co-firing tests (closed testing), a simultaneous lower bound on
     how many truly co-fire; Benjamini-Hochberg discoveries are shown but never counted;
and (`control = true`) the same rule says NO-GO on a random SAE of the same shape, anchors re-picked on it.

Size: each anchor's parts at alpha / n_anchors, all required; GO through any anchor. So P(GO) <= alpha
when no anchor has 3 true sub-features. Decision: harness/engine/gate.py; calibration: `go_gate` rows.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("go_gate")
def test_go_gate(claim, analysis, control_analysis, record_claim):
    record = record_claim(evaluate(claim, analysis, control=control_analysis))
    assert_held(record)
