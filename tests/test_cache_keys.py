"""Cache keys follow content: a new revision of a hub model or SAE, or a changed weight file, is a new key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.world.model import hub_revision


def fake_snapshot(cache: Path, repo: str, revision: str, files: dict[str, bytes]) -> None:
    """The Hugging Face cache layout: models--ORG--NAME/{refs/main, snapshots/REV/...}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    for name, data in files.items():
        path = root / "snapshots" / revision / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_model_revision_and_weight_files_change_the_key(tmp_path):
    repo = "google/gemma-2-2b"
    assert hub_revision(repo, cache_dir=tmp_path) == "uncached"
    fake_snapshot(tmp_path, repo, "a" * 40, {"config.json": b"{}", "model.safetensors": b"x" * 10})
    first = hub_revision(repo, cache_dir=tmp_path)
    assert first.startswith("a" * 40)
    fake_snapshot(tmp_path, repo, "b" * 40, {"config.json": b"{}", "model.safetensors": b"x" * 10})
    second = hub_revision(repo, cache_dir=tmp_path)
    assert second != first and second.startswith("b" * 40)  # refs/main moved: a new revision
    fake_snapshot(tmp_path, repo, "b" * 40, {"model.safetensors": b"x" * 11})
    assert hub_revision(repo, cache_dir=tmp_path) != second  # same revision, different weights


def test_gemma_scope_params_file_is_keyed_by_its_snapshot(tmp_path):
    repo, folder = "google/gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82"
    fake_snapshot(tmp_path, repo, "c" * 40, {f"{folder}/params.npz": b"p" * 5, "other/params.npz": b"q"})
    key = hub_revision(repo, cache_dir=tmp_path, weights_glob=f"{folder}/*")
    assert key == f"{'c' * 40}:[('{folder}/params.npz', 5, '{hashlib.sha256(b'p' * 5).hexdigest()}')]"
    fake_snapshot(tmp_path, repo, "c" * 40, {f"{folder}/params.npz": b"P" * 5})  # same size, new content
    assert hub_revision(repo, cache_dir=tmp_path, weights_glob=f"{folder}/*") != key


def test_table_cache_file_names_do_not_carry_the_profile_name(tmp_path, monkeypatch):
    import dataclasses

    from harness.core.config import load_profile
    from harness.features.tables import sae_hash, tables_key
    from harness.world.prompts import load_prompt_sets

    profile = load_profile("smollm2-135m")
    sets = load_prompt_sets(profile)
    hashes = {role: sae_hash(cfg) for role, cfg in profile.saes.items()}
    renamed = dataclasses.replace(profile, name="my-copy")
    assert tables_key(profile, sets, hashes) == tables_key(renamed, sets, hashes)
