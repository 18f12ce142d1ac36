"""Steering (phase 2): does adding the anchor's decoder direction change what the model writes?
Phase 2 findings: they never gate the decision (GO) to start Phase 2.

Scores are whole words: P(the word's tokens) x P(the next token ends the word), summed over the
lexicon's spellings, at the same fluency cost for every method (KL at the reply's first token,
matched to within kl_precision on the prompts each method is scored or ranked on).
Kinds, each decided on a BCa interval of a per-prompt mean over the confirmation prompts:
- beats_random: the anchor raises concept words, and beats 99 random directions and 99 random
  decoder rows by exact rank (p <= 0.05), among the controls whose own KL reached the budget;
- specificity: both parts of the statement, under the anchor France words move more than Germany
  words, and more so than under the Germany direction (2 x 2 difference in differences); not
  evaluated when the Germany direction does not raise Germany words (no working contrast);
- multi_vs_single: anchor + discovery-half sub-features beats the anchor alone (KL matched), and
  ranks above the anchor mixed with fine rows matched to the sub-features on decoder cosine (19+
  mixtures); the anchor mixed with the most aligned non-sub-features is shown, not ranked;
- more_targeted: multi raises concept words relative to the other concept's more than the anchor
  does (per prompt, at matched KL);
- concept_rate: share of concept words in sampled continuations, steered vs unsteered;
- versus_baseline: the anchor against DiffMean (both at the budget) or against prompting (the anchor at
  the instruction's own KL, since an instruction has no coefficient).
Either answer is a finding. How the study measures: harness/steering/study.py; how each kind decides: below.
"""

import numpy as np

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Param,
    Section,
    SteeringResult,
    assert_held,
    choices_error,
    claim_family,
    combine,
    decide,
    draw,
    effect_of,
    interval_text,
    make_record,
    mean_interval,
    paired_shift,
    rank_against_controls,
    shift_with_p,
    significant,
)

KINDS = ("beats_random", "specificity", "multi_vs_single", "more_targeted", "concept_rate", "versus_baseline")
BASELINES = ("diffmean", "prompting")
AT_PROMPTING_KL = SteeringResult.AT_PROMPTING_KL  # the study's anchor rescaled to the instruction's KL

PARAMS = {
    "kind": Param(str, choices=KINDS),
    "baseline": Param(str, "diffmean", choices=BASELINES, help="only for kind \"versus_baseline\""),
    "kl_match_tolerance": Param(float, 0.25, low=0.0, high=1.0,
                                help="compared methods must reach the KL budget within this fraction of it"),
    "min_controls": Param(int, 19, low=1, help="controls of a kind that must reach the KL budget for a rank "
                          "(19: the smallest exact rank p is 1/20 = 0.05)"),
}


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class Study:
    """What every kind reads from the study: its directions by kind, per-prompt scores, KL reached, and
    the record's details and the methods found off the KL budget, filled in as the kind decides."""

    def __init__(self, claim: ClaimSpec, analysis: Analysis, study: SteeringResult):
        self.claim, self.analysis, self.study = claim, analysis, study
        self.names: dict[str, str] = {}
        for d in study.directions:
            self.names.setdefault(d.kind, d.name)
        self.anchor = self.names["anchor"]
        self.per = study.per_prompt
        self.kl = study.kl_reached
        self.budget = study.kl_budget
        self.tolerance = claim.param("kl_match_tolerance") * self.budget if self.budget else np.inf
        self.concept, self.other_name = study.lexicons.concept.name, study.lexicons.other.name
        self.details: dict = {"kind": claim.param("kind"), "coefficient": study.chosen_coefficient.get(self.anchor),
                              "kl_budget": self.budget, "kl_reached": {self.anchor: self.kl.get(self.anchor)}}
        self.unmatched: list[str] = []

    def concept_of(self, name: str) -> np.ndarray:
        return np.asarray(self.per[name].concept, dtype=np.float64)

    def other_of(self, name: str) -> np.ndarray:
        return np.asarray(self.per[name].other, dtype=np.float64)

    def controls_of(self, kind: str) -> tuple[list[float], int]:
        """The concept-word shifts of the controls of this kind that reached the KL budget (each one's own
        KL checked, on the control prompts), and how many did not (they are left out of the rank)."""
        block = self.study.controls.by_kind.get(kind)
        if block is None:
            return [], 0
        if not block.kl:  # a study that did not record the controls' KL: all of them
            return list(block.concept_shift), 0
        kept = [shift for shift, kl in zip(block.concept_shift, block.kl, strict=True)
                if abs(kl - self.budget) <= self.tolerance]
        return kept, len(block.concept_shift) - len(kept)

    def screened(self, kind: str) -> int:
        """How many of this kind's controls at the budget hold a bound, not their shift (screened: surely
        below every ranked direction, so the rank is exact but their median is only bounded)."""
        block = self.study.controls.by_kind.get(kind)
        if block is None or not block.exact:
            return 0
        kls = block.kl or [self.budget] * len(block.exact)
        return sum(1 for exact, kl in zip(block.exact, kls, strict=True)
                   if not exact and abs(kl - self.budget) <= self.tolerance)

    def rank(self, name: str, kind: str) -> tuple[str, float, int, list[float], int]:
        """(verdict, exact rank p, controls at least as good, the ranked controls' shifts, controls left out
        off the budget) of method `name`'s shift on the control prompts among this kind's controls;
        inconclusive with fewer than `min_controls` ranked. The method's own KL on those prompts must sit
        at the budget like the controls' (checked when the study records it)."""
        controls = self.study.controls
        mine = controls.on_control_prompts[name]
        if name in controls.on_control_kl:
            self.require_budget(f"{name} on the control prompts", controls.on_control_kl[name])
        shifts, dropped = self.controls_of(kind)
        verdict, p, beaten = rank_against_controls(mine, shifts, self.analysis.alpha)
        if len(shifts) < self.claim.param("min_controls"):
            verdict = "inconclusive"
        return verdict, p, beaten, shifts, dropped

    def require_budget(self, name: str, reached) -> None:
        """Every steered method must sit at the fluency budget; one that does not is not comparable."""
        if reached is None or not abs(reached - self.budget) <= self.tolerance:
            entry = f"{name} at KL {reached if reached is not None else float('nan'):.2f}"
            if entry not in self.unmatched:  # a method ranked among two kinds of control is checked twice
                self.unmatched.append(entry)

    def not_evaluated(self, reason: str, name: str) -> ClaimRecord:
        return make_record(self.claim, verdict="not evaluated", statistic_name=name, statistic=None, threshold=0.0,
                           comparison=">", reason=reason, details=self.details)


class Comparison:
    """One kind's per-prompt effect (decided on below) and the parts it adds: more verdicts that must
    hold (ranks against controls, a first part), a p-value, the reason ({interval} filled in later)."""

    def __init__(self, values, name: str, reason: str, verdicts=(), p_value: float | None = None):
        self.values, self.name, self.reason = np.asarray(values, dtype=np.float64), name, reason
        self.verdicts, self.p_value = list(verdicts), p_value


def beats_random(s: Study) -> Comparison:
    """The anchor raises concept words, and ranks above random directions and random decoder rows."""
    controls = s.study.controls
    mine = controls.on_control_prompts[s.anchor]
    ranks, verdicts = {}, []
    for control_kind, label in (("random", "random directions"), ("random_row", "random decoder rows")):
        verdict, p, beaten, shifts, dropped = s.rank(s.anchor, control_kind)
        n = len(shifts)
        verdicts.append(verdict)
        ranks[control_kind] = {"p": p, "beaten_by": beaten, "n": n, "off_budget": dropped, "label": label,
                               "median": float(np.median(shifts)) if shifts else None,
                               "screened": s.screened(control_kind)}
    s.details.update(ranks=ranks, anchor_on_control_prompts=mine)
    reason = (f"{s.anchor} shifts {s.concept}-word log-prob by {{interval}} nats at KL "
              f"{s.kl.get(s.anchor, float('nan')):.2f}; "
              + "; ".join(f"{r['beaten_by']} of {r['n']} {r['label']} at the budget do as well (rank p = {r['p']:.2g}, "
                          + (f"their median {_num(r['median'])}" if not r["screened"] else
                             f"their median <= {_num(r['median'])}, {r['screened']} bounded by the screen")
                          + f"; {r['off_budget']} off the budget left out"
                          + (f"; fewer than min_controls = {s.claim.param('min_controls')}" if r["n"] < s.claim.param(
                              "min_controls") else "") + ")"
                          for r in ranks.values())
              + f" [on {controls.prompts} prompts]")
    return Comparison(s.concept_of(s.anchor), f"{s.concept}-word log-prob shift, anchor at matched KL (nats)",
                      reason, verdicts, max(r["p"] for r in ranks.values()))


def specificity(s: Study) -> Comparison | ClaimRecord:
    """Both parts: under the anchor concept words move more than the other concept's words, and more so
    than under the other concept's direction (2 x 2 difference in differences)."""
    if "other" not in s.names:
        return s.not_evaluated("no other concept in [steering] (other_concept), so no 2 x 2 design",
                               "difference in differences")
    other = s.names["other"]
    fr_dir = s.concept_of(s.anchor) - s.other_of(s.anchor)
    de_dir = s.concept_of(other) - s.other_of(other)
    s.details.update(other_direction=other, kl_reached={s.anchor: s.kl.get(s.anchor), other: s.kl.get(other)})
    # The contrast direction must work: one that does not raise its own words makes any difference in
    # differences look good (it is a broken control, not evidence of specificity).
    own, own_p = shift_with_p(s.other_of(other), s.analysis)
    s.details["other_raises_own_words"] = {**own.as_dict(), "p": own_p}
    if not (own.low > 0 and significant(own_p, s.analysis.alpha)):
        return s.not_evaluated(f"the {s.other_name} direction {other} does not raise {s.other_name} words "
                               f"({interval_text(own)} nats, sign-flip p = {own_p:.2g}): the 2 x 2 has no working "
                               "contrast direction", "difference in differences")
    # First part of the statement: under the anchor, concept words move more than the other words.
    first_verdict, first, first_p = paired_shift(fr_dir, s.analysis)
    s.details["anchor_prefers_concept_words"] = {**first.as_dict(), "p": first_p, "verdict": first_verdict}
    s.require_budget(other, s.kl.get(other))
    reason = (f"2 x 2 at matched KL: {s.anchor} moves {s.concept} words {np.mean(s.concept_of(s.anchor)):.3f} and "
              f"{s.other_name} words {np.mean(s.other_of(s.anchor)):.3f} ({s.concept} minus {s.other_name} "
              f"{interval_text(first)}, {first_verdict}); {other} moves them "
              f"{np.mean(s.concept_of(other)):.3f} and {np.mean(s.other_of(other)):.3f}; "
              f"difference in differences {{interval}}")
    return Comparison(fr_dir - de_dir, f"difference in differences: ({s.concept} - {s.other_name} words) under "
                      f"{s.anchor} minus under {other}", reason, [first_verdict])


def multi_vs_single(s: Study) -> Comparison | ClaimRecord:
    """Anchor + sub-features beats the anchor alone at matched KL, ranks above the anchor mixed with
    random fine rows, and beats the anchor mixed with aligned rows that are not sub-features."""
    if "multi" not in s.names:
        return s.not_evaluated("the anchor has no sub-features on the discovery half, so there is no "
                               "multi-resolution direction", "multi - single")
    multi, kl = s.names["multi"], s.kl
    verdict, p, beaten, ranked, dropped = s.rank(multi, "control_mixture")
    n_mixtures = len(ranked)
    verdicts = [verdict]
    gap = abs(kl.get(multi, np.nan) - kl.get(s.anchor, np.nan))
    matched = bool(np.isfinite(gap) and gap <= s.tolerance)
    if not matched:
        verdicts.append("inconclusive")
    aligned, aligned_text = s.names.get("aligned_mixture"), ""
    if aligned:
        # Descriptive: the anchor mixed with the most aligned rows that are not sub-features (one fixed
        # set: no distribution to rank against; the cosine-matched mixtures are the control).
        versus_aligned = mean_interval(s.concept_of(multi) - s.concept_of(aligned), s.analysis)
        s.details["versus_aligned_mixture"] = versus_aligned.as_dict()
        aligned_text = (f"; descriptive: multi minus ({aligned}) = {interval_text(versus_aligned)} at KL "
                        f"{kl.get(aligned, float('nan')):.2f}")
    s.details.update(kl_reached={s.anchor: kl.get(s.anchor), multi: kl.get(multi)}, kl_matched=matched,
                     rank={"p": p, "beaten_by": beaten, "n": n_mixtures, "off_budget": dropped},
                     sub_features=s.study.meta.get("sub_features"))
    reason = (f"at KL {kl.get(multi, float('nan')):.2f} (multi) vs {kl.get(s.anchor, float('nan')):.2f} (anchor)"
              f"{'' if matched else ' - not matched within ' + format(s.tolerance, '.2f')}, "
              f"multi minus single = {{interval}} nats; {beaten} of {n_mixtures} anchor + cosine-matched-row "
              f"mixtures at the budget do as well (rank p = {p:.2g}; {dropped} off the budget left out"
              + (f"; fewer than min_controls = {s.claim.param('min_controls')}" if n_mixtures < s.claim.param(
                  "min_controls") else "") + ")" + aligned_text)
    return Comparison(s.concept_of(multi) - s.concept_of(s.anchor),
                      f"multi minus single {s.concept}-word shift at matched KL (nats)", reason, verdicts, p)


def more_targeted(s: Study) -> Comparison | ClaimRecord:
    """Multi is more targeted than the anchor alone: per prompt, (concept - other words) under multi
    minus the same under the anchor, at matched KL."""
    if "multi" not in s.names:
        return s.not_evaluated("the anchor has no sub-features on the discovery half, so there is no "
                               "multi-resolution direction", "targeting: multi - single")
    if not s.study.lexicons.other.words:
        return s.not_evaluated("no other concept's words in [steering] (other_concept_words): nothing to be "
                               "targeted against", "targeting: multi - single")
    multi = s.names["multi"]
    s.require_budget(multi, s.kl.get(multi))
    gap = (s.concept_of(multi) - s.other_of(multi)) - (s.concept_of(s.anchor) - s.other_of(s.anchor))
    s.details.update(kl_reached={s.anchor: s.kl.get(s.anchor), multi: s.kl.get(multi)})
    reason = (f"{s.concept} minus {s.other_name} words: {np.mean(s.concept_of(multi) - s.other_of(multi)):.3f} under "
              f"multi (KL {s.kl.get(multi, float('nan')):.2f}), "
              f"{np.mean(s.concept_of(s.anchor) - s.other_of(s.anchor)):.3f} under {s.anchor} (KL "
              f"{s.kl.get(s.anchor, float('nan')):.2f}); multi minus single {{interval}}")
    return Comparison(gap, f"({s.concept} - {s.other_name} words) under multi minus under the anchor (nats)", reason)


def concept_rate(s: Study) -> Comparison:
    """The share of concept words in sampled continuations, steered minus unsteered."""
    shares = s.study.samples.concept_share
    steered, base = np.asarray(shares[s.anchor], dtype=float), np.asarray(shares["unsteered"], dtype=float)
    reason = (f"{steered.mean():.1%} of the words in steered continuations are {s.concept} words vs "
              f"{base.mean():.1%} unsteered ({len(steered)} prompts x {s.study.samples.max_new_tokens} "
              f"tokens); difference {{interval}}")
    return Comparison(steered - base, f"share of {s.concept} words in sampled continuations, steered minus unsteered",
                      reason)


def versus_baseline(s: Study) -> Comparison | ClaimRecord:
    """The anchor against DiffMean, both at the KL budget, or against prompting (an instruction), with the
    anchor pushed to the instruction's own KL: each comparison at one fluency cost."""
    baseline = s.claim.param("baseline")
    if baseline not in BASELINES:
        raise choices_error("steering baseline", baseline, BASELINES)
    base_name = s.names.get("diffmean") if baseline == "diffmean" else "prompting"
    if base_name not in s.per:
        return s.not_evaluated(f"the study has no {baseline} baseline", "anchor - baseline")
    kl, mine, leak = s.kl, s.anchor, ""
    if baseline == "diffmean":
        s.require_budget(base_name, kl.get(base_name))
    else:
        mine = s.study.first_of_kind(AT_PROMPTING_KL)
        if mine is None or mine not in s.per:
            return s.not_evaluated("the study has no anchor at prompting's KL (a study from before version 5)",
                                   "anchor - baseline")
        target = kl.get(base_name)
        if target is None or not abs(kl.get(mine, np.nan) - target) <= s.claim.param("kl_match_tolerance") * target:
            s.unmatched.append(f"{mine} at KL {kl.get(mine, float('nan')):.2f} vs prompting's {target:.2f}")
        names = s.study.meta.get("instruction_names") or []
        if names:
            leak = (f"; the instruction itself names {', '.join(names)}: part of prompting's shift may be the model "
                    "repeating a word it was given")
    s.details.update(baseline=base_name, compared=mine, kl_reached={mine: kl.get(mine), base_name: kl.get(base_name)},
                     coefficient=s.study.chosen_coefficient.get(mine))
    reason = (f"{mine} shifts {s.concept} words {np.mean(s.concept_of(mine)):.3f} at KL "
              f"{kl.get(mine, float('nan')):.2f}; {base_name} {np.mean(s.concept_of(base_name)):.3f} at KL "
              f"{kl.get(base_name, float('nan')):.2f}; anchor minus baseline {{interval}}{leak}")
    return Comparison(s.concept_of(mine) - s.concept_of(base_name),
                      f"anchor minus {baseline} {s.concept}-word shift at one KL (nats)", reason)


KIND_DECISIONS = {"beats_random": beats_random, "specificity": specificity, "multi_vs_single": multi_vs_single,
                  "more_targeted": more_targeted, "concept_rate": concept_rate, "versus_baseline": versus_baseline}


def decide_steering(claim: ClaimSpec, analysis: Analysis, study: SteeringResult) -> ClaimRecord:
    """Every kind decides on a BCa interval of its per-prompt effect over the confirmation prompts, held
    only if the exact sign-flip test agrees (paired_shift) and every extra part of the kind holds; any
    compared method off the KL budget makes it inconclusive (a bigger shift may be a bigger push)."""
    kind = claim.param("kind")
    if kind not in KINDS:
        raise choices_error("steering kind", kind, KINDS)
    s = Study(claim, analysis, study)
    at_the_budget = kind in ("beats_random", "specificity", "multi_vs_single", "more_targeted") or (
        kind == "versus_baseline" and claim.param("baseline") == "diffmean")  # prompting: at its own KL
    if at_the_budget:
        s.require_budget(s.anchor, s.kl.get(s.anchor))
    comparison = KIND_DECISIONS[kind](s)
    if isinstance(comparison, ClaimRecord):
        return comparison  # not evaluated
    verdicts = list(comparison.verdicts)
    reason_suffix = ""
    if s.unmatched:
        verdicts.append("inconclusive")
        reason_suffix = (f"; not at the KL budget {s.budget:g} +/- {s.tolerance:.3g}: " if at_the_budget else
                         f"; not at one KL (tolerance {claim.param('kl_match_tolerance'):g} of prompting's): ")
        reason_suffix += ", ".join(s.unmatched)
    s.details["kl_unmatched"] = s.unmatched
    shift_verdict, interval, flip_p = paired_shift(comparison.values, analysis)
    p_value = flip_p if comparison.p_value is None else max(comparison.p_value, flip_p)
    reason = comparison.reason.replace("{interval}", interval_text(interval)) + reason_suffix
    verdict = combine(shift_verdict, *verdicts)
    if interval.note:
        # Every resample gave the same mean (e.g. 0 concept words either way): the bootstrap says nothing
        # about uncertainty.
        reason += f"; {interval.note}"
        if verdict == "refuted":
            verdict = "inconclusive"
    if decide(interval.low, interval.high, 0.0, ">") == "held" and not significant(flip_p, analysis.alpha):
        reason += f"; the paired sign-flip test does not confirm it (p = {flip_p:.2g})"
    steerability = study.steerability.get(s.anchor)
    if steerability:
        s.details["anchor_wrong_way_share"] = steerability.wrong_way
    values = comparison.values
    return make_record(
        claim, verdict=verdict, statistic_name=comparison.name, statistic=interval.estimate, threshold=0.0,
        comparison=">", p_value=p_value, effect=effect_of(comparison.name, interval), reason=reason,
        plan=lambda: analysis.plan_mean(values, 0.0, ">", "confirmation"),
        details={**s.details, "n_prompts": int(len(values))},
    )


def report_steering(claims: list[ClaimRecord], ledger) -> Section:
    """The study's figures (dose-response, Pareto, controls, targeting, steerability, samples) and tables."""
    steering = ledger.steering or {}
    return Section("Steering (phase 2)", [draw.steering_figures(steering), *draw.steering_tables(steering)],
                   note=steering.get("description", ""))


@claim_family("steering", PARAMS, order=90, phase="phase 2", report=report_steering, decision=decide_steering,
              groups=(), needs_anchors=True, needs_steering=True)
def test_steering(claim, analysis, steering_study, record_claim):
    assert_held(record_claim(decide_steering(claim, analysis, steering_study)))
