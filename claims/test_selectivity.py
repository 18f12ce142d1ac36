"""Selectivity: an anchor fires on concept prompts far more than on neutral (or near-miss) ones.

Seed: C-3999 selectivity 0.97 (> 0.9).
Statistic: selectivity = mean_concept / (mean_concept + mean_other) of the max-pooled activation,
on the half the claims are tested on.
Decision (decide_selectivity, below): the threshold itself is tested. BCa interval
over prompts; where the feature fires on fewer than 10 other-set prompts, the lower bound is at most the
selectivity at a betting upper bound on the other set's mean, each firing bounded by the feature's
activation ceiling (its largest activation on held-out corpus text): firings seen count at their size,
those not seen at most at the ceiling. Held when the lower bound exceeds
`min_selectivity`, refuted when the upper bound is below it. The permutation
p of "no preference at all" is reported beside it.
"""

import numpy as np

from harness import (
    Analysis,
    ClaimRecord,
    ClaimSpec,
    Param,
    Section,
    assert_held,
    claim_family,
    decide,
    draw,
    effect_of,
    feature_index,
    interval_text,
    make_record,
)

PARAMS = {
    "sae": Param(str, choices=("coarse", "fine"), help="which SAE"),
    "feature": Param(int, low=0, feature_of="sae", help="the feature's index in that SAE"),
    "min_selectivity": Param(float, low=0.0, high=1.0, help="the bar: selectivity must exceed it"),
    "against": Param(str, "neutral", choices=("neutral", "near_miss"), help="the other prompt set"),
}


def decide_selectivity(claim: ClaimSpec, analysis: Analysis) -> ClaimRecord:
    """Selectivity > tau, tested as stated: H0 selectivity <= tau, decided on the interval's lower bound."""
    role, against, tau = claim.param("sae"), claim.param("against"), float(claim.param("min_selectivity"))
    feature = feature_index(analysis, role, claim.param("feature"))
    # Statistic and interval: BCa over prompts (each set resampled within itself), with the guard for an
    # other set that fires on fewer than 10 prompts (a betting bound on its mean, firings at most the ceiling).
    interval = analysis.selectivity_interval(role, feature, against)
    # Comparison: the threshold itself. held above tau, refuted below it, else inconclusive.
    verdict = decide(interval.low, interval.high, tau, ">")
    # Reported beside it: the permutation p of "no preference at all" (selectivity 0.5).
    p = float(analysis.selectivity_test(role, np.array([feature]), against).p_value[0])
    summary = analysis.feature_summary(role, np.array([feature]), against)
    n_c, n_o = int(analysis.group("concept").sum()), int(analysis.group(against).sum())
    other = against.replace("_", "-")
    return make_record(
        claim, verdict=verdict, statistic_name="selectivity", statistic=interval.estimate, threshold=tau,
        comparison=">", p_value=p, effect=effect_of(f"selectivity ({interval.method}, {interval.level:.0%})", interval),
        reason=(f"selectivity {interval_text(interval)} vs {other} prompts against the bar {tau} ({n_c} concept, "
                f"{n_o} {other} prompts; p of no preference = {p:.2g})" + (f"; {interval.note}" if interval.note else "")),
        plan=lambda: analysis.plan_selectivity(role, feature, against, tau),
        details={"sae": role, "feature": feature, "against": against, "split": analysis.split_of("concept"),
                 "mean_concept": float(summary["mean_concept"][0]), "mean_other": float(summary["mean_other"][0]),
                 "auroc": float(summary["auroc"][0]), "fire_concept": float(summary["fire_concept"][0]),
                 "fire_other": float(summary["fire_other"][0]),
                 "fire_rate_difference": float(summary["fire_concept"][0] - summary["fire_other"][0]),
                 "interval_method": interval.method, "interval_note": interval.note,
                 "n_concept": n_c, "n_other": n_o},
    )


def report_selectivity(claims: list[ClaimRecord], ledger) -> Section:
    """The seed's list on each SAE, and the anchors' activation distributions."""
    tables = ledger.tables
    ranked = [draw.ranked_features_table(tables, role, ledger.saes[role].cfg.get("neuronpedia_id", "")
                                         if role in ledger.saes else "") for role in ("coarse", "fine")]
    return Section("Selectivity", [*ranked, "Activation distributions of the anchors:",
                                   draw.activation_distributions(tables)],
                   note="The seed's list: features ranked by selectivity = mean concept / (mean concept + mean "
                        "neutral) of the max-pooled activation, among features firing on at least 10% of concept "
                        "prompts, on the prompts the claims are tested on.")


@claim_family("selectivity", PARAMS, order=10, report=report_selectivity, decision=decide_selectivity,
              groups=lambda claim: ("concept", claim.param("against")))
def test_selectivity(claim, analysis, record_claim):
    assert_held(record_claim(decide_selectivity(claim, analysis)))
