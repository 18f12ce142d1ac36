"""Loud but unselective: a feature that writes more into the residual stream than the anchor on
concept prompts, yet is less selective.

Seed: C-11333 (mean 4.48, selectivity 0.89) vs C-3999 (mean 3.67, selectivity 0.97).
Decision (decide_loud_unselective, below): two BCa intervals, the loudness gap
(paired over concept prompts; units "residual" = activation x decoder norm) and the selectivity gap,
must both lie above 0.
"""

import numpy as np

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    ConfigError,
    Interval,
    Param,
    assert_held,
    bootstrap_interval,
    choices_error,
    claim_family,
    combine,
    decide,
    effect_of,
    feature_index,
    interval_text,
    make_record,
    paired_sign_flip_test,
    sae_role,
    selectivity,
)

PARAMS = {
    "sae": Param(str, choices=("coarse", "fine"), help="which SAE"),
    "loud": Param(int, low=0, feature_of="sae", help="the loud feature"),
    "anchor": Param(int, low=0, feature_of="sae", help="the selective feature it is compared with"),
    # "residual": activation x decoder-row norm (what each feature writes into the residual stream);
    # "activation": raw SAE activations.
    "units": Param(str, "residual", choices=("residual", "activation")),
}


def decide_loud_unselective(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """The loud feature writes more into the residual stream on concept prompts than the anchor
    (or fires harder, with units = "activation"), yet is less selective. Both parts on intervals."""
    role = sae_role(claim.param("sae"))
    loud = feature_index(analysis, role, claim.param("loud"))
    anchor = feature_index(analysis, role, claim.param("anchor"))
    units = claim.param("units")
    if units not in ("residual", "activation"):
        raise choices_error("units", units, ("residual", "activation"))
    concept, neutral = np.flatnonzero(analysis.group("concept")), np.flatnonzero(analysis.group("neutral"))
    x = analysis.acts(role)
    norms = analysis.decoder_norms.get(role)
    scale_loud, scale_anchor = (1.0, 1.0)
    if units == "residual":
        if norms is None:
            raise ConfigError(f"claim {claim.claim_id!r} compares residual-stream writes but the analysis has no "
                              "decoder norms; set units = \"activation\" or build the Analysis with decoder_norms")
        scale_loud, scale_anchor = float(norms[loud]), float(norms[anchor])
    difference = x[concept, loud] * scale_loud - x[concept, anchor] * scale_anchor
    louder = bootstrap_interval(lambda i: difference[i].mean(-1), [np.arange(difference.size)],
                                n_resamples=analysis.n_bootstrap, seed=analysis.seed, level=analysis.level)
    louder_p = float(paired_sign_flip_test(difference, n_resamples=analysis.n_permutations, seed=analysis.seed).p_value[0])

    def sel_gap(c, n):
        return (selectivity(x[c, anchor].mean(-1), x[n, anchor].mean(-1))
                - selectivity(x[c, loud].mean(-1), x[n, loud].mean(-1)))

    gap = bootstrap_interval(sel_gap, [concept, neutral], n_resamples=analysis.n_bootstrap, seed=analysis.seed, level=analysis.level)
    few = analysis.few_firings  # [analysis] few_firings
    if int((x[neutral, anchor] > 0).sum()) < few or int((x[neutral, loud] > 0).sum()) < few:
        # Few neutral firings: the bootstrap cannot see the firings that did not happen. Bound the gap
        # by the two guarded selectivity intervals instead (anchor's lower minus loud's upper).
        anchor_sel = analysis.selectivity_interval(role, anchor, "neutral")
        loud_sel = analysis.selectivity_interval(role, loud, "neutral")
        gap = Interval(gap.estimate, min(gap.low, anchor_sel.low - loud_sel.high),
                       max(gap.high, anchor_sel.high - loud_sel.low), gap.level, "BCa + guarded selectivity",
                       "few neutral firings: bounded by the guarded selectivity intervals")
    verdict = combine(decide(louder.low, louder.high, 0.0, ">"), decide(gap.low, gap.high, 0.0, ">"))
    what = "residual-stream write (activation x decoder norm)" if units == "residual" else "activation"
    raw = {f: float(x[concept, f].mean()) for f in (loud, anchor)}
    return make_record(
        claim, verdict=verdict, statistic_name=f"mean {what} gap (loud - anchor)", statistic=louder.estimate,
        threshold=0.0, comparison=">", p_value=louder_p,
        effect=effect_of("selectivity gap (anchor - loud)", gap),
        reason=(f"{role}-{loud} minus {role}-{anchor} on concept prompts, {what}: {interval_text(louder)} "
                f"(paired p = {louder_p:.2g}); selectivity gap {interval_text(gap)}"),
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


@claim_family("loud_unselective", PARAMS, order=20, decision=decide_loud_unselective)
def test_loud_unselective(claim, analysis, record_claim):
    assert_held(record_claim(decide_loud_unselective(claim, analysis)))
