"""Sub-features: fine features whose decoder rows point the anchor's way (cosine >= `min_cosine`)
and that co-fire with it.

Statistic: the within-set (partial) correlation of pooled activations, so that two features that
merely both prefer the concept do not count; permutation p with shuffles inside each prompt set;
Benjamini-Hochberg over the cosine-qualified rows.
Decision (decide_sub_features, below): held when at least `min_count` rows are
sub-features (q <= alpha, positive partial correlation; `classify_pair`); refuted when not even that many could be.
"""

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Param,
    Section,
    assert_held,
    claim_family,
    draw,
    feature_index,
    make_record,
    significant,
)

PARAMS = {
    "anchor": Param(int, low=0, feature_of="coarse", help="a coarse feature"),
    "min_cosine": Param(float, 0.3, low=-1.0, high=1.0, pair_cutoff="bh",
                         help="decoder cosine a sub-feature needs (pairs beyond it form the co-firing BH family)"),
    "min_count": Param(int, 1, low=1, help="sub-features the anchor must have"),
    # The report's colours for the cosine x correlation scatter (not part of the decision).
    "blue_min_correlation": Param(float, 0.5, low=-1.0, high=1.0),
    "orange_min_correlation": Param(float, 0.2, low=-1.0, high=1.0),
    "red_max_cosine": Param(float, 0.1, low=0.0, high=1.0),
}


def classify_pair(pair: dict, claim: ClaimSpec | None, alpha: float) -> dict:
    """What a sub-feature is, for every pair of the analysis's pair table (this family's `pair_rule`):
    cosine-qualified, and co-firing within prompt sets (significant BH q, positive partial correlation).

    Also the seed's colours on the scatter (pooled r vs cosine): blue, same direction and co-fire;
    orange, partial; red, co-occur with cosine near 0; grey, neither; silent, a feature that barely
    fires on these prompts (not evaluable). `claim`: this family's claim on the pair's anchor (None:
    the defaults above).
    """
    def param(key):
        return claim.param(key) if claim is not None else PARAMS[key].default

    min_cos = param("min_cosine")
    cos, r = pair["cosine"], pair.get("correlation")
    if pair.get("silent") or r is None:
        return {"category": "silent", "sub_feature": False}
    q, partial = pair.get("q_value"), pair.get("partial_correlation")
    co_fires = significant(q, alpha) and partial is not None and partial > 0
    if cos >= min_cos and r >= param("blue_min_correlation"):
        category = "blue"
    elif r >= param("orange_min_correlation") and abs(cos) < param("red_max_cosine"):
        category = "red"
    elif r >= param("orange_min_correlation") or cos >= min_cos:
        category = "orange"
    else:
        category = "grey"
    return {"category": category, "sub_feature": bool(cos >= min_cos and co_fires)}


def _anchor_pairs(analysis: Analysis, anchor: int) -> dict[str, list[dict]]:
    pairs = [p for p in analysis.pair_table() if p["coarse"] == anchor]
    qualified = [p for p in pairs if p["qualified"]]
    return {
        "qualified": qualified,
        "evaluable": [p for p in qualified if not p["silent"] and p["p_value"] is not None],
        "silent": [p for p in qualified if p["silent"]],
        "sub_features": [p for p in qualified if p["sub_feature"]],
        "display_only": [p for p in pairs if not p["qualified"]],
    }


def _plausible(groups: dict[str, list[dict]]) -> int:
    """Cosine-qualified, evaluable pairs whose within-set correlation is positive: the most the count could reach."""
    return sum(1 for p in groups["evaluable"] if (p["partial_correlation"] or 0) > 0)


def decide_sub_features(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """At least `min_count` fine rows with cosine >= the cutoff co-fire with the anchor within prompt sets
    (BH over the cosine-qualified, evaluable pairs only)."""
    anchor = feature_index(analysis, "coarse", claim.param("anchor"))
    min_count = int(claim.param("min_count"))
    groups = _anchor_pairs(analysis, anchor)
    subs, plausible = groups["sub_features"], _plausible(groups)
    if len(subs) >= min_count:
        verdict = "held"
    elif plausible + len(groups["silent"]) < min_count:
        verdict = "refuted"  # even every plausible and every untestable row would not reach the count
    else:
        verdict = "inconclusive"
    qs = [p["q_value"] for p in groups["evaluable"] if p["q_value"] is not None]
    return make_record(
        claim, verdict=verdict, statistic_name="sub-features", statistic=float(len(subs)), threshold=float(min_count),
        comparison=">=", q_value=min(qs) if qs else None,
        reason=(f"{len(subs)} of {len(groups['evaluable'])} evaluable fine rows with cosine >= "
                f"{claim.param('min_cosine')} co-fire within prompt sets (BH q <= {analysis.alpha}); "
                f"{len(groups['silent'])} more are silent on these prompts (not evaluable); "
                f"{plausible} have a positive within-set correlation"),
        details={"anchor": anchor, "sub_features": subs, "candidates": groups["qualified"],
                 "n_evaluable": len(groups["evaluable"]), "n_silent": len(groups["silent"]),
                 "n_plausible": plausible, "display_only": len(groups["display_only"]),
                 "co_firing_statistic": "correlation within prompt sets (partial r given the set), "
                                        "within-set permutation p"},
    )


def pair_tables(claims: list[ClaimSpec], analysis: Analysis) -> dict:
    return {"pairs": analysis.pair_table()}


def report_sub_features(claims: list[ClaimRecord], ledger) -> Section:
    """The seed's scatter of correlation against cosine, every pair, and the decomposition graph."""
    tables = ledger.tables
    legend = "; ".join(f"{name}: {meaning}" for name, meaning in draw.CATEGORY_MEANING.items())
    return Section("Sub-features: correlation vs cosine", [
        draw.pair_scatter(tables), draw.pairs_table(tables), draw.decomposition_graph(tables)],
        note=f"Colours: {legend}. The shaded top-left corner should be empty (the empty_top_left claim).")


@claim_family("sub_features", PARAMS, order=60, tables=pair_tables, report=report_sub_features,
              decision=decide_sub_features, pair_rule=classify_pair)
def test_sub_features(claim, analysis, record_claim):
    assert_held(record_claim(decide_sub_features(claim, analysis)))
