"""Claim families: each turns a ClaimSpec and the session's Analysis into a ClaimRecord.

The statistics live here and in `analysis`/`stats`; the pytest modules only ask for a
record and assert `passed`, and the renderer only reads records.
"""

from __future__ import annotations

import numpy as np

from harness.analysis import Analysis
from harness.config import ClaimSpec
from harness.errors import ConfigError, choices_error
from harness.ledger import ClaimRecord, Effect
from harness.stats import paired_sign_flip_test, selectivity


def _feature(analysis: Analysis, role: str, feature) -> int:
    d_sae = analysis.acts(role).shape[1]
    if not isinstance(feature, int) or not 0 <= feature < d_sae:
        raise ConfigError(f"feature {feature!r} is not an index of the {role} SAE; valid: 0..{d_sae - 1}")
    return feature


def _role(value) -> str:
    if value not in ("coarse", "fine"):
        raise choices_error("sae", value, ("coarse", "fine"))
    return value


def _effect(name: str, interval) -> Effect:
    return Effect(name=name, value=interval.estimate, ci_low=interval.low, ci_high=interval.high,
                  ci_level=interval.level)


def selectivity_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    role = _role(spec.param("sae"))
    feature = _feature(a, role, spec.param("feature"))
    against = spec.param("against")
    if against not in ("neutral", "near_miss"):
        raise choices_error("against", against, ("neutral", "near_miss"))
    tau = float(spec.param("min_selectivity"))
    test = a.selectivity_test(role, np.array([feature]), against)
    summary = a.feature_summary(role, np.array([feature]), against)
    interval = a.selectivity_interval(role, feature, against)
    value, p = float(test.statistic[0]), float(test.p_value[0])
    passed = value > tau and p < a.alpha
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name="selectivity",
        statistic=value, threshold=tau, comparison=">", p_value=p,
        effect=_effect("selectivity (bootstrap over prompts)", interval), passed=passed,
        reason=(f"selectivity {value:.3f} {'>' if value > tau else '<='} {tau} vs {against.replace('_', '-')} "
                f"prompts, permutation p = {p:.2g}"),
        details={"sae": role, "feature": feature, "against": against, "split": a.split,
                 "mean_concept": float(summary["mean_concept"][0]), "mean_other": float(summary["mean_other"][0]),
                 "auroc": float(summary["auroc"][0]),
                 "fire_rate_difference": float(summary["fire_concept"][0] - summary["fire_other"][0]),
                 "n_concept": int(a.group("concept").sum()), "n_other": int(a.group(against).sum())},
    )


def loud_unselective_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """The loud feature fires harder on concept prompts than the anchor, yet is less selective."""
    role = _role(spec.param("sae"))
    loud = _feature(a, role, spec.param("loud"))
    anchor = _feature(a, role, spec.param("anchor"))
    concept, neutral = np.flatnonzero(a.group("concept")), np.flatnonzero(a.group("neutral"))
    x = a.acts(role)
    louder = paired_sign_flip_test(x[concept, loud] - x[concept, anchor], n_resamples=a.n_permutations,
                                   seed=a.seed)

    def sel_gap(c, n):
        return (selectivity(x[c, anchor].mean(-1), x[n, anchor].mean(-1))
                - selectivity(x[c, loud].mean(-1), x[n, loud].mean(-1)))

    from harness.stats import bootstrap_interval

    gap = bootstrap_interval(sel_gap, [concept, neutral], n_resamples=a.n_bootstrap, seed=a.seed)
    loud_gap = float(louder.statistic[0])
    passed = loud_gap > 0 and float(louder.p_value[0]) < a.alpha and gap.low > 0
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement,
        statistic_name="mean activation gap (loud - anchor)", statistic=loud_gap, threshold=0.0, comparison=">",
        p_value=float(louder.p_value[0]), effect=_effect("selectivity gap (anchor - loud)", gap), passed=passed,
        reason=(f"{role}-{loud} mean {x[concept, loud].mean():.2f} vs {role}-{anchor} {x[concept, anchor].mean():.2f}"
                f" (paired p = {float(louder.p_value[0]):.2g}); selectivity gap {gap.estimate:.3f} "
                f"[{gap.low:.3f}, {gap.high:.3f}]"),
        details={"sae": role, "loud": loud, "anchor": anchor,
                 "mean_concept_loud": float(x[concept, loud].mean()),
                 "mean_concept_anchor": float(x[concept, anchor].mean()),
                 "selectivity_loud": float(selectivity(x[concept, loud].mean(), x[neutral, loud].mean())),
                 "selectivity_anchor": float(selectivity(x[concept, anchor].mean(), x[neutral, anchor].mean()))},
    )


def sparsity_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    role = _role(spec.param("sae"))
    width = a.acts(role).shape[1]
    max_fraction = float(spec.param("max_l0_fraction"))
    interval = a.l0_interval(role)
    fraction = interval.estimate / width
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name="L0 / width",
        statistic=fraction, threshold=max_fraction, comparison="<",
        effect=_effect("L0 (features firing per token)", interval), passed=fraction < max_fraction,
        reason=f"L0 {interval.estimate:.1f} of {width} = {fraction:.2%} (limit {max_fraction:.2%})",
        details={"sae": role, "width": width, "l0": interval.estimate,
                 "tokens": int(a.tables.n_tokens[a.evaluation_rows()].sum())},
    )


def reconstruction_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """Explained variance and CE-loss score, both measured on this run's concept + neutral prompts."""
    role = _role(spec.param("sae"))
    quality = {**a.tables.meta.get("ce_loss", {}).get(role, {}), "source": "this run's concept + neutral prompts"}
    min_ev = float(spec.param("min_explained_variance"))
    min_ce = float(spec.param("min_ce_loss_score"))
    interval = a.explained_variance_interval(role)
    ce = quality.get("ce_loss_score")
    ev_ok = interval.estimate >= min_ev
    ce_ok = ce is not None and ce >= min_ce
    ce_text = f"{ce:.3f}" if ce is not None else "not measured"
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name="explained variance",
        statistic=interval.estimate, threshold=min_ev, comparison=">=",
        effect=_effect("explained variance (bootstrap over prompts)", interval), passed=ev_ok and ce_ok,
        reason=(f"explained variance {interval.estimate:.3f} (floor {min_ev}); CE-loss score {ce_text} "
                f"(floor {min_ce})"),
        details={"sae": role, "ce_loss_score": ce, "min_ce_loss_score": min_ce,
                 "ce_source": quality["source"], **{k: v for k, v in quality.items() if k.startswith("ce_loss_")},
                 "unexplained_variance": 1 - interval.estimate},
    )


def geometry_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    anchor = _feature(a, "coarse", spec.param("anchor"))
    cutoff, quantile = float(spec.param("cutoff")), float(spec.param("quantile"))
    cos = a.anchor_cosines(anchor)
    null = a.random_null_cosines()
    crowd_q = float(np.quantile(cos, quantile))
    null_q = float(np.quantile(null, quantile))
    beyond = int((cos >= cutoff).sum())
    p_null = (1 + int((null >= cutoff).sum())) / (1 + null.size)
    passed = cutoff > crowd_q and cutoff > null_q
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement,
        statistic_name=f"{quantile:.1%} quantile of anchor-fine cosines", statistic=crowd_q, threshold=cutoff,
        comparison="<", p_value=p_null,
        effect=Effect(name="fine rows at or beyond the cutoff", value=float(beyond)), passed=passed,
        reason=(f"cutoff {cutoff} vs crowd {quantile:.1%} quantile {crowd_q:.3f} and random-direction "
                f"{quantile:.1%} quantile {null_q:.3f}; {beyond} fine rows beyond it"),
        details={"anchor": anchor, "crowd_quantile": crowd_q, "null_quantile": null_q, "beyond_cutoff": beyond,
                 "n_fine": int(cos.size), "n_null": int(null.size)},
    )


def sub_features_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    anchor = _feature(a, "coarse", spec.param("anchor"))
    min_count = int(spec.param("min_count"))
    subs = a.sub_features(anchor)
    pairs = [p for p in a.pair_table() if p["coarse"] == anchor and p["cosine"] >= spec.param("min_cosine")]
    best_q = min((p["q_value"] for p in pairs), default=None)
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name="sub-features",
        statistic=float(len(subs)), threshold=float(min_count), comparison=">=", q_value=best_q,
        passed=len(subs) >= min_count,
        reason=(f"{len(subs)} of {len(pairs)} fine features with cosine >= {spec.param('min_cosine')} co-fire "
                f"(BH q < {a.alpha})"),
        details={"anchor": anchor, "sub_features": subs, "candidates": pairs},
    )


def empty_top_left_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    min_cos, floor = float(spec.param("min_cosine")), float(spec.param("min_correlation"))
    high = [p for p in a.pair_table() if p["cosine"] >= min_cos]
    offenders = [p for p in high if p["correlation"] < floor]
    worst = min(high, key=lambda p: p["correlation"]) if high else None
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement,
        statistic_name="lowest correlation among high-cosine pairs",
        statistic=worst["correlation"] if worst else None, threshold=floor, comparison=">=",
        p_value=worst["p_value"] if worst else None, passed=not offenders,
        reason=(f"{len(offenders)} of {len(high)} pairs with cosine >= {min_cos} have correlation < {floor}"
                + ("" if high else " (no high-cosine pairs: nothing can sit top-left)")),
        details={"n_high_cosine_pairs": len(high), "offenders": offenders},
    )


def go_gate_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    need = int(spec.param("min_sub_features"))
    counts = {int(anchor): len(a.sub_features(anchor)) for anchor in a.profile.anchors.coarse}
    best_anchor = max(counts, key=counts.get) if counts else None
    best = counts.get(best_anchor, 0) if best_anchor is not None else 0
    passed = best >= need
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement,
        statistic_name="most sub-features of any coarse anchor", statistic=float(best), threshold=float(need),
        comparison=">=", passed=passed,
        reason=(f"coarse-{best_anchor} has {best} sub-features ({'>=' if passed else '<'} {need}): "
                f"{'GO' if passed else 'NO-GO'}" if counts else "no coarse anchors registered"),
        details={"sub_feature_counts": counts},
    )


STEERING_KINDS = ("beats_random", "specificity", "multi_vs_single", "concept_rate")


def steering_claim(spec: ClaimSpec, a: Analysis, study: dict) -> ClaimRecord:
    """Paired tests across the confirmation prompts on the steering study's per-prompt scores."""
    from harness.stats import bootstrap_interval

    kind = spec.param("kind")
    if kind not in STEERING_KINDS:
        raise choices_error("steering kind", kind, STEERING_KINDS)
    names = {d["kind"]: d["name"] for d in study["directions"]}
    anchor = names["anchor"]
    per = study["per_prompt"]
    details: dict = {"kind": kind, "alpha": study["chosen_alpha"].get(anchor)}
    if kind == "beats_random":
        shift = np.array(per[anchor]["shift"])
        versus = shift - np.array(study["random_same_alpha_shift"])
        test_base = paired_sign_flip_test(shift, n_resamples=a.n_permutations, seed=a.seed)
        test = paired_sign_flip_test(versus, n_resamples=a.n_permutations, seed=a.seed)
        p_value = max(float(test.p_value[0]), float(test_base.p_value[0]))  # both must hold
        statistic, effect_values, effect_name = float(versus.mean()), shift, "concept shift at alpha* (nats)"
        passed = shift.mean() > 0 and versus.mean() > 0 and p_value < a.alpha
        reason = (f"{anchor} raises concept log-mass by {shift.mean():.3f} nats (p = {float(test_base.p_value[0]):.2g}), "
                  f"{versus.mean():.3f} more than random directions of equal norm (p = {float(test.p_value[0]):.2g})")
        details.update(mean_shift=float(shift.mean()), mean_random_shift=float(np.mean(study["random_same_alpha_shift"])),
                       kl=float(np.mean(per[anchor]["kl"])))
    elif kind == "specificity":
        diff = np.array(per[anchor]["shift"]) - np.array(per[anchor]["other_shift"])
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed)
        p_value, statistic, effect_values = float(test.p_value[0]), float(diff.mean()), diff
        effect_name = "concept shift minus other-concept shift (nats)"
        passed = statistic > 0 and p_value < a.alpha
        reason = (f"{anchor} raises concept tokens {np.mean(per[anchor]['shift']):.3f} vs other-concept tokens "
                  f"{np.mean(per[anchor]['other_shift']):.3f} nats (paired p = {p_value:.2g})")
    elif kind == "multi_vs_single":
        matched = study.get("matched") or {}
        if "multi" not in matched:
            return ClaimRecord(id=spec.claim_id, family=spec.family, statement=spec.statement,
                               statistic_name="multi - single concept shift at matched KL", statistic=None,
                               threshold=0.0, comparison=">", passed=False,
                               reason="the anchor has no sub-features, so there is no multi-resolution direction",
                               details=details)
        diff = np.array(matched["multi"]["shift"]) - np.array(matched["anchor"]["shift"])
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed, alternative="greater")
        p_value, statistic, effect_values = float(test.p_value[0]), float(diff.mean()), diff
        effect_name = "multi minus single concept shift at matched KL (nats)"
        passed = statistic > 0 and p_value < a.alpha
        reason = (f"at KL {matched['multi']['kl']:.3f} vs {matched['anchor']['kl']:.3f} nats, multi-resolution shifts "
                  f"{np.mean(matched['multi']['shift']):.3f} vs single {np.mean(matched['anchor']['shift']):.3f} "
                  f"(paired p = {p_value:.2g})")
        details.update(matched={k: {"alpha": v["alpha"], "kl": v["kl"]} for k, v in matched.items()})
    else:  # concept_rate
        steered = np.array(study["concept_hits"][anchor], dtype=float)
        base = np.array(study["concept_hits"]["unsteered"], dtype=float)
        diff = steered - base
        test = paired_sign_flip_test(diff, n_resamples=a.n_permutations, seed=a.seed)
        p_value, statistic, effect_values = float(test.p_value[0]), float(diff.mean()), diff
        effect_name = "concept-word rate, steered minus unsteered"
        passed = statistic > 0 and p_value < a.alpha
        reason = (f"{steered.mean():.0%} of steered continuations contain a concept word vs {base.mean():.0%} "
                  f"unsteered (n = {len(steered)}, paired p = {p_value:.2g}); perplexity under the unsteered model "
                  f"{study['perplexity'].get(anchor, float('nan')):.1f} vs {study['perplexity']['unsteered']:.1f}")
    interval = bootstrap_interval(lambda idx: effect_values[idx].mean(-1), [np.arange(len(effect_values))],
                                  n_resamples=a.n_bootstrap, seed=a.seed)
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name=effect_name,
        statistic=statistic, threshold=0.0, comparison=">", p_value=p_value, effect=_effect(effect_name, interval),
        passed=bool(passed), reason=reason, details={**details, "n_prompts": int(len(effect_values))},
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


def evaluate(spec: ClaimSpec, analysis: Analysis, *, steering: dict | None = None) -> ClaimRecord:
    if spec.family == "steering":
        if steering is None:
            raise ConfigError(f"claim {spec.claim_id!r} needs the steering study; pass steering=")
        return steering_claim(spec, analysis, steering)
    if spec.family not in FAMILIES:
        raise choices_error("claim family for the analysis engine", spec.family, [*FAMILIES, "steering"])
    return FAMILIES[spec.family](spec, analysis)
