"""Integration: the real SmolLM2-135M and both embedded SAEs, end to end on a few prompts.

Loads the model (converted once into the user cache) and the SAEs from fixtures/saes/.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness.core.config import load_profile
from harness.features.tables import cached_feature_tables, load_sae
from harness.world.model import load_model
from harness.world.prompts import Prompt, PromptSets, load_prompt_sets
from harness.world.residuals import resid_at_hook, tokenize_batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def profile():
    return load_profile("smollm2-135m")


@pytest.fixture(scope="module")
def model(profile):
    return load_model(profile.model, device="cpu")


@pytest.fixture(scope="module")
def saes(profile):
    return {role: load_sae(cfg, profile.model.d_model) for role, cfg in profile.saes.items()}


def test_model_is_smollm2_with_stable_hook_names(model, profile):
    assert (model.cfg.n_layers, model.cfg.d_model) == (30, 576)
    assert profile.model.hook in model.hook_dict  # the TransformerLens hook name, verbatim
    tokens = model.to_tokens(["The capital of France is"])
    logits = model(tokens)
    assert model.to_string(logits[0, -1].argmax()) == " Paris"


def test_first_position_is_excluded_because_its_norm_is_extreme(model, profile):
    batch = tokenize_batch(model.tokenizer, ["The capital of France is", "Hello"], 16)
    acts = resid_at_hook(model, batch.tokens_BS, profile.model.hook, profile.model.layer)
    norms = acts.norm(dim=-1)
    assert norms[0, 0] > 50 * norms[0, 1:batch.lengths_B[0]].median()
    assert not batch.keep_BS[:, 0].any() and batch.keep_BS[0, 1:].all() and batch.keep_BS[1].sum() == 1


def test_right_padding_does_not_change_real_positions(model, profile):
    short = tokenize_batch(model.tokenizer, ["Paris is lovely"], 16)
    padded = tokenize_batch(model.tokenizer, ["Paris is lovely", "A much longer sentence about the weather today"], 16)
    a = resid_at_hook(model, short.tokens_BS, profile.model.hook, profile.model.layer)
    b = resid_at_hook(model, padded.tokens_BS, profile.model.hook, profile.model.layer)
    n = short.lengths_B[0]
    torch.testing.assert_close(a[0, :n], b[0, :n], atol=1e-3, rtol=1e-4)


def test_feature_tables_shapes_and_cache_reuse(model, saes, profile, tmp_path):
    full = load_prompt_sets(profile)
    few = PromptSets(full.concept[:4], full.neutral[:4], full.near_miss[:2])
    small = dataclasses.replace(profile, analysis=dataclasses.replace(profile.analysis, batch_size=4))
    calls = {"model": 0}

    def model_loader():
        calls["model"] += 1
        return model

    first = cached_feature_tables(small, few, model_loader=model_loader, sae_loader=lambda: saes,
                                  cache_root=tmp_path, progress=False)
    assert first.meta["cache"] == "miss" and calls["model"] == 1
    assert first.pooled["coarse"].shape == (10, 2048) and first.pooled["fine"].shape == (10, 16384)
    assert (first.pooled["coarse"] >= 0).all() and first.n_tokens.min() >= 1
    assert 20 <= first.l0("coarse") <= 40  # TopK k=32 (pre-activations can be <= 0)
    assert 0.5 < first.explained_variance("coarse") <= 1
    assert 0 < first.meta["ce_loss"]["coarse"]["ce_loss_score"] <= 1.05
    second = cached_feature_tables(small, few, model_loader=model_loader, sae_loader=lambda: saes,
                                   cache_root=tmp_path, progress=False)
    assert second.meta["cache"] == "hit" and calls["model"] == 1  # warm: the model is not touched
    np.testing.assert_array_equal(first.pooled["fine"], second.pooled["fine"])
    # A corrupt cache file is detected and rebuilt, not trusted.
    path = next(tmp_path.glob("*.npz"))
    path.write_bytes(b"not a zip file")
    third = cached_feature_tables(small, few, model_loader=model_loader, sae_loader=lambda: saes,
                                  cache_root=tmp_path, progress=False)
    assert third.meta["cache"] == "miss" and calls["model"] == 2
    np.testing.assert_allclose(third.pooled["coarse"], first.pooled["coarse"], atol=1e-5)


def test_max_pool_equals_per_token_maximum(model, saes, profile, tmp_path):
    text = "The Eiffel Tower was built for the 1889 World's Fair in Paris."
    batch = tokenize_batch(model.tokenizer, [text], 64)
    acts = resid_at_hook(model, batch.tokens_BS, profile.model.hook, profile.model.layer)
    per_token = saes["coarse"].encode(acts[0, 1:batch.lengths_B[0]]).detach().numpy()
    one = PromptSets((Prompt(id="x", text=text, set="concept", facet="f"),),
                     (Prompt(id="y", text="It rained all day.", set="neutral", facet="f"),), ())
    tables = cached_feature_tables(profile, one, model_loader=lambda: model, sae_loader=lambda: saes,
                                   cache_root=tmp_path, progress=False)
    np.testing.assert_allclose(tables.pooled["coarse"][0], per_token.max(0), atol=1e-4)


def test_steering_engine_on_the_bridge_equals_a_hooked_forward(model, profile):
    """The engine steers after block L of the unwrapped HF model; TransformerLens's
    `blocks.L.hook_resid_post` (where the SAEs read) is the same place: adding the vector there
    through the bridge gives the same KL and word log-probs."""
    from harness.steering.study import encode_prompts
    from harness.steering.engine import SteeringEngine, hook_layer

    tokenizer = model.tokenizer
    prompts, _ = encode_prompts(tokenizer, ["She folded the towels.", "The kitchen tap has been dripping all night."],
                                chat_template=True, max_tokens=64)
    units = [tuple(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in [" France", "Marseille"]]
    vector = torch.randn(profile.model.d_model, generator=torch.Generator().manual_seed(0)) * 20
    engine = SteeringEngine(model, hook_layer(profile.model.hook), positions="reply")
    result = engine.score(engine.prepare(prompts, units), vector[None])
    for i, prompt in enumerate(prompts):
        for u, unit in enumerate(units):
            tokens = torch.tensor([prompt + list(unit)])
            n = len(prompt)

            def add(acts, hook=None):
                acts = acts.clone()
                acts[:, n - 1:] += vector.to(acts.dtype)
                return acts

            with torch.no_grad():
                base = torch.log_softmax(model(tokens).float(), -1)[0]
                steered = torch.log_softmax(model.run_with_hooks(tokens, fwd_hooks=[(profile.model.hook, add)])
                                            .float(), -1)[0]
            kl = float((steered[n - 1].exp() * (steered[n - 1] - base[n - 1])).sum())
            logprob = float(sum(steered[n - 1 + k, t] for k, t in enumerate(unit)))
            assert result["kl"][0, i] == pytest.approx(kl, rel=1e-4, abs=1e-4)
            assert result["unit_logprob"][0, i, u] == pytest.approx(logprob, rel=1e-4, abs=1e-4)
    cached = engine.sample(prompts, vector, seed=0, max_new_tokens=6)
    assert cached == engine.sample(prompts, vector, seed=0, max_new_tokens=6, use_cache=False)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())  # nothing left on the bridge
