"""Training helpers that decide SAE quality: data-based init, role seeds, held-out split."""

from __future__ import annotations

import torch

from harness.world.corpus import split_heldout
from harness.world.training import data_init, role_seed


def test_data_init_centres_on_the_data_and_uses_disjoint_tokens():
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    acts = torch.randn(4000, 16) + torch.tensor([50.0] + [0.0] * 15)  # a large constant offset, as in SmolLM2
    saes = {}
    for role in ("coarse", "fine"):
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=16, d_sae=32, k=4))
        init_norm = sae.W_dec.norm(dim=1).mean().item()
        data_init(sae, acts, role, seed=0, pool=1000)
        scale = 16**0.5 / acts.norm(dim=1).mean()
        assert torch.allclose(sae.b_dec / scale, acts.mean(0), atol=0.3)  # b_dec sits at the data mean
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.full((32,), init_norm), atol=1e-5)
        assert torch.equal(sae.W_enc, sae.W_dec.T)
        assert sae.W_dec[:, 0].abs().mean() < 0.5 * init_norm  # rows are centred: the offset is gone
        saes[role] = sae
    coarse = saes["coarse"].W_dec / saes["coarse"].W_dec.norm(dim=1, keepdim=True)
    fine = saes["fine"].W_dec / saes["fine"].W_dec.norm(dim=1, keepdim=True)
    assert (coarse @ fine.T).abs().max() < 0.999  # no fine row starts as a copy of a coarse row


def test_role_seeds_differ():
    assert role_seed(0, "coarse") != role_seed(0, "fine")


def test_heldout_split_is_stable_and_small():
    paragraphs = [f"paragraph number {i}" for i in range(2000)]
    train, heldout = split_heldout(paragraphs)
    assert 40 <= len(heldout) <= 160 and len(train) + len(heldout) == 2000
    assert split_heldout(list(reversed(paragraphs)))[1] == list(reversed(heldout))
