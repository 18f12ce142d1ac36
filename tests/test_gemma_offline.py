"""What can be checked about the Gemma profile without the hub: ids, widths, hook, layers."""

from __future__ import annotations

import pytest

from harness.core.config import load_profile
from harness.core.errors import MissingResourceError
from harness.features.tables import load_sae, registry_entry


@pytest.fixture(scope="module")
def gemma():
    return load_profile("gemma-2-2b")


def test_sae_ids_exist_in_saelens_registry(gemma):
    for role, expected_l0, neuronpedia in (("coarse", 82, "gemma-2-2b/12-gemmascope-res-16k"),
                                           ("fine", 121, "gemma-2-2b/12-gemmascope-res-262k")):
        cfg = gemma.saes[role]
        entry = registry_entry(cfg.release, cfg.sae_id)
        assert entry["model"] == "gemma-2-2b"
        assert entry["d_sae"] == cfg.d_sae
        assert entry["average_l0"] == expected_l0 == cfg.expected_l0
        assert entry["neuronpedia_id"] == neuronpedia
        assert entry["path"].startswith(f"layer_{gemma.model.layer}/")


def test_widths_and_anchor_ids_fit(gemma):
    assert (gemma.saes["coarse"].d_sae, gemma.saes["fine"].d_sae) == (16_384, 262_144)
    assert all(0 <= c < 16_384 for c in gemma.anchors.coarse)
    assert all(0 <= f < 262_144 for f in gemma.anchors.fine)


def test_model_shape_matches_transformers_gemma2_config(gemma):
    from transformers import Gemma2Config

    config = Gemma2Config()  # its defaults are Gemma 2 2B's
    assert (config.num_hidden_layers, config.hidden_size) == (gemma.model.n_layers, gemma.model.d_model)
    assert gemma.model.hook == "blocks.12.hook_resid_post"


def test_wrong_sae_id_fails_offline_with_choices(gemma):
    from dataclasses import replace

    bad = replace(gemma.saes["coarse"], sae_id="layer_12/width_16k/canonicl")
    with pytest.raises(MissingResourceError, match=r"unknown sae_id 'layer_12/width_16k/canonicl'.*'layer_12/width_16k/canonical'"):
        load_sae(bad, gemma.model.d_model)


def test_offline_model_load_fails_fast_with_instructions(gemma, monkeypatch):
    from harness.world.model import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingResourceError, match=r"google/gemma-2-2b.*huggingface-cli download google/gemma-2-2b"):
        load_model(gemma.model, device="cpu")
