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

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    ConfigError,
    Param,
    Section,
    assert_held,
    check_gate_spec,
    claim_family,
    control_gate,
    describe_anchor,
    draw,
    gate_decision,
    make_record,
)

PARAMS = {
    "min_sub_features": Param(int, 3, low=1, help="true sub-features an anchor needs (the seed: 3)"),
    "min_selectivity": Param(float, 0.5, low=0.0, high=1.0, help="the anchor must be selective beyond this "
                             "(0.5: it prefers the concept; a threshold claim like > 0.9 is a finding)"),
    "against": Param(str, "neutral", choices=("neutral", "near_miss")),
    "min_cosine": Param(float, 0.3, low=-1.0, high=1.0, pair_cutoff="scan", help="decoder cosine a sub-feature needs"),
    "geometry": Param(str, "count", choices=("count", "crowd_and_count", "none"),
                      help="how the cutoff must be meaningful against directions with the decoder's covariance"),
    "control": Param(bool, True, help="GO also needs NO-GO on a random SAE of the same shape"),
}


def decide_go_gate(claim: ClaimSpec, analysis: Analysis, control: Analysis | None = None) -> ClaimRecord:
    """GO for the steering study: the seed's Phase 1 rule, decided as one test (harness.engine.gate).

    Some anchor prefers the concept, has more fine rows beyond the cutoff than null directions, and
    has at least `min_sub_features` true sub-features by a simultaneous lower bound; with `control`,
    the same rule must say NO-GO on a random SAE of the same shape (anchors re-picked on it)."""
    check_gate_spec(claim)
    need = int(claim.param("min_sub_features"))
    decision = gate_decision(analysis, claim)
    parts = decision["anchors"]
    best = max(parts, key=lambda p: (p["verdict"] == "held", p["sub_features"]["lower_bound"]), default=None)
    verdict = decision["verdict"]
    control_decision = None
    if claim.param("control"):
        if control is None:
            raise ConfigError(f"claim {claim.claim_id!r} requires the random-SAE control (control = true) and none "
                              "was given; pass control= or set control = false on the claim")
        control_decision = control_gate(control, claim, max(1, len(analysis.anchors)))
    held_anchors = [p for p in parts if p["verdict"] == "held"]
    if not parts:
        reason = "no coarse anchors registered"
    elif held_anchors:
        reason = "GO through " + "; ".join(describe_anchor(p) for p in held_anchors)
    else:
        reason = "no anchor passes the rule: " + "; ".join(describe_anchor(p) for p in parts)
    reason += f" (each anchor at alpha {decision['alpha_per_anchor'] or analysis.alpha:.3g}, Bonferroni over {len(parts)})"
    if control_decision is not None:
        control_go = control_decision["verdict"] == "held"
        picked = ", ".join(f"coarse-{x}" for x in control_decision.get("picked", [])) or "none"
        reason += (f"; random-SAE control: {'GO' if control_go else 'NO-GO'} (anchors re-picked on it: {picked}"
                   + (f"; {control_decision['reason']}" if control_decision.get("reason") else "") + ")")
        if control_go and verdict == "held":
            verdict = "inconclusive"
            reason += ("; GO refused: the rule also says GO on a random SAE of the same shape, so it cannot tell "
                       "this SAE's structure from chance geometry")
    return make_record(
        claim, verdict=verdict, statistic_name="true sub-features of the best anchor (simultaneous lower bound)",
        statistic=float(best["sub_features"]["lower_bound"]) if best else 0.0, threshold=float(need),
        comparison=">=", reason=reason,
        details={"rule": gate_rule_text(claim), "anchors": parts, "alpha_per_anchor": decision["alpha_per_anchor"],
                 "best_anchor": best["anchor"] if best else None,
                 "control": control_decision, "control_required": bool(claim.param("control"))},
    )


def gate_rule_text(claim: ClaimSpec) -> str:
    geometry = {"count": "more fine rows reach the cutoff than null directions do",
                "crowd_and_count": "null directions stay below the cutoff and fewer reach it than the anchor's rows",
                "none": "no geometry condition"}[claim.param("geometry")]
    text = (f"GO when some coarse anchor has selectivity > {claim.param('min_selectivity'):g} against "
            f"{claim.param('against').replace('_', '-')} prompts, {geometry} (cosine >= {claim.param('min_cosine'):g}), "
            f"and at least {claim.param('min_sub_features')} true sub-features (simultaneous lower bound, step-down "
            "min-P over within-set co-firing)")
    return text + ("; and the same rule says NO-GO on a random SAE of the same shape" if claim.param("control") else "")


def report_go_gate(claims: list[ClaimRecord], ledger) -> Section:
    """Shown under the gate at the top of the report: each anchor's three parts, and the control's."""
    control = claims[0].details.get("control") if claims else None
    parts = [draw.gate_anchor_table(ledger.gate, control)]
    if ledger.gate.get("control_required"):
        parts.append("Control: random SAEs of the same shape (tied TopK, decoder rows drawn with the trained "
                     "decoder's mean and covariance, the trained norms, k = the trained L0), anchors re-picked on "
                     "them as discovery picks anchors. GO needs the control to say NO-GO. Every claim below also "
                     "shows its verdict on the control (\"on random SAE\").")
    alpha = ledger.gate.get("alpha_per_anchor")
    return Section("The gate's anchors", parts, lead=True, note=(
        "Each anchor's three parts are tested at alpha / (number of anchors)"
        + (f" = {alpha:.4f}" if alpha is not None else "") + " and must all hold; GO through any anchor. The count "
        "is a simultaneous lower bound on true sub-features (step-down min-P over the shared within-set shuffles: "
        "closed testing), so \"at least 3\" is wrong at most alpha of the time; Benjamini-Hochberg discoveries are "
        "shown for comparison and never counted."))


@claim_family("go_gate", PARAMS, order=0, go_rule=True, report=report_go_gate, decision=decide_go_gate,
              gating=True, needs_anchors=True, needs_control=True)
def test_go_gate(claim, analysis, control_analysis, record_claim):
    assert_held(record_claim(decide_go_gate(claim, analysis, control_analysis)))
