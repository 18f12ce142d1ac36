"""Empty top-left: no coarse-fine pair points the same way (cosine >= `min_cosine`) without firing
together (correlation >= `min_correlation`).

Decision (decide_empty_top_left, below): every aligned pair's correlation interval must
clear the bar; one whose interval lies wholly below it refutes the claim.
"""

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Effect,
    Param,
    assert_held,
    claim_family,
    make_record,
)

PARAMS = {
    "min_cosine": Param(float, 0.3, low=-1.0, high=1.0, pair_cutoff="scan",
                         help="pairs at or beyond this decoder cosine are aligned"),
    "min_correlation": Param(float, 0.1, low=-1.0, high=1.0, help="the co-firing every aligned pair must reach"),
}


def decide_empty_top_left(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """No evaluable pair points the same way (cosine >= min_cosine) without co-firing.

    Each aligned, evaluable pair gets a BCa interval of its within-set correlation (prompts
    resampled within sets; Bonferroni over the pairs). An offender is a pair whose upper bound lies
    below the floor; held when every pair's lower bound clears it. A pair with a feature silent on
    these prompts is not evaluable: counted apart, never an offender.
    """
    min_cos, floor = float(claim.param("min_cosine")), float(claim.param("min_correlation"))
    aligned = [p for p in analysis.pair_table() if p["cosine"] >= min_cos]
    silent = [p for p in aligned if p["silent"] or p["partial_correlation"] is None]
    evaluable = [p for p in aligned if not (p["silent"] or p["partial_correlation"] is None)]
    level = 1 - analysis.alpha / max(1, len(evaluable))
    bounds = analysis.partial_correlation_bounds(evaluable, level) if evaluable else {}
    rows = []
    for p in evaluable:
        r, low, high = bounds[(p["coarse"], p["fine"])]
        rows.append({**{k: p[k] for k in ("coarse", "fine", "cosine", "correlation", "fine_fires")},
                     "partial_correlation": r, "ci_low": low, "ci_high": high})
    offenders = [r for r in rows if r["ci_high"] < floor]
    cleared = [r for r in rows if r["ci_low"] >= floor]
    if not rows:
        verdict = "inconclusive"
    elif offenders:
        verdict = "refuted"
    elif len(cleared) == len(rows):
        verdict = "held"
    else:
        verdict = "inconclusive"
    worst = min(rows, key=lambda r: r["partial_correlation"]) if rows else None
    return make_record(
        claim, verdict=verdict, statistic_name="lowest within-set correlation among aligned, evaluable pairs",
        statistic=worst["partial_correlation"] if worst else None, threshold=floor, comparison=">=",
        effect=(Effect(name="lowest within-set correlation (BCa, Bonferroni over pairs)",
                       value=worst["partial_correlation"], ci_low=worst["ci_low"], ci_high=worst["ci_high"],
                       ci_level=level) if worst else None),
        reason=(f"{len(offenders)} of {len(rows)} evaluable pairs with cosine >= {min_cos} co-fire less than {floor} "
                f"(upper bound below it); {len(cleared)} clear it; {len(silent)} aligned pairs involve a feature "
                f"silent on these prompts (not evaluable)" + ("" if aligned else "; no aligned pairs at all")),
        details={"n_aligned": len(aligned), "n_evaluable": len(rows), "n_silent": len(silent),
                 "n_cleared": len(cleared), "offenders": offenders,
                 "silent_pairs": [{k: p[k] for k in ("coarse", "fine", "cosine", "fine_fires")} for p in silent],
                 "interval_level": level},
    )


@claim_family("empty_top_left", PARAMS, order=70, decision=decide_empty_top_left)
def test_empty_top_left(claim, analysis, record_claim):
    assert_held(record_claim(decide_empty_top_left(claim, analysis)))
