"""Reconstruction: the SAE is an approximation; say how much of the residual it explains
(explained variance) and how much next-token loss it costs (CE-loss score).

Decision (decide_reconstruction, below): both measured on this run's concept and
neutral prompts, each a ratio of sums bootstrapped over prompts; held when both lower bounds clear
their floors (`min_explained_variance`, `min_ce_loss_score`).
"""

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Interval,
    Param,
    assert_held,
    claim_family,
    combine,
    decide,
    effect_of,
    interval_text,
    make_record,
    sae_role,
)

PARAMS = {
    "sae": Param(str, choices=("coarse", "fine"), help="which SAE"),
    "min_explained_variance": Param(float, low=-1.0, high=1.0, help="floor for the explained variance"),
    "min_ce_loss_score": Param(float, low=-1.0, high=1.0, help="floor for the CE-loss score"),
}


def decide_reconstruction(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """Explained variance and CE-loss score, both measured on this run's concept + neutral prompts,
    each decided on its interval (bootstrap over prompts of a ratio of sums)."""
    role = sae_role(claim.param("sae"))
    quality = analysis.tables.meta.get("ce_loss", {}).get(role, {})
    min_ev = float(claim.param("min_explained_variance"))
    min_ce = float(claim.param("min_ce_loss_score"))
    ev = analysis.explained_variance_interval(role)
    ce = analysis.ce_loss_interval(role)
    if ce is None and quality.get("ce_loss_score") is not None:
        point = float(quality["ce_loss_score"])
        ce = Interval(point, point, point, analysis.level, "none", "no per-prompt CE losses: point estimate only")
    ev_verdict = decide(ev.low, ev.high, min_ev, ">=")
    ce_verdict = decide(ce.low, ce.high, min_ce, ">=") if ce is not None else "inconclusive"
    if ce is not None and ce.method == "none" and ce_verdict == "held":
        ce_verdict = "inconclusive"  # a point estimate alone decides nothing
    verdict = combine(ev_verdict, ce_verdict)
    ce_text = interval_text(ce) if ce is not None else "not measured"
    n = int(analysis.evaluation_rows().sum())
    return make_record(
        claim, verdict=verdict, statistic_name="explained variance", statistic=ev.estimate, threshold=min_ev,
        comparison=">=", effect=effect_of(f"explained variance ({ev.method} over prompts)", ev),
        reason=f"explained variance {interval_text(ev)} (floor {min_ev}); CE-loss score {ce_text} (floor {min_ce})",
        plan=(lambda: analysis.plan_explained_variance(role, min_ev)) if ev_verdict != "held" else None,
        decide_from=(ce, min_ce, n) if ev_verdict == "held" and ce is not None else None,
        details={"sae": role, "ce_loss_score": ce.estimate if ce is not None else None,
                 "ce_loss_interval": ce.as_dict() if ce is not None else None, "min_ce_loss_score": min_ce,
                 "ce_source": "this run's concept + neutral prompts",
                 **{k: v for k, v in quality.items() if k.startswith("ce_loss_")},
                 "explained_variance_verdict": ev_verdict, "ce_loss_verdict": ce_verdict,
                 "unexplained_variance": 1 - ev.estimate},
    )


@claim_family("reconstruction", PARAMS, order=40, decision=decide_reconstruction)
def test_reconstruction(claim, analysis, record_claim):
    assert_held(record_claim(decide_reconstruction(claim, analysis)))
