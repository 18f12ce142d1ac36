"""Selectivity: an anchor fires on concept prompts far more than on neutral (or near-miss) ones.

Seed: C-3999 selectivity 0.97 (> 0.9).
Statistic: selectivity = mean_concept / (mean_concept + mean_other) of the max-pooled activation,
on the half the claims are tested on.
Decision (harness.engine.claims_engine.selectivity_claim): the threshold itself is tested. BCa interval
over prompts; where the feature fires on fewer than 10 other-set prompts, the lower bound is at most the
selectivity with the other set firing at its Clopper-Pearson upper rate, every firing at the feature's
activation ceiling (its largest activation on held-out corpus text). Held when the lower bound exceeds
`min_selectivity`, refuted when the upper bound is below it. The permutation
p of "no preference at all" is reported beside it.
"""

from harness import assert_held, claim_family, evaluate


@claim_family("selectivity")
def test_selectivity(claim, analysis, record_claim):
    record = record_claim(evaluate(claim, analysis))
    assert_held(record)
