"""Steering: the hook adds exactly the intended vector and nothing after it exits; the scores
are right on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from harness.residuals import TokenBatch
from harness.steering import (
    SteeringConfig,
    choose_alpha,
    contains_word,
    matched_alpha,
    next_token_scores,
    steering_hook,
)


@pytest.fixture(scope="module")
def tiny():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=12, d_head=4, n_heads=4, d_vocab=20,
                                  act_fn="relu", normalization_type="LN")
    return HookedTransformer(cfg).eval()


def capture(model, tokens, hook):
    seen = {}

    def keep(acts, hook=None):
        seen["acts"] = acts.detach().clone()
        return acts

    logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, keep)])
    return seen["acts"], logits


def test_hook_adds_exactly_the_vector_at_every_position(tiny):
    tokens = torch.tensor([[1, 5, 7, 3, 2]])
    hook = "blocks.0.hook_resid_post"
    plain, plain_logits = capture(tiny, tokens, hook)
    vector = torch.randn(16)
    with steering_hook(tiny, hook, vector):
        steered, steered_logits = capture(tiny, tokens, hook)
    torch.testing.assert_close(steered - plain, vector.expand_as(plain))
    assert not torch.allclose(steered_logits, plain_logits)
    after, after_logits = capture(tiny, tokens, hook)
    torch.testing.assert_close(after, plain)  # nothing left behind
    torch.testing.assert_close(after_logits, plain_logits)
    assert not any(hp.fwd_hooks for hp in tiny.hook_dict.values())


def test_hook_is_removed_even_when_the_block_raises(tiny):
    tokens = torch.tensor([[1, 2, 3]])
    hook = "blocks.1.hook_resid_post"
    plain, _ = capture(tiny, tokens, hook)
    with pytest.raises(RuntimeError), steering_hook(tiny, hook, torch.ones(16)):
        raise RuntimeError("boom")
    torch.testing.assert_close(capture(tiny, tokens, hook)[0], plain)


def test_prompt_only_steers_only_prompt_positions(tiny):
    tokens = torch.tensor([[1, 5, 7, 3, 2, 9]])
    hook = "blocks.0.hook_resid_post"
    plain, _ = capture(tiny, tokens, hook)
    vector = torch.randn(16)
    with steering_hook(tiny, hook, vector, prompt_length=4):
        steered, _ = capture(tiny, tokens, hook)
    torch.testing.assert_close(steered[:, :4] - plain[:, :4], vector.expand(1, 4, 16))
    torch.testing.assert_close(steered[:, 4:], plain[:, 4:])


class FakeTokenizer:
    bos_token_id, eos_token_id, pad_token_id = 0, 1, 1
    all_special_ids = [0, 1]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [2 + (ord(c) % 5) for c in text]}


class FakeModel(torch.nn.Module):
    """Logits depend only on position: log-probs we can compute by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)
        self.tokenizer = FakeTokenizer()

    def forward(self, tokens):
        return self.table[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


def test_concept_mass_and_kl_by_hand(monkeypatch):
    import harness.steering as steering

    table = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]))
    model = FakeModel(table)

    def fake_batch(tokenizer, texts, max_tokens):
        return TokenBatch(tokens_BS=torch.zeros(len(texts), 3, dtype=torch.long),
                          keep_BS=torch.ones(len(texts), 3, dtype=bool), lengths_B=torch.full((len(texts),), 3))

    monkeypatch.setattr(steering, "tokenize_batch", fake_batch)
    scores, reference = next_token_scores(model, ["a", "b"], "hook", None, [0, 2], [1], 8)
    assert scores["concept"][0] == pytest.approx(math.log(0.7 + 0.1))  # last position, tokens 0 and 2
    assert scores["other"][0] == pytest.approx(math.log(0.1))
    # KL against a reference that differs only at position 0: mean over the 3 positions.
    ref = [torch.log_softmax(torch.zeros(3, 4), -1)] * 2
    scores, _ = next_token_scores(model, ["a", "b"], "hook", None, [0], [], 8, reference=ref)
    p0 = np.array([0.1, 0.2, 0.3, 0.4])
    p2 = np.array([0.7, 0.1, 0.1, 0.1])
    kl = lambda p: float((p * np.log(p / 0.25)).sum())  # noqa: E731
    assert scores["kl"][0] == pytest.approx((kl(p0) + 0 + kl(p2)) / 3)


def test_alpha_choice_and_matching():
    alphas = [0.1, 0.2, 0.4, 0.8]
    assert choose_alpha(alphas, [0.01, 0.1, 0.6, 2.0], 0.5) == 0.2
    assert choose_alpha(alphas, [0.9, 1.0, 2.0, 3.0], 0.5) == 0.1  # nothing within budget: the gentlest
    assert matched_alpha(alphas, [0.1, 0.3, 0.5, 0.9], 0.4) == pytest.approx(math.exp((math.log(0.2) + math.log(0.4)) / 2))
    assert matched_alpha(alphas, [0.1, 0.3, 0.5, 0.9], 5.0) == 0.8


def test_concept_words_are_whole_words():
    assert contains_word("We flew to Paris.", ["Paris"]) and contains_word("french toast", ["French"])
    assert not contains_word("comparison shopping", ["Paris"])


def test_steering_config_errors_name_values():
    with pytest.raises(ConfigError, match=r"steering.alphas \[0.4, 0.1\] must be positive and increasing"):
        SteeringConfig(alphas=(0.4, 0.1), concept_words=("France",))
    with pytest.raises(ConfigError, match=r"unknown key in \[steering\] 'alpha'"):
        SteeringConfig.from_dict({"alpha": [1], "concept_words": ["France"]})
