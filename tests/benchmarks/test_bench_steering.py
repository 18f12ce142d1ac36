"""Benchmark of one point of the steering sweep (16 neutral prompts, real SmolLM2) against the
unsteered pass in the same run: the ratio is the cost of the hook, the absolute time x
(directions x alphas) is the sweep."""

from __future__ import annotations

import pytest
import torch

from harness.config import load_profile
from harness.model import load_model
from harness.prompts import load_prompt_sets
from harness.steering import next_token_scores, word_token_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setup():
    profile = load_profile("smollm2-135m")
    model = load_model(profile.model, device="cpu")
    texts = [p.text for p in load_prompt_sets(profile).neutral[:16]]
    ids = word_token_ids(model.tokenizer, ["France", "Paris"])
    _, reference = next_token_scores(model, texts, profile.model.hook, None, ids, [], 64)
    return profile, model, texts, ids, reference


@pytest.mark.benchmark(group="steering-sweep-point")
def test_unsteered_pass(benchmark, setup):
    profile, model, texts, ids, _ = setup
    scores, _ = benchmark.pedantic(next_token_scores, args=(model, texts, profile.model.hook, None, ids, [], 64),
                                   rounds=3, iterations=1)
    assert len(scores["concept"]) == 16


@pytest.mark.benchmark(group="steering-sweep-point")
def test_steered_pass(benchmark, setup):
    profile, model, texts, ids, reference = setup
    vector = torch.randn(576) * 20
    scores, _ = benchmark.pedantic(next_token_scores, args=(model, texts, profile.model.hook, vector, ids, [], 64),
                                   kwargs={"reference": reference}, rounds=3, iterations=1)
    assert len(scores["kl"]) == 16 and min(scores["kl"]) > 0
