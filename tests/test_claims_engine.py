"""Claim families on planted ground truth: true claims hold, false ones fail, for the right reason."""

from __future__ import annotations

import pytest

from harness.analysis import classify_pair
from harness.claims_engine import evaluate
from harness.config import ClaimSpec
from harness.errors import ConfigError
from tests import planted


@pytest.fixture(scope="module")
def world():
    return planted.analysis(effect=True)


@pytest.fixture(scope="module")
def null_world():
    return planted.analysis(effect=False)


@pytest.mark.parametrize("spec", planted.profile().claims, ids=lambda s: s.claim_id)
def test_planted_claims_hold(world, spec):
    record = evaluate(spec, world)
    assert record.passed, record.reason
    assert record.id == spec.claim_id and record.family == spec.family


@pytest.mark.parametrize("family", ["selectivity", "loud_unselective", "sub_features", "go_gate"])
def test_claims_fail_without_the_planted_effect(null_world, family):
    for spec in planted.profile().claims_of(family):
        record = evaluate(spec, null_world)
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
    spec = ClaimSpec(family="sub_features", name="x", statement="x", params={"anchor": 0})
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


def test_bad_against_is_named(world):
    spec = ClaimSpec(family="selectivity", name="x", statement="x",
                     params={"sae": "coarse", "feature": 1, "min_selectivity": 0.9, "against": "germany"})
    with pytest.raises(ConfigError, match=r"unknown against 'germany'; valid choices: 'near_miss', 'neutral'"):
        evaluate(spec, world)


def test_confirmation_split_uses_only_the_other_half():
    sets = planted.prompt_sets()
    a = planted.analysis()
    a.split = "confirmation"
    assert a.group("concept").sum() == len(sets.concept) // 2
    assert not (a.group("concept") & a.masks["concept_discovery"]).any()
