"""Facets, the seed's open question: fine sub-features "each potentially encode a different facet
(cuisine, geography, landmarks, language), though we do not know which facets they are yet".

For each sub-feature of the anchor (chosen on the discovery half), which facet of the concept
prompts does it prefer?
- Discovery half: max-facet statistic, max over facets of (facet mean - mean of the other facets),
  permutation p with facet labels shuffled within the concept set (choosing the facet is paid for),
  Benjamini-Hochberg across the sub-features.
- Confirmation half: each selected sub-feature's chosen facet against the other facets on fresh
  prompts: one-sided permutation p, BH across the selected, BCa interval of the mean difference.
Decision: held when at least `min_sub_features` are confirmed (q <= alpha, interval above 0);
refuted when fewer than that many intervals leave room for the chosen facet. Exploratory by
default: reported, never flips GO (set `gating = true` on the claim to make it gate).
The report's heatmap shows sub-feature x facet means on the confirmation half.
"""

from harness import assert_held, claim_family, facet_claim


@claim_family("facet")
def test_facet(claim, analysis, record_claim):
    record = record_claim(facet_claim(claim, analysis))
    assert_held(record)
