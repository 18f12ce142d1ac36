"""Claim families: each turns a ClaimSpec and the session's Analysis into a ClaimRecord.

Every family decides on an interval, never on a point estimate: held (the interval clears the
threshold), refuted (it lies wholly on the wrong side), inconclusive (it straddles; the record
says how many prompts per set would decide it). The same functions serve `pytest claims/`,
`python -m harness calibrate` and discovery.
"""

from __future__ import annotations

import numpy as np

from harness.analysis import FEW_FIRINGS, Analysis
from harness.config import ClaimSpec
from harness.errors import ConfigError, choices_error
from harness.ledger import ClaimRecord, Effect
from harness.stats import (
    Interval,
    bootstrap_interval,
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


def combine(*verdicts: str) -> str:
    """A claim made of several parts holds when every part holds and is refuted when any part is."""
    if all(v == "held" for v in verdicts):
        return "held"
    return "refuted" if "refuted" in verdicts else "inconclusive"


def _interval_text(interval: Interval) -> str:
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def make_record(spec: ClaimSpec, *, verdict: str, statistic_name: str, statistic, threshold, comparison: str,
                reason: str, effect: Effect | None = None, p_value=None, q_value=None, details: dict | None = None,
                decide_from: tuple[Interval, float, int] | None = None, by_construction: bool = False) -> ClaimRecord:
    """A ledger record; `decide_from` = (interval, threshold, prompts per set) estimates, for an
    inconclusive claim, the prompts per set that would decide it."""
    needed = None
    if verdict == "inconclusive" and decide_from is not None:
        needed = prompts_to_decide(*decide_from)
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name=statistic_name,
        statistic=None if statistic is None else float(statistic), threshold=None if threshold is None else float(threshold),
        comparison=comparison, p_value=p_value, q_value=q_value, effect=effect, passed=verdict == "held",
        verdict=verdict, prompts_to_decide=needed, by_construction=by_construction, reason=reason,
        details=details or {},
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
        decide_from=(interval, tau, min(n_c, n_o)),
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
        decide_from=(ev, min_ev, n) if ev_verdict != "held" else ((ce, min_ce, n) if ce is not None else None),
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
    return make_record(
        spec, verdict=verdict, statistic_name=f"{quantile:.0%} quantile of the null's largest cosine",
        statistic=crowd, threshold=cutoff, comparison="<", p_value=p_count,
        effect=Effect(name="fine rows at or beyond the cutoff", value=float(beyond)),
        reason=(f"null directions (fine-decoder covariance, {null.max_cosine.size} draws) reach a largest cosine "
                f"whose {quantile:.0%} quantile is {crowd:.3f} [{crowd_low:.3f}, {crowd_high:.3f}] against the "
                f"cutoff {cutoff}; coarse-{anchor} has {beyond} fine rows beyond it vs a null median of "
                f"{np.median(null.count_beyond):.0f} (rank p = {p_count:.2g}); {percentile:.0%} of all coarse rows "
                f"have fewer"),
        details={"anchor": anchor, "cutoff": cutoff, "quantile": quantile, "null_max_quantile": crowd,
                 "null_max_quantile_ci": [crowd_low, crowd_high], "null_kind": null.kind,
                 "crowd_verdict": crowd_verdict, "count_verdict": count_verdict, "beyond_cutoff": beyond,
                 "null_count_median": float(np.median(null.count_beyond)),
                 "null_count_max": int(null.count_beyond.max()), "n_null": int(null.max_cosine.size),
                 "n_fine": int(cos.size), "anchor_max_cosine": float(cos.max()),
                 "coarse_rows_with_fewer": percentile,
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


def go_gate_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """GO for the steering study: some coarse anchor has at least `min_sub_features` sub-features."""
    need = int(spec.param("min_sub_features"))
    groups = {int(anchor): _anchor_pairs(a, int(anchor)) for anchor in a.profile.anchors.coarse}
    counts = {anchor: len(g["sub_features"]) for anchor, g in groups.items()}
    # Silent rows cannot be tested here, so they may still be sub-features: they count as possible.
    plausible = {anchor: _plausible(g) + len(g["silent"]) for anchor, g in groups.items()}
    best_anchor = max(counts, key=counts.get) if counts else None
    best = counts.get(best_anchor, 0) if best_anchor is not None else 0
    if not counts:
        verdict = "refuted"
    elif best >= need:
        verdict = "held"
    elif max(plausible.values()) < need:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    return make_record(
        spec, verdict=verdict, statistic_name="most sub-features of any coarse anchor", statistic=float(best),
        threshold=float(need), comparison=">=",
        reason=(f"coarse-{best_anchor} has {best} sub-features ({'>=' if best >= need else '<'} {need}); at most "
                f"{max(plausible.values())} could qualify on these prompts" if counts
                else "no coarse anchors registered"),
        details={"sub_feature_counts": counts, "plausible_counts": plausible},
    )


STEERING_KINDS = ("beats_random", "specificity", "multi_vs_single", "concept_rate")


def steering_claim(spec: ClaimSpec, a: Analysis, study: dict) -> ClaimRecord:
    """Paired comparisons across the confirmation prompts on the steering study's per-prompt scores,
    each decided on a BCa interval of the mean paired difference (p from sign flips, reported)."""
    kind = spec.param("kind")
    if kind not in STEERING_KINDS:
        raise choices_error("steering kind", kind, STEERING_KINDS)
    names = {d["kind"]: d["name"] for d in study["directions"]}
    anchor = names["anchor"]
    per = study["per_prompt"]
    details: dict = {"kind": kind, "alpha": study["chosen_alpha"].get(anchor)}

    def mean_interval(values) -> Interval:
        values = np.asarray(values, dtype=np.float64)
        return bootstrap_interval(lambda idx: values[idx].mean(-1), [np.arange(len(values))],
                                  n_resamples=a.n_bootstrap, seed=a.seed, level=a.level)

    extra_verdicts: list[str] = []
    if kind == "beats_random":
        shift = np.array(per[anchor]["shift"])
        versus = shift - np.array(study["random_same_alpha_shift"])
        base_interval = mean_interval(shift)
        extra_verdicts.append(decide(base_interval.low, base_interval.high, 0.0, ">"))
        test = paired_sign_flip_test(versus, n_resamples=a.n_permutations, seed=a.seed)
        p_value, effect_values = float(test.p_value[0]), versus
        effect_name = "concept shift minus random directions' shift at alpha* (nats)"
        reason = (f"{anchor} raises concept log-mass by {_interval_text(base_interval)} nats, "
                  f"{versus.mean():.3f} more than random directions of equal norm (p = {p_value:.2g})")
        details.update(mean_shift=float(shift.mean()), mean_random_shift=float(np.mean(study["random_same_alpha_shift"])),
                       shift_interval=base_interval.as_dict(), kl=float(np.mean(per[anchor]["kl"])))
    elif kind == "specificity":
        diff = np.array(per[anchor]["shift"]) - np.array(per[anchor]["other_shift"])
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed)
        p_value, effect_values = float(test.p_value[0]), diff
        effect_name = "concept shift minus other-concept shift (nats)"
        reason = (f"{anchor} raises concept tokens {np.mean(per[anchor]['shift']):.3f} vs other-concept tokens "
                  f"{np.mean(per[anchor]['other_shift']):.3f} nats (paired p = {p_value:.2g})")
    elif kind == "multi_vs_single":
        matched = study.get("matched") or {}
        if "multi" not in matched:
            return make_record(spec, verdict="not evaluated", statistic_name="multi - single concept shift at matched KL",
                               statistic=None, threshold=0.0, comparison=">",
                               reason="the anchor has no sub-features, so there is no multi-resolution direction",
                               details=details)
        diff = np.array(matched["multi"]["shift"]) - np.array(matched["anchor"]["shift"])
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed, alternative="greater")
        p_value, effect_values = float(test.p_value[0]), diff
        effect_name = "multi minus single concept shift at matched KL (nats)"
        reason = (f"at KL {matched['multi']['kl']:.3f} vs {matched['anchor']['kl']:.3f} nats, multi-resolution shifts "
                  f"{np.mean(matched['multi']['shift']):.3f} vs single {np.mean(matched['anchor']['shift']):.3f} "
                  f"(paired p = {p_value:.2g})")
        details.update(matched={k: {"alpha": v["alpha"], "kl": v["kl"]} for k, v in matched.items()})
    else:  # concept_rate
        steered = np.array(study["concept_hits"][anchor], dtype=float)
        base = np.array(study["concept_hits"]["unsteered"], dtype=float)
        diff = steered - base
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed)
        p_value, effect_values = float(test.p_value[0]), diff
        effect_name = "concept-word rate, steered minus unsteered"
        reason = (f"{steered.mean():.0%} of steered continuations contain a concept word vs {base.mean():.0%} "
                  f"unsteered (n = {len(steered)}, paired p = {p_value:.2g}); perplexity under the unsteered model "
                  f"{study['perplexity'].get(anchor, float('nan')):.1f} vs {study['perplexity']['unsteered']:.1f}")
    interval = mean_interval(effect_values)
    verdict = combine(decide(interval.low, interval.high, 0.0, ">"), *extra_verdicts)
    if interval.note:
        # Every resample gave the same mean (e.g. 0 of n concept words either way, or 1 vs 0 on every
        # prompt): the bootstrap says nothing about uncertainty. Only the exact sign-flip p can hold it.
        reason += f"; {interval.note}"
        if verdict == "held" and not p_value < a.alpha:
            verdict = "inconclusive"
        elif verdict == "refuted":
            verdict = "inconclusive"
    return make_record(
        spec, verdict=verdict, statistic_name=effect_name, statistic=interval.estimate, threshold=0.0,
        comparison=">", p_value=p_value, effect=_effect(effect_name, interval), reason=reason,
        decide_from=(interval, 0.0, len(effect_values)), details={**details, "n_prompts": int(len(effect_values))},
    )


FAMILIES = {
    "selectivity": selectivity_claim,
    "loud_unselective": loud_unselective_claim,
    "sparsity": sparsity_claim,
    "reconstruction": reconstruction_claim,
    "geometry": geometry_claim,
    "sub_features": sub_features_claim,
    "empty_top_left": empty_top_left_claim,
    "go_gate": go_gate_claim,
}


# Which prompt groups each family tests; a group below the floor makes the claim not evaluable.
TESTED_GROUPS = {
    "selectivity": lambda spec: ("concept", spec.param("against")),
    "loud_unselective": lambda spec: ("concept", "neutral"),
    "sub_features": lambda spec: ("concept", "neutral"),
    "go_gate": lambda spec: ("concept", "neutral"),
    "empty_top_left": lambda spec: ("concept", "neutral"),
    "reconstruction": lambda spec: ("concept", "neutral"),
    "sparsity": lambda spec: ("concept", "neutral"),
}


def too_little_data(spec: ClaimSpec, a: Analysis) -> ClaimRecord | None:
    """Too few prompts is not evidence: below `analysis.min_group_size` a claim is not evaluated."""
    floor = a.profile.analysis.min_group_size
    groups = TESTED_GROUPS.get(spec.family, lambda spec: ())(spec)
    small = {g: int(a.group(g).sum()) for g in groups if int(a.group(g).sum()) < floor}
    if not small:
        return None
    sizes = ", ".join(f"{n} {g.replace('_', '-')}" for g, n in small.items())
    return make_record(spec, verdict="not evaluated", statistic_name="too few prompts", statistic=None,
                       threshold=None, comparison=">=",
                       reason=f"too few prompts to test: {sizes} (floor {floor} per set, analysis.min_group_size)",
                       details={"group_sizes": small, "min_group_size": floor})


def evaluate(spec: ClaimSpec, analysis: Analysis, *, steering: dict | None = None) -> ClaimRecord:
    small = too_little_data(spec, analysis)
    if small is not None:
        return small
    if spec.family == "steering":
        if steering is None:
            raise ConfigError(f"claim {spec.claim_id!r} needs the steering study; pass steering=")
        return steering_claim(spec, analysis, steering)
    if spec.family not in FAMILIES:
        raise choices_error("claim family for the analysis engine", spec.family, [*FAMILIES, "steering"])
    return FAMILIES[spec.family](spec, analysis)
