"""Claim families: each turns a ClaimSpec and the session's Analysis into a ClaimRecord.

Every family decides on an interval, never on a point estimate: held (the interval clears the
threshold), refuted (it lies wholly on the wrong side), inconclusive (it straddles; the record
says how many prompts per set would decide it). The same functions serve `pytest claims/`,
`python -m harness calibrate` and discovery.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.engine.analysis import FEW_FIRINGS, Analysis
from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError, choices_error
from harness.core.families import Param, register_family, require_family
from harness.outputs.ledger import ClaimRecord, Effect
from harness.statistics.planning import PromptPlan
from harness.statistics.stats import (
    Interval,
    bootstrap_interval,
    combine,
    decide,
    paired_sign_flip_test,
    prompts_to_decide,
    quantile_interval,
    selectivity,
)


def _feature(analysis: Analysis, role: str, feature) -> int:
    d_sae = analysis.acts(role).shape[1]
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < d_sae:
        raise ConfigError(f"feature {feature!r} is not an index of the {role} SAE; valid: 0..{d_sae - 1}")
    return feature


def _role(value) -> str:
    if value not in ("coarse", "fine"):
        raise choices_error("sae", value, ("coarse", "fine"))
    return value


def _effect(name: str, interval: Interval) -> Effect:
    return Effect(name=name, value=interval.estimate, ci_low=interval.low, ci_high=interval.high,
                  ci_level=interval.level)


def mean_interval(values, analysis: Analysis) -> Interval:
    """BCa interval of a mean over prompts, at the analysis's level and seed."""
    return analysis.mean_interval(values)


def difference_interval(group, other, analysis: Analysis) -> Interval:
    """BCa interval of mean(group) - mean(other), each resampled within itself."""
    x, y = np.asarray(group, dtype=np.float64), np.asarray(other, dtype=np.float64)
    return bootstrap_interval(lambda i, j: x[i].mean(-1) - y[j].mean(-1), [np.arange(x.size), np.arange(y.size)],
                              n_resamples=analysis.n_bootstrap, seed=analysis.seed, level=analysis.level)


def _interval_text(interval: Interval) -> str:
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def make_record(spec: ClaimSpec, *, verdict: str, statistic_name: str, statistic, threshold, comparison: str,
                reason: str, effect: Effect | None = None, p_value=None, q_value=None, details: dict | None = None,
                decide_from: tuple[Interval, float, int] | None = None, by_construction: bool = False,
                plan: Callable[[], PromptPlan | None] | None = None) -> ClaimRecord:
    """A ledger record. For an inconclusive claim, `plan` (simulated through the claim's own interval)
    or else `decide_from` = (interval, threshold, prompts per set) estimates the prompts that would decide it."""
    needed, by_set, now = None, None, None
    if verdict == "inconclusive" and plan is not None:
        planned = plan()
        if planned is not None:
            by_set, now, needed = planned.needed, {k: planned.now[k] for k in planned.needed}, max(planned.needed.values())
    elif verdict == "inconclusive" and decide_from is not None:
        needed = prompts_to_decide(*decide_from)
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name=statistic_name,
        statistic=None if statistic is None else float(statistic), threshold=None if threshold is None else float(threshold),
        comparison=comparison, p_value=p_value, q_value=q_value, effect=effect, passed=verdict == "held",
        verdict=verdict, prompts_to_decide=needed, prompts_needed=by_set, prompts_now=now,
        by_construction=by_construction, reason=reason,
        gating=spec.is_gating, details=details or {},
    )


def selectivity_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """Selectivity > tau, tested as stated: H0 selectivity <= tau, decided on the interval's lower bound."""
    role = _role(spec.param("sae"))
    feature = _feature(a, role, spec.param("feature"))
    against = spec.param("against")
    if against not in ("neutral", "near_miss"):
        raise choices_error("against", against, ("neutral", "near_miss"))
    tau = float(spec.param("min_selectivity"))
    interval = a.selectivity_interval(role, feature, against)
    no_preference = a.selectivity_test(role, np.array([feature]), against)
    summary = a.feature_summary(role, np.array([feature]), against)
    n_c, n_o = int(a.group("concept").sum()), int(a.group(against).sum())
    verdict = decide(interval.low, interval.high, tau, ">")
    p = float(no_preference.p_value[0])
    return make_record(
        spec, verdict=verdict, statistic_name="selectivity", statistic=interval.estimate, threshold=tau,
        comparison=">", p_value=p, effect=_effect(f"selectivity ({interval.method}, {interval.level:.0%})", interval),
        reason=(f"selectivity {_interval_text(interval)} vs {against.replace('_', '-')} prompts against the bar "
                f"{tau} ({n_c} concept, {n_o} {against.replace('_', '-')} prompts; p of no preference = {p:.2g})"
                + (f"; {interval.note}" if interval.note else "")),
        plan=lambda: a.plan_selectivity(role, feature, against, tau),
        details={"sae": role, "feature": feature, "against": against, "split": a.split_of("concept"),
                 "mean_concept": float(summary["mean_concept"][0]), "mean_other": float(summary["mean_other"][0]),
                 "auroc": float(summary["auroc"][0]), "fire_concept": float(summary["fire_concept"][0]),
                 "fire_other": float(summary["fire_other"][0]),
                 "fire_rate_difference": float(summary["fire_concept"][0] - summary["fire_other"][0]),
                 "interval_method": interval.method, "interval_note": interval.note,
                 "n_concept": n_c, "n_other": n_o},
    )


def loud_unselective_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """The loud feature writes more into the residual stream on concept prompts than the anchor
    (or fires harder, with units = "activation"), yet is less selective. Both parts on intervals."""
    role = _role(spec.param("sae"))
    loud = _feature(a, role, spec.param("loud"))
    anchor = _feature(a, role, spec.param("anchor"))
    units = spec.param("units")
    if units not in ("residual", "activation"):
        raise choices_error("units", units, ("residual", "activation"))
    concept, neutral = np.flatnonzero(a.group("concept")), np.flatnonzero(a.group("neutral"))
    x = a.acts(role)
    norms = a.decoder_norms.get(role)
    scale_loud, scale_anchor = (1.0, 1.0)
    if units == "residual":
        if norms is None:
            raise ConfigError(f"claim {spec.claim_id!r} compares residual-stream writes but the analysis has no "
                              "decoder norms; set units = \"activation\" or build the Analysis with decoder_norms")
        scale_loud, scale_anchor = float(norms[loud]), float(norms[anchor])
    difference = x[concept, loud] * scale_loud - x[concept, anchor] * scale_anchor
    louder = bootstrap_interval(lambda i: difference[i].mean(-1), [np.arange(difference.size)],
                                n_resamples=a.n_bootstrap, seed=a.seed, level=a.level)
    louder_p = float(paired_sign_flip_test(difference, n_resamples=a.n_permutations, seed=a.seed).p_value[0])

    def sel_gap(c, n):
        return (selectivity(x[c, anchor].mean(-1), x[n, anchor].mean(-1))
                - selectivity(x[c, loud].mean(-1), x[n, loud].mean(-1)))

    gap = bootstrap_interval(sel_gap, [concept, neutral], n_resamples=a.n_bootstrap, seed=a.seed, level=a.level)
    if int((x[neutral, anchor] > 0).sum()) < FEW_FIRINGS or int((x[neutral, loud] > 0).sum()) < FEW_FIRINGS:
        # Few neutral firings: the bootstrap cannot see the firings that did not happen. Bound the gap
        # by the two guarded selectivity intervals instead (anchor's lower minus loud's upper).
        anchor_sel = a.selectivity_interval(role, anchor, "neutral")
        loud_sel = a.selectivity_interval(role, loud, "neutral")
        gap = Interval(gap.estimate, min(gap.low, anchor_sel.low - loud_sel.high),
                       max(gap.high, anchor_sel.high - loud_sel.low), gap.level, "BCa + Clopper-Pearson",
                       "few neutral firings: bounded by the guarded selectivity intervals")
    verdict = combine(decide(louder.low, louder.high, 0.0, ">"), decide(gap.low, gap.high, 0.0, ">"))
    what = "residual-stream write (activation x decoder norm)" if units == "residual" else "activation"
    raw = {f: float(x[concept, f].mean()) for f in (loud, anchor)}
    return make_record(
        spec, verdict=verdict, statistic_name=f"mean {what} gap (loud - anchor)", statistic=louder.estimate,
        threshold=0.0, comparison=">", p_value=louder_p,
        effect=_effect("selectivity gap (anchor - loud)", gap),
        reason=(f"{role}-{loud} minus {role}-{anchor} on concept prompts, {what}: {_interval_text(louder)} "
                f"(paired p = {louder_p:.2g}); selectivity gap {_interval_text(gap)}"),
        decide_from=(louder if decide(louder.low, louder.high, 0.0, ">") != "held" else gap, 0.0,
                     min(concept.size, neutral.size)),
        details={"sae": role, "loud": loud, "anchor": anchor, "units": units,
                 "loudness_gap": louder.as_dict(), "selectivity_gap": gap.as_dict(),
                 "mean_concept_loud": raw[loud], "mean_concept_anchor": raw[anchor],
                 "decoder_norm_loud": scale_loud if units == "residual" else None,
                 "decoder_norm_anchor": scale_anchor if units == "residual" else None,
                 "mean_write_loud": raw[loud] * scale_loud, "mean_write_anchor": raw[anchor] * scale_anchor,
                 "selectivity_loud": float(selectivity(x[concept, loud].mean(), x[neutral, loud].mean())),
                 "selectivity_anchor": float(selectivity(x[concept, anchor].mean(), x[neutral, anchor].mean()))},
    )


def sparsity_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """L0 / width below a fraction, on the interval's upper bound. For TopK SAEs L0 = k by construction."""
    role = _role(spec.param("sae"))
    width = a.acts(role).shape[1]
    max_fraction = float(spec.param("max_l0_fraction"))
    interval = a.l0_interval(role)
    fraction = Interval(interval.estimate / width, interval.low / width, interval.high / width, interval.level,
                        interval.method, interval.note)
    info = a.sae_info.get(role, {})
    by_construction = str(info.get("architecture", "")).lower() == "topk"
    verdict = decide(fraction.low, fraction.high, max_fraction, "<")
    note = (f"; TopK with k = {info.get('k')}: L0 = k by construction, not a finding" if by_construction else "")
    return make_record(
        spec, verdict=verdict, statistic_name="L0 / width", statistic=fraction.estimate, threshold=max_fraction,
        comparison="<", effect=_effect("L0 (features firing per token)", interval), by_construction=by_construction,
        reason=(f"L0 {_interval_text(interval)} of {width} = {fraction.estimate:.2%} (limit {max_fraction:.2%})"
                + note),
        decide_from=(fraction, max_fraction, int(a.evaluation_rows().sum())),
        details={"sae": role, "width": width, "l0": interval.estimate, "architecture": info.get("architecture"),
                 "tokens": int(a.tables.n_tokens[a.evaluation_rows()].sum())},
    )


def reconstruction_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """Explained variance and CE-loss score, both measured on this run's concept + neutral prompts,
    each decided on its interval (bootstrap over prompts of a ratio of sums)."""
    role = _role(spec.param("sae"))
    quality = a.tables.meta.get("ce_loss", {}).get(role, {})
    min_ev = float(spec.param("min_explained_variance"))
    min_ce = float(spec.param("min_ce_loss_score"))
    ev = a.explained_variance_interval(role)
    ce = a.ce_loss_interval(role)
    if ce is None and quality.get("ce_loss_score") is not None:
        point = float(quality["ce_loss_score"])
        ce = Interval(point, point, point, a.level, "none", "no per-prompt CE losses: point estimate only")
    ev_verdict = decide(ev.low, ev.high, min_ev, ">=")
    ce_verdict = decide(ce.low, ce.high, min_ce, ">=") if ce is not None else "inconclusive"
    if ce is not None and ce.method == "none" and ce_verdict == "held":
        ce_verdict = "inconclusive"  # a point estimate alone decides nothing
    verdict = combine(ev_verdict, ce_verdict)
    ce_text = _interval_text(ce) if ce is not None else "not measured"
    n = int(a.evaluation_rows().sum())
    return make_record(
        spec, verdict=verdict, statistic_name="explained variance", statistic=ev.estimate, threshold=min_ev,
        comparison=">=", effect=_effect(f"explained variance ({ev.method} over prompts)", ev),
        reason=f"explained variance {_interval_text(ev)} (floor {min_ev}); CE-loss score {ce_text} (floor {min_ce})",
        plan=(lambda: a.plan_explained_variance(role, min_ev)) if ev_verdict != "held" else None,
        decide_from=(ce, min_ce, n) if ev_verdict == "held" and ce is not None else None,
        details={"sae": role, "ce_loss_score": ce.estimate if ce is not None else None,
                 "ce_loss_interval": ce.as_dict() if ce is not None else None, "min_ce_loss_score": min_ce,
                 "ce_source": "this run's concept + neutral prompts",
                 **{k: v for k, v in quality.items() if k.startswith("ce_loss_")},
                 "explained_variance_verdict": ev_verdict, "ce_loss_verdict": ce_verdict,
                 "unexplained_variance": 1 - ev.estimate},
    )


def geometry_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """The seed: "0.3 is where the crowd ends and the signal begins", as two tested parts.

    (a) the cutoff exceeds the `quantile` quantile of the largest cosine that null directions reach
        with all fine rows (null directions share the fine decoder's covariance; the quantile's
        interval comes from order statistics over the null draws);
    (b) the anchor has more fine rows beyond the cutoff than null directions do (rank p over the
        null draws: one count per direction, never millions of cosines treated as independent).
    """
    anchor = _feature(a, "coarse", spec.param("anchor"))
    cutoff, quantile = float(spec.param("cutoff")), float(spec.param("quantile"))
    if not 0 < quantile < 1:
        raise ConfigError(f"claim {spec.claim_id!r}: quantile {quantile} must lie in (0, 1)")
    cos = a.anchor_cosines(anchor)
    null = a.geometry_null(cutoff)
    crowd, crowd_low, crowd_high = quantile_interval(null.max_cosine, quantile, level=a.level)
    crowd_verdict = decide(crowd_low, crowd_high, cutoff, "<")
    beyond = int((cos >= cutoff).sum())
    p_count = (1 + int((null.count_beyond >= beyond).sum())) / (1 + null.count_beyond.size)
    if p_count < a.alpha:
        count_verdict = "held"
    elif beyond <= float(np.median(null.count_beyond)):
        count_verdict = "refuted"  # no more aligned rows than a direction unrelated to the dictionary
    else:
        count_verdict = "inconclusive"
    verdict = combine(crowd_verdict, count_verdict)
    all_counts = a.coarse_counts_beyond(cutoff)
    percentile = float((all_counts < beyond).mean())
    n_coarse = a.directions["coarse"].shape[0]
    counted = "all" if all_counts.size == n_coarse else f"{all_counts.size:,} sampled"
    return make_record(
        spec, verdict=verdict, statistic_name=f"{quantile:.0%} quantile of the null's largest cosine",
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


def _anchor_pairs(a: Analysis, anchor: int) -> dict[str, list[dict]]:
    pairs = [p for p in a.pair_table() if p["coarse"] == anchor]
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


def sub_features_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """At least `min_count` fine rows with cosine >= the cutoff co-fire with the anchor within prompt sets
    (BH over the cosine-qualified, evaluable pairs only)."""
    anchor = _feature(a, "coarse", spec.param("anchor"))
    min_count = int(spec.param("min_count"))
    groups = _anchor_pairs(a, anchor)
    subs, plausible = groups["sub_features"], _plausible(groups)
    if len(subs) >= min_count:
        verdict = "held"
    elif plausible + len(groups["silent"]) < min_count:
        verdict = "refuted"  # even every plausible and every untestable row would not reach the count
    else:
        verdict = "inconclusive"
    qs = [p["q_value"] for p in groups["evaluable"] if p["q_value"] is not None]
    return make_record(
        spec, verdict=verdict, statistic_name="sub-features", statistic=float(len(subs)), threshold=float(min_count),
        comparison=">=", q_value=min(qs) if qs else None,
        reason=(f"{len(subs)} of {len(groups['evaluable'])} evaluable fine rows with cosine >= "
                f"{spec.param('min_cosine')} co-fire within prompt sets (BH q < {a.alpha}); "
                f"{len(groups['silent'])} more are silent on these prompts (not evaluable); "
                f"{plausible} have a positive within-set correlation"),
        details={"anchor": anchor, "sub_features": subs, "candidates": groups["qualified"],
                 "n_evaluable": len(groups["evaluable"]), "n_silent": len(groups["silent"]),
                 "n_plausible": plausible, "display_only": len(groups["display_only"]),
                 "co_firing_statistic": "correlation within prompt sets (partial r given the set), "
                                        "within-set permutation p"},
    )


def empty_top_left_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """No evaluable pair points the same way (cosine >= min_cosine) without co-firing.

    Each aligned, evaluable pair gets a BCa interval of its within-set correlation (prompts
    resampled within sets; Bonferroni over the pairs). An offender is a pair whose upper bound lies
    below the floor; held when every pair's lower bound clears it. A pair with a feature silent on
    these prompts is not evaluable: counted apart, never an offender.
    """
    min_cos, floor = float(spec.param("min_cosine")), float(spec.param("min_correlation"))
    aligned = [p for p in a.pair_table() if p["cosine"] >= min_cos]
    silent = [p for p in aligned if p["silent"] or p["partial_correlation"] is None]
    evaluable = [p for p in aligned if not (p["silent"] or p["partial_correlation"] is None)]
    level = 1 - a.alpha / max(1, len(evaluable))
    bounds = a.partial_correlation_bounds(evaluable, level) if evaluable else {}
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
        spec, verdict=verdict, statistic_name="lowest within-set correlation among aligned, evaluable pairs",
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


def go_gate_claim(spec: ClaimSpec, a: Analysis, control: Analysis | None = None) -> ClaimRecord:
    """GO for the steering study: the seed's Phase 1 rule, decided as one test (harness.engine.gate).

    Some anchor prefers the concept, has more fine rows beyond the cutoff than null directions, and
    has at least `min_sub_features` true sub-features by a simultaneous lower bound; with `control`,
    the same rule must say NO-GO on a random SAE of the same shape (anchors re-picked on it)."""
    from harness.engine.gate import check_gate_spec, control_gate, describe_anchor, gate_decision

    check_gate_spec(spec)
    need = int(spec.param("min_sub_features"))
    decision = gate_decision(a, spec)
    parts = decision["anchors"]
    best = max(parts, key=lambda p: (p["verdict"] == "held", p["sub_features"]["lower_bound"]), default=None)
    verdict = decision["verdict"]
    control_decision = None
    if spec.param("control"):
        if control is None:
            raise ConfigError(f"claim {spec.claim_id!r} requires the random-SAE control (control = true) and none "
                              "was given; pass control= or set control = false on the claim")
        control_decision = control_gate(control, spec, max(1, len(a.anchors)))
    held_anchors = [p for p in parts if p["verdict"] == "held"]
    if not parts:
        reason = "no coarse anchors registered"
    elif held_anchors:
        reason = "GO through " + "; ".join(describe_anchor(p) for p in held_anchors)
    else:
        reason = "no anchor passes the rule: " + "; ".join(describe_anchor(p) for p in parts)
    reason += f" (each anchor at alpha {decision['alpha_per_anchor'] or a.alpha:.3g}, Bonferroni over {len(parts)})"
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
        spec, verdict=verdict, statistic_name="true sub-features of the best anchor (simultaneous lower bound)",
        statistic=float(best["sub_features"]["lower_bound"]) if best else 0.0, threshold=float(need),
        comparison=">=", reason=reason,
        details={"rule": gate_rule_text(spec), "anchors": parts, "alpha_per_anchor": decision["alpha_per_anchor"],
                 "best_anchor": best["anchor"] if best else None,
                 "control": control_decision, "control_required": bool(spec.param("control"))},
    )


def gate_rule_text(spec: ClaimSpec) -> str:
    geometry = {"count": "more fine rows reach the cutoff than null directions do",
                "crowd_and_count": "null directions stay below the cutoff and fewer reach it than the anchor's rows",
                "none": "no geometry condition"}[spec.param("geometry")]
    text = (f"GO when some coarse anchor has selectivity > {spec.param('min_selectivity'):g} against "
            f"{spec.param('against').replace('_', '-')} prompts, {geometry} (cosine >= {spec.param('min_cosine'):g}), "
            f"and at least {spec.param('min_sub_features')} true sub-features (simultaneous lower bound, step-down "
            "min-P over within-set co-firing)")
    return text + ("; and the same rule says NO-GO on a random SAE of the same shape" if spec.param("control") else "")


STEERING_KINDS = ("beats_random", "specificity", "multi_vs_single", "concept_rate", "versus_baseline")
STEERING_BASELINES = ("diffmean", "prompting")
KL_MATCH_TOLERANCE = 0.25  # matched methods must land within this fraction of the KL budget of each other


def rank_against_controls(value: float, controls, alpha: float) -> tuple[str, float, int]:
    """Exact rank test of one direction among exchangeable controls: p = (1 + #controls >= value) / (N + 1).
    held when p <= alpha; refuted when the value is no better than the controls' median; else inconclusive
    (also when N is too small for any p <= alpha)."""
    controls = np.asarray(controls, dtype=float)
    beaten_by = int(np.sum(controls >= value))
    p = (1 + beaten_by) / (len(controls) + 1)
    if p <= alpha:
        return "held", p, beaten_by
    if len(controls) and value <= float(np.median(controls)):
        return "refuted", p, beaten_by
    return "inconclusive", p, beaten_by


def _shift_with_p(values: np.ndarray, a: Analysis) -> tuple[Interval, float]:
    """BCa interval of a per-prompt mean and its exact sign-flip p (greater than 0)."""
    values = np.asarray(values, dtype=np.float64)
    p = float(paired_sign_flip_test(values, n_resamples=a.n_permutations, seed=a.seed).p_value[0])
    return mean_interval(values, a), p


def paired_shift(values, a: Analysis) -> tuple[str, Interval, float]:
    """"The per-prompt paired mean is > 0", as every steering claim decides it: the BCa interval decides,
    and "held" also needs the exact sign-flip test (p < alpha): a bootstrap of a few non-zero pairs among
    many zeros puts its lower bound above 0 too easily. Returns (verdict, interval, sign-flip p)."""
    interval, p = _shift_with_p(values, a)
    verdict = decide(interval.low, interval.high, 0.0, ">")
    if verdict == "held" and not p < a.alpha:
        verdict = "inconclusive"
    return verdict, interval, p


def steering_claim(spec: ClaimSpec, a: Analysis, study: dict) -> ClaimRecord:
    """Steering claims on word-level scores at matched fluency cost (see harness/steering/study.py).

    Every kind decides on a BCa interval of a per-prompt mean over the confirmation prompts (p from
    sign flips, reported); `beats_random` and `multi_vs_single` must also beat their controls by an
    exact rank test."""
    kind = spec.param("kind")
    if kind not in STEERING_KINDS:
        raise choices_error("steering kind", kind, STEERING_KINDS)
    names = {}
    for d in study["directions"]:
        names.setdefault(d["kind"], d["name"])
    anchor = names["anchor"]
    per = study["per_prompt"]
    kl = study.get("kl_reached", {})
    budget = study.get("kl_budget")
    concept = study.get("lexicons", {}).get("concept", {}).get("name", "concept")
    details: dict = {"kind": kind, "alpha": study["chosen_alpha"].get(anchor), "kl_budget": budget,
                     "kl_reached": {anchor: kl.get(anchor)}}

    def not_evaluated(reason: str, name: str) -> ClaimRecord:
        return make_record(spec, verdict="not evaluated", statistic_name=name, statistic=None, threshold=0.0,
                           comparison=">", reason=reason, details=details)

    def concept_of(name):
        return np.asarray(per[name]["concept"], dtype=np.float64)

    extra_verdicts: list[str] = []
    p_value = None
    tolerance = KL_MATCH_TOLERANCE * budget if budget else np.inf
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
            verdict, p, beaten = rank_against_controls(mine, shifts, a.alpha)
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
        own, own_p = _shift_with_p(np.asarray(per[other]["other"], dtype=np.float64), a)
        details["other_raises_own_words"] = {**own.as_dict(), "p": own_p}
        if not (own.low > 0 and own_p < a.alpha):
            return not_evaluated(f"the {other_name} direction {other} does not raise {other_name} words "
                                 f"({_interval_text(own)} nats, sign-flip p = {own_p:.2g}): the 2 x 2 has no working "
                                 "contrast direction", "difference in differences")
        # First part of the statement: under the anchor, concept words move more than the other words.
        first_verdict, first, first_p = paired_shift(fr_dir, a)
        extra_verdicts.append(first_verdict)
        details["anchor_prefers_concept_words"] = {**first.as_dict(), "p": first_p, "verdict": first_verdict}
        effect_values = fr_dir - de_dir
        effect_name = f"difference in differences: ({concept} - {other_name} words) under {anchor} minus under {other}"
        reason = (f"2 x 2 at matched KL: {anchor} moves {concept} words {np.mean(concept_of(anchor)):.3f} and "
                  f"{other_name} words {np.mean(per[anchor]['other']):.3f} ({concept} minus {other_name} "
                  f"{_interval_text(first)}, {first_verdict}); {other} moves them "
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
        verdict, p, beaten = rank_against_controls(controls["on_control_prompts"][multi], mixtures, a.alpha)
        extra_verdicts.append(verdict)
        p_value = p
        gap = abs(kl.get(multi, np.nan) - kl.get(anchor, np.nan))
        matched = bool(np.isfinite(gap) and gap <= KL_MATCH_TOLERANCE * budget)
        if not matched:
            extra_verdicts.append("inconclusive")
        aligned = names.get("aligned_mixture")
        aligned_text = ""
        if aligned:
            # Is it the sub-features, or any aligned fine rows? Multi must beat the anchor mixed with
            # the most aligned rows that are not sub-features, prompt by prompt.
            versus_aligned = mean_interval(concept_of(multi) - concept_of(aligned), a)
            extra_verdicts.append(decide(versus_aligned.low, versus_aligned.high, 0.0, ">"))
            details["versus_aligned_mixture"] = versus_aligned.as_dict()
            aligned_text = (f"; multi minus ({aligned}) = {_interval_text(versus_aligned)} at KL "
                            f"{kl.get(aligned, float('nan')):.2f}")
        reason = (f"at KL {kl.get(multi, float('nan')):.2f} (multi) vs {kl.get(anchor, float('nan')):.2f} (anchor)"
                  f"{'' if matched else ' - not matched within ' + format(KL_MATCH_TOLERANCE * budget, '.2f')}, "
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
        baseline = spec.param("baseline")
        if baseline not in STEERING_BASELINES:
            raise choices_error("steering baseline", baseline, STEERING_BASELINES)
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
    shift_verdict, interval, flip_p = paired_shift(effect_values, a)
    p_value = flip_p if p_value is None else max(p_value, flip_p)
    reason = reason.replace("{interval}", _interval_text(interval)) + reason_suffix
    verdict = combine(shift_verdict, *extra_verdicts)
    if interval.note:
        # Every resample gave the same mean (e.g. 0 concept words either way): the bootstrap says
        # nothing about uncertainty.
        reason += f"; {interval.note}"
        if verdict == "refuted":
            verdict = "inconclusive"
    if decide(interval.low, interval.high, 0.0, ">") == "held" and not flip_p < a.alpha:
        reason += f"; the paired sign-flip test does not confirm it (p = {flip_p:.2g})"
    steerability = study.get("steerability", {}).get(anchor)
    if steerability:
        details["anchor_wrong_way_share"] = steerability["wrong_way"]
    return make_record(
        spec, verdict=verdict, statistic_name=effect_name, statistic=interval.estimate, threshold=0.0,
        comparison=">", p_value=p_value, effect=_effect(effect_name, interval), reason=reason,
        plan=lambda: a.plan_mean(effect_values, 0.0, ">", "confirmation"),
        details={**details, "n_prompts": int(len(effect_values))},
    )


# ---- the built-in families, registered with their parameters (thresholds live in profiles) ----
SAE = Param(str, choices=("coarse", "fine"), help="which SAE")
ANCHOR = Param(int, low=0, feature_of="coarse", help="a coarse feature")
UNIT_INTERVAL = dict(low=0.0, high=1.0)
COSINE = dict(low=-1.0, high=1.0)
NO_GROUPS: tuple[str, ...] = ()

register_family("selectivity", {
    "sae": SAE, "feature": Param(int, low=0, feature_of="sae"),
    "min_selectivity": Param(float, **UNIT_INTERVAL, help="the bar: selectivity must exceed it"),
    "against": Param(str, "neutral", choices=("neutral", "near_miss"))},
    evaluate=selectivity_claim, groups=lambda spec: ("concept", spec.param("against")))
# units: "residual" compares activation x decoder-row norm (what each feature writes into the
# residual stream); "activation" compares raw SAE activations.
register_family("loud_unselective", {
    "sae": SAE, "loud": Param(int, low=0, feature_of="sae"), "anchor": Param(int, low=0, feature_of="sae"),
    "units": Param(str, "residual", choices=("residual", "activation"))}, evaluate=loud_unselective_claim)
register_family("sparsity", {"sae": SAE, "max_l0_fraction": Param(float, **UNIT_INTERVAL)}, evaluate=sparsity_claim)
register_family("reconstruction", {
    "sae": SAE, "min_explained_variance": Param(float, **COSINE), "min_ce_loss_score": Param(float, **COSINE)},
    evaluate=reconstruction_claim)
# quantile: the cutoff must exceed this quantile of the largest cosine null directions reach.
register_family("geometry", {"anchor": ANCHOR, "cutoff": Param(float, 0.3, **COSINE),
                             "quantile": Param(float, 0.95, low=0.5, high=0.9999)},
                evaluate=geometry_claim, groups=NO_GROUPS)
register_family("sub_features", {
    "anchor": ANCHOR, "min_cosine": Param(float, 0.3, **COSINE), "min_count": Param(int, 1, low=1),
    "blue_min_correlation": Param(float, 0.5, **COSINE), "orange_min_correlation": Param(float, 0.2, **COSINE),
    "red_max_cosine": Param(float, 0.1, **UNIT_INTERVAL)}, evaluate=sub_features_claim)
register_family("empty_top_left", {"min_cosine": Param(float, 0.3, **COSINE),
                                   "min_correlation": Param(float, 0.1, **COSINE)}, evaluate=empty_top_left_claim)
# The gate: the one claim whose verdict is GO / NO-GO (every other claim is a finding beside it).
register_family("go_gate", {
    "min_sub_features": Param(int, 3, low=1, help="true sub-features an anchor needs (the seed: 3)"),
    "min_selectivity": Param(float, 0.5, **UNIT_INTERVAL, help="the anchor must be selective beyond this "
                             "(0.5: it prefers the concept; a threshold claim like > 0.9 is a finding)"),
    "against": Param(str, "neutral", choices=("neutral", "near_miss")),
    "min_cosine": Param(float, 0.3, **COSINE, help="decoder cosine a sub-feature needs"),
    "geometry": Param(str, "count", choices=("count", "crowd_and_count", "none"),
                      help="how the cutoff must be meaningful against directions with the decoder's covariance"),
    "control": Param(bool, True, help="GO also needs NO-GO on a random SAE of the same shape")},
    evaluate=go_gate_claim, needs_anchors=True, needs_control=True, gating=True)
# baseline: only for kind "versus_baseline".
register_family("steering", {"kind": Param(str, choices=STEERING_KINDS),
                             "baseline": Param(str, "diffmean", choices=STEERING_BASELINES)},
                evaluate=steering_claim, groups=NO_GROUPS, needs_anchors=True, needs_steering=True)


def too_little_data(spec: ClaimSpec, a: Analysis) -> ClaimRecord | None:
    """Too few prompts is not evidence: below `analysis.min_group_size` a claim is not evaluated."""
    floor = a.profile.analysis.min_group_size
    groups = require_family(spec.family).groups(spec)
    small = {g: int(a.group(g).sum()) for g in groups if int(a.group(g).sum()) < floor}
    if not small:
        return None
    sizes = ", ".join(f"{n} {g.replace('_', '-')}" for g, n in small.items())
    return make_record(spec, verdict="not evaluated", statistic_name="too few prompts", statistic=None,
                       threshold=None, comparison=">=",
                       reason=f"too few prompts to test: {sizes} (floor {floor} per set, analysis.min_group_size)",
                       details={"group_sizes": small, "min_group_size": floor})


def evaluate(spec: ClaimSpec, analysis: Analysis, *, steering: dict | None = None,
             control: Analysis | None = None) -> ClaimRecord:
    """The engine's verdict on one claim of a registered family (the function calibration calls too).
    `control`: the same data through a random SAE of the same shape (the gate's negative control)."""
    family = require_family(spec.family)
    if family.evaluate is None:
        raise ConfigError(f"family {spec.family!r} (from {family.origin}) has no engine function: its test "
                          "computes the record itself")
    small = too_little_data(spec, analysis)
    if small is not None:
        return small
    if family.needs_steering:
        if steering is None:
            raise ConfigError(f"claim {spec.claim_id!r} needs the steering study; pass steering=")
        return family.evaluate(spec, analysis, steering)
    if family.needs_control:
        return family.evaluate(spec, analysis, control)
    return family.evaluate(spec, analysis)
