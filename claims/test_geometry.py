"""Geometry: "0.3 is where the crowd ends and the signal begins", as two tested parts.

(a) null directions drawn with the fine decoder's own covariance rarely reach the cutoff: the
    `quantile` quantile of their largest cosine (order-statistic interval) lies below `cutoff`;
(b) the anchor has more fine rows beyond the cutoff than null directions do (exact rank p).
Decision (decide_geometry, below): held when both hold; refuted when either is refuted.
"""

import numpy as np

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    ConfigError,
    Effect,
    Param,
    Section,
    assert_held,
    claim_family,
    combine,
    decide,
    draw,
    feature_index,
    make_record,
    quantile_interval,
    significant,
)

PARAMS = {
    "anchor": Param(int, low=0, feature_of="coarse", help="a coarse feature"),
    "cutoff": Param(float, 0.3, low=-1.0, high=1.0, help="the decoder cosine the seed calls the signal's start"),
    # The cutoff must exceed this quantile of the largest cosine null directions reach.
    "quantile": Param(float, 0.95, low=0.5, high=0.9999),
}


def decide_geometry(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """The seed: "0.3 is where the crowd ends and the signal begins", as two tested parts.

    (analysis) the cutoff exceeds the `quantile` quantile of the largest cosine that null directions reach
        with all fine rows (null directions share the fine decoder's covariance; the quantile's
        interval comes from order statistics over the null draws);
    (b) the anchor has more fine rows beyond the cutoff than null directions do (rank p over the
        null draws: one count per direction, never millions of cosines treated as independent).
    """
    anchor = feature_index(analysis, "coarse", claim.param("anchor"))
    cutoff, quantile = float(claim.param("cutoff")), float(claim.param("quantile"))
    if not 0 < quantile < 1:
        raise ConfigError(f"claim {claim.claim_id!r}: quantile {quantile} must lie in (0, 1)")
    cos = analysis.anchor_cosines(anchor)
    null = analysis.geometry_null(cutoff)
    crowd, crowd_low, crowd_high = quantile_interval(null.max_cosine, quantile, level=analysis.level)
    crowd_verdict = decide(crowd_low, crowd_high, cutoff, "<")
    beyond = int((cos >= cutoff).sum())
    p_count = (1 + int((null.count_beyond >= beyond).sum())) / (1 + null.count_beyond.size)
    if significant(p_count, analysis.alpha):
        count_verdict = "held"
    elif beyond <= float(np.median(null.count_beyond)):
        count_verdict = "refuted"  # no more aligned rows than a direction unrelated to the dictionary
    else:
        count_verdict = "inconclusive"
    verdict = combine(crowd_verdict, count_verdict)
    all_counts = analysis.coarse_counts_beyond(cutoff)
    percentile = float((all_counts < beyond).mean())
    n_coarse = analysis.directions["coarse"].shape[0]
    counted = "all" if all_counts.size == n_coarse else f"{all_counts.size:,} sampled"
    return make_record(
        claim, verdict=verdict, statistic_name=f"{quantile:.0%} quantile of the null's largest cosine",
        statistic=crowd, threshold=cutoff, comparison="<", p_value=p_count,
        effect=Effect(name="fine rows at or beyond the cutoff", value=float(beyond)),
        reason=(f"null directions (fine-decoder covariance, {null.max_cosine.size} draws) reach a largest cosine "
                f"whose {quantile:.0%} quantile is {crowd:.3f} [{crowd_low:.3f}, {crowd_high:.3f}] against the "
                f"cutoff {cutoff}; coarse-{anchor} has {beyond} fine rows beyond it vs a null median of "
                f"{np.median(null.count_beyond):.0f} (rank p = {p_count:.2g}); {percentile:.0%} of {counted} "
                f"coarse rows have fewer"),
        details={"anchor": anchor, "cutoff": cutoff, "quantile": quantile, "null_max_quantile": crowd,
                 "null_max_quantile_ci": [crowd_low, crowd_high], "null_kind": null.kind,
                 "crowd_verdict": crowd_verdict, "count_verdict": count_verdict, "beyond_cutoff": beyond,
                 "null_count_median": float(np.median(null.count_beyond)),
                 "null_count_max": int(null.count_beyond.max()), "n_null": int(null.max_cosine.size),
                 "n_fine": int(cos.size), "anchor_max_cosine": float(cos.max()),
                 "coarse_rows_with_fewer": percentile, "coarse_rows_counted": int(all_counts.size),
                 "coarse_rows_median_count": float(np.median(all_counts))},
    )


def geometry_tables(claims: list[ClaimSpec], analysis: Analysis) -> dict:
    """What the section draws: each anchor's cosines against the null, at the lowest cutoff claimed."""
    cutoff = min(c.param("cutoff") for c in claims)
    return {"cosine_heatmap": analysis.cosine_heatmap(list(analysis.anchors)),
            "aligned_counts": analysis.aligned_counts(cutoff), "cosine_histograms": analysis.cosine_histograms(cutoff),
            "cutoffs": {f"coarse-{c.param('anchor')}": c.param("cutoff") for c in claims}}


def report_geometry(claims: list[ClaimRecord], ledger) -> Section:
    tables = ledger.tables
    return Section("Geometry: decoder cosine", [
        draw.cosine_heatmap(tables), [*draw.cosine_histograms(tables), draw.aligned_counts(tables)]],
        note="Cosine of decoder rows. The histograms show one coarse anchor against every fine row, the cutoff, and "
             "the count expected from null directions drawn with the fine decoder's own covariance (its "
             "anisotropy). The claim asks two things: that null directions rarely reach the cutoff (the 95% "
             "quantile of their largest cosine lies below it), and that the anchor has more fine rows beyond the "
             "cutoff than null directions do; the last plot shows that count for every coarse row.")


@claim_family("geometry", PARAMS, order=50, tables=geometry_tables, report=report_geometry,
              decision=decide_geometry, groups=())
def test_geometry(claim, analysis, record_claim):
    assert_held(record_claim(decide_geometry(claim, analysis)))
