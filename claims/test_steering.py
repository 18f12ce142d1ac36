"""Steering (phase 2): does adding the anchor's decoder direction change what the model writes?
Phase 2 findings: they never gate the decision (GO) to start Phase 2.

Scores are whole words: P(the word's tokens) x P(the next token ends the word), summed over the
lexicon's spellings, at the same fluency cost for every method (KL at the reply's first token,
matched on discovery prompts).
Kinds, each decided on a BCa interval of a per-prompt mean over the confirmation prompts:
- beats_random: the anchor raises concept words, and beats 99 random directions and 99 random
  decoder rows by exact rank (p <= 0.05);
- specificity: both parts of the statement, under the anchor France words move more than Germany
  words, and more so than under the Germany direction (2 x 2 difference in differences); not
  evaluated when the Germany direction does not raise Germany words (no working contrast);
- multi_vs_single: anchor + discovery-half sub-features beats the anchor alone, ranks above the
  anchor mixed with random fine rows, and beats the anchor mixed with aligned rows that are not
  sub-features (KL matched);
- concept_rate: share of concept words in sampled continuations, steered vs unsteered;
- versus_baseline: the anchor against DiffMean or prompting.
Either answer is a finding. How: harness/steering/study.py; verdict rules: harness/engine/claims_engine.py.
"""

import numpy as np

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Param,
    assert_held,
    choices_error,
    claim_family,
    combine,
    decide,
    effect_of,
    interval_text,
    make_record,
    mean_interval,
    paired_shift,
    rank_against_controls,
    shift_with_p,
    significant,
)

KINDS = ("beats_random", "specificity", "multi_vs_single", "concept_rate", "versus_baseline")
BASELINES = ("diffmean", "prompting")

PARAMS = {
    "kind": Param(str, choices=KINDS),
    "baseline": Param(str, "diffmean", choices=BASELINES, help="only for kind \"versus_baseline\""),
    "kl_match_tolerance": Param(float, 0.25, low=0.0, high=1.0,
                                help="compared methods must reach the KL budget within this fraction of it"),
}


def decide_steering(claim: ClaimSpec, analysis: Analysis, study: dict) -> ClaimRecord:
    """Steering claims on word-level scores at matched fluency cost (see harness/steering/study.py).

    Every kind decides on a BCa interval of a per-prompt mean over the confirmation prompts (p from
    sign flips, reported); `beats_random` and `multi_vs_single` must also beat their controls by an
    exact rank test."""
    kind = claim.param("kind")
    if kind not in KINDS:
        raise choices_error("steering kind", kind, KINDS)
    names = {}
    for d in study["directions"]:
        names.setdefault(d["kind"], d["name"])
    anchor = names["anchor"]
    per = study["per_prompt"]
    kl = study.get("kl_reached", {})
    budget = study.get("kl_budget")
    concept = study.get("lexicons", {}).get("concept", {}).get("name", "concept")
    details: dict = {"kind": kind, "coefficient": study["chosen_coefficient"].get(anchor), "kl_budget": budget,
                     "kl_reached": {anchor: kl.get(anchor)}}

    def not_evaluated(reason: str, name: str) -> ClaimRecord:
        return make_record(claim, verdict="not evaluated", statistic_name=name, statistic=None, threshold=0.0,
                           comparison=">", reason=reason, details=details)

    def concept_of(name):
        return np.asarray(per[name]["concept"], dtype=np.float64)

    extra_verdicts: list[str] = []
    p_value = None
    tolerance = claim.param("kl_match_tolerance") * budget if budget else np.inf
    unmatched: list[str] = []

    def require_budget(name: str, reached) -> None:
        """Every steered method must sit at the fluency budget; one that does not is not comparable."""
        if reached is None or not abs(reached - budget) <= tolerance:
            unmatched.append(f"{name} at KL {reached if reached is not None else float('nan'):.2f}")

    if kind in ("beats_random", "specificity", "multi_vs_single", "versus_baseline"):
        require_budget(anchor, kl.get(anchor))
    if kind == "beats_random":
        effect_values = concept_of(anchor)
        effect_name = f"{concept}-word log-prob shift, anchor at matched KL (nats)"
        controls = study["controls"]
        mine = controls["on_control_prompts"][anchor]
        ranks = {}
        for control_kind, label in (("random", "random directions"), ("random_row", "random decoder rows")):
            shifts = controls["by_kind"].get(control_kind, {}).get("concept_shift", [])
            verdict, p, beaten = rank_against_controls(mine, shifts, analysis.alpha)
            extra_verdicts.append(verdict)
            ranks[control_kind] = {"p": p, "beaten_by": beaten, "n": len(shifts), "label": label,
                                   "median": float(np.median(shifts)) if shifts else None}
        p_value = max(r["p"] for r in ranks.values())
        for control_kind, label in (("random", "random directions"), ("random_row", "random decoder rows")):
            control_kl = controls["by_kind"].get(control_kind, {}).get("kl", [])
            if control_kl:
                require_budget(f"the {label} (median)", float(np.median(control_kl)))
        reason = (f"{anchor} shifts {concept}-word log-prob by {{interval}} nats at KL {kl.get(anchor, float('nan')):.2f}; "
                  + "; ".join(f"{r['beaten_by']} of {r['n']} {r['label']} do as well (rank p = {r['p']:.2g}, their "
                              f"median {r['median']:.3f})" for r in ranks.values())
                  + f" [on {controls['prompts']} prompts]")
        details.update(ranks=ranks, anchor_on_control_prompts=mine)
    elif kind == "specificity":
        if "other" not in names:
            return not_evaluated("no other concept in [steering] (other_concept), so no 2 x 2 design",
                                 "difference in differences")
        other = names["other"]
        other_name = study.get("lexicons", {}).get("other", {}).get("name", "other")
        fr_dir = concept_of(anchor) - np.asarray(per[anchor]["other"])
        de_dir = concept_of(other) - np.asarray(per[other]["other"])
        details.update(other_direction=other, kl_reached={anchor: kl.get(anchor), other: kl.get(other)})
        # The contrast direction must work: one that does not raise its own words makes any difference
        # in differences look good (it is a broken control, not evidence of specificity).
        own, own_p = shift_with_p(np.asarray(per[other]["other"], dtype=np.float64), analysis)
        details["other_raises_own_words"] = {**own.as_dict(), "p": own_p}
        if not (own.low > 0 and significant(own_p, analysis.alpha)):
            return not_evaluated(f"the {other_name} direction {other} does not raise {other_name} words "
                                 f"({interval_text(own)} nats, sign-flip p = {own_p:.2g}): the 2 x 2 has no working "
                                 "contrast direction", "difference in differences")
        # First part of the statement: under the anchor, concept words move more than the other words.
        first_verdict, first, first_p = paired_shift(fr_dir, analysis)
        extra_verdicts.append(first_verdict)
        details["anchor_prefers_concept_words"] = {**first.as_dict(), "p": first_p, "verdict": first_verdict}
        effect_values = fr_dir - de_dir
        effect_name = f"difference in differences: ({concept} - {other_name} words) under {anchor} minus under {other}"
        reason = (f"2 x 2 at matched KL: {anchor} moves {concept} words {np.mean(concept_of(anchor)):.3f} and "
                  f"{other_name} words {np.mean(per[anchor]['other']):.3f} ({concept} minus {other_name} "
                  f"{interval_text(first)}, {first_verdict}); {other} moves them "
                  f"{np.mean(concept_of(other)):.3f} and {np.mean(per[other]['other']):.3f}; "
                  f"difference in differences {{interval}}")
        require_budget(other, kl.get(other))
    elif kind == "multi_vs_single":
        if "multi" not in names:
            return not_evaluated("the anchor has no sub-features on the discovery half, so there is no "
                                 "multi-resolution direction", "multi - single")
        multi = names["multi"]
        effect_values = concept_of(multi) - concept_of(anchor)
        effect_name = f"multi minus single {concept}-word shift at matched KL (nats)"
        controls = study["controls"]
        mixtures = controls["by_kind"].get("control_mixture", {}).get("concept_shift", [])
        verdict, p, beaten = rank_against_controls(controls["on_control_prompts"][multi], mixtures, analysis.alpha)
        extra_verdicts.append(verdict)
        p_value = p
        gap = abs(kl.get(multi, np.nan) - kl.get(anchor, np.nan))
        matched = bool(np.isfinite(gap) and gap <= tolerance)
        if not matched:
            extra_verdicts.append("inconclusive")
        aligned = names.get("aligned_mixture")
        aligned_text = ""
        if aligned:
            # Is it the sub-features, or any aligned fine rows? Multi must beat the anchor mixed with
            # the most aligned rows that are not sub-features, prompt by prompt.
            versus_aligned = mean_interval(concept_of(multi) - concept_of(aligned), analysis)
            extra_verdicts.append(decide(versus_aligned.low, versus_aligned.high, 0.0, ">"))
            details["versus_aligned_mixture"] = versus_aligned.as_dict()
            aligned_text = (f"; multi minus ({aligned}) = {interval_text(versus_aligned)} at KL "
                            f"{kl.get(aligned, float('nan')):.2f}")
        reason = (f"at KL {kl.get(multi, float('nan')):.2f} (multi) vs {kl.get(anchor, float('nan')):.2f} (anchor)"
                  f"{'' if matched else ' - not matched within ' + format(tolerance, '.2f')}, "
                  f"multi minus single = {{interval}} nats; {beaten} of {len(mixtures)} anchor + random-row mixtures "
                  f"do as well (rank p = {p:.2g})" + aligned_text)
        details.update(kl_reached={anchor: kl.get(anchor), multi: kl.get(multi)}, kl_matched=matched,
                       rank={"p": p, "beaten_by": beaten, "n": len(mixtures)},
                       sub_features=study.get("meta", {}).get("sub_features"))
    elif kind == "concept_rate":
        shares = study["samples"]["concept_share"]
        steered, base = np.asarray(shares[anchor], dtype=float), np.asarray(shares["unsteered"], dtype=float)
        effect_values = steered - base
        effect_name = f"share of {concept} words in sampled continuations, steered minus unsteered"
        reason = (f"{steered.mean():.1%} of the words in steered continuations are {concept} words vs "
                  f"{base.mean():.1%} unsteered ({len(steered)} prompts x {study['samples']['max_new_tokens']} "
                  f"tokens); difference {{interval}}")
    else:  # versus_baseline
        baseline = claim.param("baseline")
        if baseline not in BASELINES:
            raise choices_error("steering baseline", baseline, BASELINES)
        base_name = names.get("diffmean") if baseline == "diffmean" else "prompting"
        if base_name not in per:
            return not_evaluated(f"the study has no {baseline} baseline", "anchor - baseline")
        effect_values = concept_of(anchor) - concept_of(base_name)
        effect_name = f"anchor minus {baseline} {concept}-word shift (nats)"
        reason = (f"{anchor} shifts {concept} words {np.mean(concept_of(anchor)):.3f} at KL "
                  f"{kl.get(anchor, float('nan')):.2f}; {base_name} {np.mean(concept_of(base_name)):.3f} at KL "
                  f"{kl.get(base_name, float('nan')):.2f}"
                  f"{' (an instruction has no coefficient: its KL is what it is)' if baseline == 'prompting' else ''}; "
                  f"anchor minus baseline {{interval}}")
        details.update(baseline=base_name, kl_reached={anchor: kl.get(anchor), base_name: kl.get(base_name)})
        if baseline == "diffmean":
            require_budget(base_name, kl.get(base_name))
    if unmatched:
        # Compared at different fluency costs, a bigger shift may only mean a bigger push.
        extra_verdicts.append("inconclusive")
        reason_suffix = f"; not at the KL budget {budget:g} +/- {tolerance:.3g}: " + ", ".join(unmatched)
    else:
        reason_suffix = ""
    details["kl_unmatched"] = unmatched
    shift_verdict, interval, flip_p = paired_shift(effect_values, analysis)
    p_value = flip_p if p_value is None else max(p_value, flip_p)
    reason = reason.replace("{interval}", interval_text(interval)) + reason_suffix
    verdict = combine(shift_verdict, *extra_verdicts)
    if interval.note:
        # Every resample gave the same mean (e.g. 0 concept words either way): the bootstrap says
        # nothing about uncertainty.
        reason += f"; {interval.note}"
        if verdict == "refuted":
            verdict = "inconclusive"
    if decide(interval.low, interval.high, 0.0, ">") == "held" and not significant(flip_p, analysis.alpha):
        reason += f"; the paired sign-flip test does not confirm it (p = {flip_p:.2g})"
    steerability = study.get("steerability", {}).get(anchor)
    if steerability:
        details["anchor_wrong_way_share"] = steerability["wrong_way"]
    return make_record(
        claim, verdict=verdict, statistic_name=effect_name, statistic=interval.estimate, threshold=0.0,
        comparison=">", p_value=p_value, effect=effect_of(effect_name, interval), reason=reason,
        plan=lambda: analysis.plan_mean(effect_values, 0.0, ">", "confirmation"),
        details={**details, "n_prompts": int(len(effect_values))},
    )


@claim_family("steering", PARAMS, decision=decide_steering, groups=(), needs_anchors=True, needs_steering=True)
def test_steering(claim, analysis, steering_study, record_claim):
    assert_held(record_claim(decide_steering(claim, analysis, steering_study)))
