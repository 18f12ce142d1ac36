"""Sparsity: features firing per token (L0) stay under a fraction of the SAE's width.

Seed: about 82 of 16,384 (< 1%).
Decision (decide_sparsity, below): the upper bound of L0's interval over prompts, as a
fraction of the width, must lie below `max_l0_fraction`. For a TopK SAE, L0 = k by construction: the
record says so and it is not a finding.
"""

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Interval,
    Param,
    assert_held,
    claim_family,
    decide,
    effect_of,
    interval_text,
    make_record,
    sae_role,
)

PARAMS = {
    "sae": Param(str, choices=("coarse", "fine"), help="which SAE"),
    "max_l0_fraction": Param(float, low=0.0, high=1.0, help="L0 / width must stay below it"),
}


def decide_sparsity(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """L0 / width below a fraction, on the interval's upper bound. For TopK SAEs L0 = k by construction."""
    role = sae_role(claim.param("sae"))
    width = analysis.acts(role).shape[1]
    max_fraction = float(claim.param("max_l0_fraction"))
    interval = analysis.l0_interval(role)
    fraction = Interval(interval.estimate / width, interval.low / width, interval.high / width, interval.level,
                        interval.method, interval.note)
    info = analysis.sae_info.get(role, {})
    by_construction = str(info.get("architecture", "")).lower() == "topk"
    verdict = decide(fraction.low, fraction.high, max_fraction, "<")
    note = (f"; TopK with k = {info.get('k')}: L0 = k by construction, not a finding" if by_construction else "")
    return make_record(
        claim, verdict=verdict, statistic_name="L0 / width", statistic=fraction.estimate, threshold=max_fraction,
        comparison="<", effect=effect_of("L0 (features firing per token)", interval), by_construction=by_construction,
        reason=(f"L0 {interval_text(interval)} of {width} = {fraction.estimate:.2%} (limit {max_fraction:.2%})"
                + note),
        decide_from=(fraction, max_fraction, int(analysis.evaluation_rows().sum())),
        details={"sae": role, "width": width, "l0": interval.estimate, "architecture": info.get("architecture"),
                 "tokens": int(analysis.tables.n_tokens[analysis.evaluation_rows()].sum())},
    )


@claim_family("sparsity", PARAMS, order=30, decision=decide_sparsity)
def test_sparsity(claim, analysis, record_claim):
    assert_held(record_claim(decide_sparsity(claim, analysis)))
