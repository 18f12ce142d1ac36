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

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Effect,
    Param,
    Section,
    assert_held,
    claim_family,
    draw,
    facet_preferences,
    make_record,
)

PARAMS = {
    "anchor": Param(int, None, low=0, feature_of="coarse", help="a coarse anchor (default: the top one)"),
    "min_sub_features": Param(int, 1, low=1, help="how many sub-features must encode a facet"),
}


def decide_facet(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """At least `min_sub_features` sub-features of the anchor each encode one facet: a larger excess over
    what the anchor's activation predicts on it than on every other facet, chosen on the discovery half
    and confirmed on the other. held: that many confirmed; else inconclusive (never refuted: no margin)."""
    anchor = claim.param("anchor")
    anchor = analysis.top_anchor if anchor is None else anchor
    need = int(claim.param("min_sub_features"))
    prefs = facet_preferences(analysis, anchor)
    rows = prefs["sub_features"]
    details = {"anchor": anchor, "facets": prefs["facets"], "facets_dropped": prefs.get("facets_dropped"),
               "sub_features": rows, "anchor_facet_means_confirmation": prefs.get("anchor_facet_means_confirmation"),
               "n_discovery": prefs.get("n_discovery"), "n_confirmation": prefs.get("n_confirmation")}
    if not rows:
        return make_record(claim, verdict="not evaluated", statistic_name="facet-specific sub-features", statistic=None,
                           threshold=float(need), comparison=">=", reason=prefs["note"], details=details)
    confirmed = [r for r in rows if r["confirmed"]]
    verdict = "held" if len(confirmed) >= need else "inconclusive"
    tested = [r for r in rows if r["confirmation_q"] is not None]
    best = min(tested, key=lambda r: (r["confirmation_q"], r["confirmation_p"])) if tested else None
    effect = None
    if best is not None:
        effect = Effect(name=f"F-{best['fine']}: excess over the anchor on {best['chosen_facet']} minus the best other "
                             "facet (confirmation half)", **best["confirmation"])
    listed = "; ".join(f"F-{r['fine']} -> {r['chosen_facet']} (discovery q {r['discovery_q']:.2g}"
                       + (f", confirmation q {r['confirmation_q']:.2g} vs {r['runner_up']} and the rest"
                          if r["confirmation_q"] is not None else "")
                       + (", confirmed" if r["confirmed"] else "") + ")"
                       for r in sorted(rows, key=lambda r: r["discovery_p"])[:6])
    parent = prefs.get("anchor_facet_means_confirmation") or {}
    top_parent = max(parent, key=parent.get) if parent else None
    reason = (f"{len(confirmed)} of {len(rows)} sub-features of coarse-{anchor} fire beyond what coarse-{anchor} "
              f"predicts more on one facet than on every other, on fresh prompts (need {need}); {len(tested)} chosen on the discovery half; "
              f"{listed}" + (f"; the anchor itself fires most on {top_parent}" if top_parent else "")
              + (f"; facets left out (too few prompts where the anchor fires): {sorted(prefs['facets_dropped'])}"
                 if prefs.get("facets_dropped") else ""))
    return make_record(
        claim, verdict=verdict, statistic_name="facet-specific sub-features (confirmed)", statistic=float(len(confirmed)),
        threshold=float(need), comparison=">=", p_value=best["confirmation_p"] if best else None,
        q_value=best["confirmation_q"] if best else None, effect=effect, reason=reason, details=details)


def report_facet(claims: list[ClaimRecord], ledger) -> Section:
    """Per claim: its verdict, the sub-feature x facet heatmap and each sub-feature's test."""
    parts = []
    for record in claims:
        parts += [record, draw.facet_heatmap(record), draw.facet_table(record) or draw.claim_details(record)]
    return Section("Facets", parts, note=(
        "Which facet of the concept prompts each sub-feature encodes beyond what its anchor predicts. Chosen on "
        "the discovery half (max-facet permutation test, labels shuffled among those prompts, Benjamini-Hochberg "
        "across sub-features); confirmed on the confirmation half against every other facet (largest one-sided "
        "pairwise permutation p, BH; BCa interval of the chosen facet's excess minus the best other facet's). "
        "The first heatmap row is the anchor's own facet means."))


@claim_family("facet", PARAMS, order=80, report=report_facet, decision=decide_facet, groups=("concept",),
              needs_anchors=True, doc="Which facet of the concept prompts each sub-feature of an anchor encodes, beyond what its anchor "
                  "predicts (exploratory by default).")
def test_facet(claim, analysis, record_claim):
    assert_held(record_claim(decide_facet(claim, analysis)))
