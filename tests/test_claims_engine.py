"""Claim families on planted ground truth: true claims hold, false ones fail, for the right reason."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.engine.claims_engine import evaluate
from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError
from harness.core.families import pair_rule_family
from tests import planted


@pytest.fixture(scope="module")
def world():
    return planted.analysis(effect=True)


@pytest.fixture(scope="module")
def null_world():
    return planted.analysis(effect=False)


@pytest.fixture(scope="module")
def control_world():
    """The planted world's random-SAE control (the gate needs one)."""
    return planted.control_analysis(planted.prompt_sets(), planted.profile())


@pytest.mark.parametrize("spec", planted.profile().claims, ids=lambda s: s.claim_id)
def test_planted_claims_hold(world, control_world, spec):
    record = evaluate(spec, world, control=control_world)
    assert record.passed, record.reason
    assert record.id == spec.claim_id and record.family == spec.family


@pytest.mark.parametrize("family", ["selectivity", "loud_unselective", "sub_features", "go_gate"])
def test_claims_fail_without_the_planted_effect(null_world, control_world, family):
    for spec in planted.profile().claims_of(family):
        record = evaluate(spec, null_world, control=control_world)
        assert not record.passed, record.reason


def test_selectivity_record_carries_statistics(world):
    spec = planted.profile().claims_of("selectivity")[0]
    record = evaluate(spec, world)
    assert record.statistic > 0.9 and record.p_value < 0.01
    assert record.effect.ci_low <= record.statistic <= record.effect.ci_high
    assert record.details["auroc"] > 0.9 and record.details["fire_rate_difference"] > 0.5


def test_sub_features_are_the_planted_children(world):
    found = {p["fine"] for p in world.sub_features(planted.ANCHOR)}
    assert found == set(planted.CHILDREN)
    red = [p for p in world.pair_table() if p["fine"] == planted.CO_OCCURRING]
    assert red and red[0]["category"] == "red" and not red[0]["sub_feature"]


def test_pair_colours_follow_declared_thresholds():
    """The analysis's pair table asks the family with a pair_rule (built in: sub_features) what a
    sub-feature is; the rule reads the anchor's claim, its defaults when there is none."""
    classify_pair = pair_rule_family().pair_rule
    assert pair_rule_family().name == "sub_features"
    spec = ClaimSpec(family="sub_features", name="x", statement="x", params={"anchor": 0})
    strict = ClaimSpec(family="sub_features", name="x", statement="x",
                       params={"anchor": 0, "blue_min_correlation": 0.8, "min_cosine": 0.9})
    blue = {"cosine": 0.8, "correlation": 0.7, "q_value": 0.001, "partial_correlation": 0.4}
    assert classify_pair(blue, None, 0.05) == {"category": "blue", "sub_feature": True}
    assert classify_pair(blue, strict, 0.05) == {"category": "orange", "sub_feature": False}
    assert classify_pair({**blue, "q_value": 0.05}, spec, 0.05)["sub_feature"]  # significant: q <= alpha
    assert classify_pair({"cosine": 0.8, "correlation": 0.7, "q_value": 0.001}, spec, 0.05)["category"] == "blue"
    assert classify_pair({"cosine": 0.02, "correlation": 0.5, "q_value": 0.001}, spec, 0.05)["category"] == "red"
    assert classify_pair({"cosine": 0.2, "correlation": 0.4, "q_value": 0.001}, spec, 0.05)["category"] == "orange"
    assert classify_pair({"cosine": 0.05, "correlation": 0.05, "q_value": 0.5}, spec, 0.05)["category"] == "grey"
    not_significant = classify_pair({"cosine": 0.8, "correlation": 0.7, "q_value": 0.2}, spec, 0.05)
    assert not not_significant["sub_feature"]


def test_feature_out_of_range_is_named(world):
    spec = ClaimSpec(family="selectivity", name="x", statement="x",
                     params={"sae": "coarse", "feature": 10_000, "min_selectivity": 0.9})
    with pytest.raises(ConfigError, match=r"feature 10000 is not an index of the coarse SAE; valid: 0..63"):
        evaluate(spec, world)


def test_bad_against_is_named_when_the_claim_is_declared():
    with pytest.raises(ConfigError, match=r"against 'germany'; valid choices: 'near_miss', 'neutral'"):
        ClaimSpec(family="selectivity", name="x", statement="x",
                  params={"sae": "coarse", "feature": 1, "min_selectivity": 0.9, "against": "germany"})


def test_too_few_prompts_is_not_evidence():
    """A concept set of 2 prompts must not let a selectivity claim hold on 1 prompt."""
    import dataclasses

    a = planted.analysis()
    keep = np.flatnonzero(a.masks["concept_all"])[:2]
    a.masks = {**a.masks, "concept_all": np.isin(np.arange(a.masks["concept_all"].size), keep)}
    spec = planted.profile().claims_of("selectivity")[0]
    record = evaluate(spec, a)
    assert record.verdict == "not evaluated" and "too few prompts to test: 2 concept" in record.reason
    a.profile = dataclasses.replace(a.profile, analysis=dataclasses.replace(a.profile.analysis, min_group_size=2))
    assert evaluate(spec, a).verdict != "not evaluated"


def test_confirmation_split_uses_only_the_other_half():
    sets = planted.prompt_sets()
    a = planted.analysis()
    a.split = "confirmation"
    assert a.group("concept").sum() == len(sets.concept) // 2
    assert not (a.group("concept") & a.masks["concept_discovery"]).any()


# ---------------------------------------------------------------- verdicts as stated (issue: trustworthy verdicts)
def test_every_record_carries_a_verdict_and_passed_means_held(world, null_world, control_world):
    for w in (world, null_world):
        for spec in planted.profile().claims:
            record = evaluate(spec, w, control=control_world)
            assert record.verdict in ("held", "refuted", "inconclusive")
            assert record.passed == (record.verdict == "held")


def test_refuted_and_inconclusive_read_differently():
    from harness.outputs.ledger import ClaimRecord

    base = dict(id="x[y]", family="x", statement="s", statistic_name="t", statistic=1.0, threshold=0.9,
                reason="because")
    assert ClaimRecord(**base, passed=False, verdict="refuted").message.startswith("REFUTED: because")
    inconclusive = ClaimRecord(**base, passed=False, verdict="inconclusive", prompts_to_decide=240).message
    assert inconclusive.startswith("INCONCLUSIVE") and "240 prompts per set" in inconclusive
    assert ClaimRecord.model_validate({**base, "passed": True}).verdict == "held"  # schema-1 ledgers


def test_geometry_holds_at_four_times_the_width():
    """The same planted rows decide the same way in a dictionary four times wider: the null adapts."""
    from harness.engine.calibration import CONDITIONS, Settings, run_condition

    wide = next(c for c in CONDITIONS if c.condition == "effect-4x-width")
    row = run_condition(wide, n_datasets=10, seed=3, settings=Settings(n_permutations=99, n_bootstrap=199))
    assert row["power"] == 1.0, row


def test_topk_sparsity_is_marked_by_construction():
    a = planted.analysis()
    a.sae_info = {"coarse": {"architecture": "topk", "k": 3}}
    spec = planted.profile().claims_of("sparsity")[0]
    record = evaluate(spec, a)
    assert record.by_construction and "by construction" in record.reason
    a.sae_info = {"coarse": {"architecture": "jumprelu"}}
    assert not evaluate(spec, a).by_construction


def test_loudness_in_residual_units_uses_decoder_norms(world):
    spec = planted.profile().claims_of("loud_unselective")[0]
    residual = evaluate(spec, world)
    activation = evaluate(ClaimSpec(family=spec.family, name="raw", statement="raw",
                                    params={**spec.params, "units": "activation"}), world)
    assert residual.details["units"] == "residual" and activation.details["units"] == "activation"
    assert residual.statistic == pytest.approx(
        residual.details["mean_write_loud"] - residual.details["mean_write_anchor"])
    assert residual.details["decoder_norm_loud"] == pytest.approx(1.2)
    assert activation.statistic == pytest.approx(
        activation.details["mean_concept_loud"] - activation.details["mean_concept_anchor"])


def test_fresh_prompts_are_used_whole():
    """Prompts supplied for a run took no part in discovery: tested whole, the ledger says why."""
    import dataclasses

    from harness.core.config import with_overrides

    base = dataclasses.replace(planted.profile(), anchors=dataclasses.replace(planted.profile().anchors,
                                                                              split="confirmation"))
    fresh = with_overrides(base, concept="/tmp/my-concept.jsonl")
    assert fresh.anchors.whole_sets == ("concept",) and "took no part in discovery" in fresh.anchors.split_reason
    sets = planted.prompt_sets()
    a = planted.analysis()
    a.profile, a.split = fresh, "confirmation"
    assert a.group("concept").sum() == len(sets.concept)  # whole
    assert a.group("neutral").sum() == len(sets.neutral) // 2  # the profile's own set stays halved
    assert a.split_of("concept") == "all" and a.split_of("neutral") == "confirmation"


def test_silent_pairs_are_not_offenders(world):
    """A fine feature aligned with the anchor but silent on these prompts is not evaluable: never r = 0."""
    pairs = world.pair_table()
    silent = [p for p in pairs if p["silent"]]
    assert silent, "the planted world has aligned rows that never fire"
    assert all(p["correlation"] is None and p["category"] == "silent" and not p["sub_feature"] for p in silent)
    spec = planted.profile().claims_of("empty_top_left")[0]
    record = evaluate(spec, world)
    assert all(o["fine"] not in {p["fine"] for p in silent} for o in record.details["offenders"])
    assert record.details["n_silent"] >= 1


def test_display_picks_never_enter_the_bh_family(world):
    pairs = world.pair_table()
    display = [p for p in pairs if not p["qualified"]]
    assert display and all(p["q_value"] is None and not p["sub_feature"] for p in display)


@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 12), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_draw_counts_count_every_draw(resamples, n, size, seed):
    from harness.engine.analysis import draw_counts

    idx = np.random.default_rng(seed).integers(0, size, (resamples, n))
    counts = draw_counts(idx, size)
    assert counts.shape == (resamples, size)
    assert all((counts[b] == np.bincount(idx[b], minlength=size)).all() for b in range(resamples))


def test_explained_variance_interval_is_the_pooled_ratio_of_its_resample():
    """The bootstrap statistic (sums as draw counts @ per-prompt sums) gives the tables' own ratio on the
    full sample, and its interval holds it."""
    a = planted.analysis(effect=True)
    rows = a.evaluation_rows()
    interval = a.explained_variance_interval("coarse")
    assert interval.estimate == pytest.approx(a.tables.explained_variance("coarse", rows), rel=1e-12)
    assert interval.low <= interval.estimate <= interval.high


def test_geometry_reads_a_sample_of_coarse_rows_beyond_the_pair_budget(monkeypatch):
    """Above MAX_COSINE_PAIRS the "coarse rows with fewer" share comes from a seeded sample of rows, and the
    reason says so; the anchor's own count and the verdict do not depend on it."""
    from harness.engine.analysis import Analysis

    spec = [c for c in planted.profile().claims if c.family == "geometry"][0]
    full = evaluate(spec, planted.analysis(effect=True))
    assert "of all coarse rows" in full.reason
    n_fine = planted.analysis(effect=True).directions["fine"].shape[0]
    monkeypatch.setattr(Analysis, "MAX_COSINE_PAIRS", 8 * n_fine)
    sampled = evaluate(spec, planted.analysis(effect=True))
    assert "of 8 sampled coarse rows" in sampled.reason and sampled.details["coarse_rows_counted"] == 8
    assert (sampled.verdict, sampled.effect.value) == (full.verdict, full.effect.value)
