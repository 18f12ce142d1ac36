"""`train-saes` writes where it is told and never over the repository's packaged SAEs unless asked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.core.paths import FIXTURES_DIR
from harness.entry.cli import main


def fixtures_digest() -> dict[str, str]:
    return {str(p.relative_to(FIXTURES_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(FIXTURES_DIR.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def child_profile(folder: Path) -> Path:
    """A researcher's profile: the embedded one with its fine SAE in a folder of their own."""
    path = folder / "mine.toml"
    path.write_text('extends = "smollm2-135m"\nname = "mine"\n[saes.fine]\npath = "saes/fine-seed7"\n')
    return path


@pytest.mark.parametrize("argv, message", [
    ([], "would overwrite the repository's packaged coarse SAE"),
    (["--roles", "coarse,fine"], "would overwrite the repository's packaged coarse SAE"),
    (["--roles", "fine,medium"], "--roles: unknown role 'medium'; valid choices: 'coarse', 'fine'"),
    (["--tokens", "100", "--out", "x"], "--tokens 100 is below one training batch"),
    (["--seed", "-1", "--out", "x"], "--seed -1 must be >= 0"),
])
def test_refused_before_the_model_loads(argv, message, capsys, monkeypatch):
    monkeypatch.setattr("harness.world.training.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    before = fixtures_digest()
    assert main(["train-saes", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert fixtures_digest() == before


def test_a_child_profile_trains_into_its_own_folder_and_fixtures_stay_byte_identical(tmp_path, capsys):
    profile = child_profile(tmp_path)
    before = fixtures_digest()
    assert main(["train-saes", "--profile", str(profile), "--roles", "fine", "--tokens", "8192",
                 "--heldout-tokens", "1024", "--seed", "7"]) == 0
    assert fixtures_digest() == before
    out = capsys.readouterr()
    target = tmp_path / "saes" / "fine-seed7"
    assert f"wrote the fine SAE to {target}" in out.out
    result = json.loads(out.out[out.out.index("{"):])
    assert result["written"] == {"fine": str(target)}
    assert (target / "sae_weights.safetensors").is_file() and (target / "cfg.json").is_file()
    provenance = json.loads((tmp_path / "saes" / "provenance.json").read_text())
    assert provenance["saes"]["fine"]["seed"] == 7 and provenance["saes"]["fine"]["steps"] == 2
    assert "--roles fine" in provenance["command"]
    from harness.world.ceilings import _read, sae_folder_digest

    values, meta = _read(target / "ceilings.safetensors")  # the selectivity bound's ceilings
    assert values.shape == (16384,) and meta["sae_hash"] == sae_folder_digest(target)
    assert "2| mse_loss" in out.err  # the bar moved at every training step (SAELens moves it every 100)
    # A second run into the same folder is refused without --overwrite.
    assert main(["train-saes", "--profile", str(profile), "--roles", "fine", "--tokens", "8192"]) == 2
    assert "would overwrite an existing fine SAE" in capsys.readouterr().err
