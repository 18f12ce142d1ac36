"""The Gemma loading path end to end, offline: `python -m harness stand-in` writes a Hugging Face cache
(a tiny random Gemma-2 and JumpReLU SAEs in Gemma Scope's params.npz layout) and the main job runs on it
through TransformerBridge, SAE.from_pretrained and SAELens's Gemma Scope loader, exactly as the
gemma-2-2b profile would with the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.core.config import load_profile
from harness.core.errors import ConfigError
from harness.core.paths import REPO_ROOT

TINY = "gemma-2-tiny"


def offline_env(hf_home: Path, cache: Path) -> dict:
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "SAE_CLAIMS_CACHE": str(cache),
            "PYTHONPATH": str(REPO_ROOT)}


def harness_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    done = harness_cli("stand-in", "--profile", TINY, str(home), env=offline_env(home, home / "unused"))
    assert done.returncode == 0, done.stderr[-2000:]
    return home


@pytest.fixture(scope="module")
def main_job(hf_home, tmp_path_factory):
    """`pytest claims/ --html=... --profile gemma-2-tiny` against the stand-in, as a user runs it."""
    out = tmp_path_factory.mktemp("tiny-run")
    env = offline_env(hf_home, out / "cache")
    done = subprocess.run([sys.executable, "-m", "pytest", "claims/", f"--html={out / 'reports'}", "--profile", TINY,
                           "-p", "no:cacheprovider", "-q"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    return done, out


def test_stand_in_writes_the_hub_layout(hf_home):
    from huggingface_hub.constants import HF_HUB_CACHE  # noqa: F401 - the layout huggingface_hub reads

    model_repo = hf_home / "hub" / "models--sae-claims--gemma-2-tiny"
    commit = (model_repo / "refs" / "main").read_text()
    snapshot = model_repo / "snapshots" / commit
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
                 "stand_in.json"):
        assert (snapshot / name).is_symlink(), name
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and all((snapshot / shard).is_symlink() for shard in shards)
    weights = snapshot / shards[0]
    import hashlib

    # blobs are named by the sha256 of their content, as the hub names LFS files
    assert Path(os.path.realpath(weights)).name == hashlib.sha256(weights.read_bytes()).hexdigest()
    config = json.loads((snapshot / "config.json").read_text())
    assert config["model_type"] == "gemma2" and config["hidden_size"] == 64
    sae_repo = hf_home / "hub" / "models--sae-claims--tiny-gemma-scope-2b-pt-res"
    sae_snapshot = sae_repo / "snapshots" / (sae_repo / "refs" / "main").read_text()
    with np.load(sae_snapshot / "layer_2/width_4k/average_l0_20/params.npz") as params:
        shapes = {key: params[key].shape for key in params}
    assert shapes == {"W_enc": (64, 4096), "W_dec": (4096, 64), "b_enc": (4096,), "b_dec": (64,),
                      "threshold": (4096,)}


def test_weights_are_sharded_as_the_hub_does():
    from harness.entry.stand_in import shard_tensors

    shapes = [("a", (4, 4)), ("b", (100,)), ("c", (2,)), ("d", (3,))]
    assert shard_tensors(shapes, itemsize=2, max_bytes=40) == [[("a", (4, 4))], [("b", (100,))],
                                                               [("c", (2,)), ("d", (3,))]]


def test_main_job_runs_the_gemma_path_offline(main_job):
    done, out = main_job
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # a verdict (NO-GO), not a usage error
    ledger = json.loads((out / "reports" / "claims.json").read_text())
    assert ledger["verdict"] == "NO-GO" and ledger["exit_status"] == 1
    # Random SAEs: the gate's own rule says NO-GO (before, it counted 11 "sub-features" and held).
    assert ledger["gate"]["gate_claim_verdict"] != "held", ledger["gate"]["reason"]
    assert ledger["gate"]["control_required"] and ledger["gate"]["control_verdict"] in ("GO", "NO-GO")
    assert ledger["stand_in"] == ["model sae-claims/gemma-2-tiny", "coarse SAE sae-claims/tiny-gemma-scope-2b-pt-res",
                                  "fine SAE sae-claims/tiny-gemma-scope-2b-pt-res"]
    assert {r: s["architecture"] for r, s in ledger["saes"].items()} == {"coarse": "jumprelu", "fine": "jumprelu"}
    # thresholds were set for L0 near 12 and 20 on the stand-in's own residuals
    assert 8 < ledger["tables"]["l0"]["coarse"] < 16 and 14 < ledger["tables"]["l0"]["fine"] < 26
    assert "error" not in ledger["tables"]
    # No ceilings were recorded for the hub SAEs: the run measured them on held-out corpus text, into the
    # user cache (one file per SAE and model), so the selectivity bound assumes nothing about unseen firings.
    assert ledger["tables"]["activation_ceilings"] == {
        role: "measured this run on 40,000 held-out corpus tokens" for role in ("coarse", "fine")}
    assert len(list((out / "cache" / "ceilings").glob("*.safetensors"))) == 2
    families = {c["family"] for c in ledger["claims"]}
    assert {"selectivity", "sparsity", "reconstruction", "geometry", "sub_features", "go_gate", "steering"} <= families
    assert all(c["verdict"] in ("held", "refuted", "inconclusive", "not evaluated") for c in ledger["claims"])


def test_report_says_stand_in_and_stays_small(main_job):
    _, out = main_job
    report = out / "reports" / "index.html"
    html = report.read_text()
    assert "stand-in: random weights" in html
    assert report.stat().st_size < 10 * 2**20


def test_a_new_revision_or_weight_file_is_a_cache_miss(hf_home, tmp_path, monkeypatch):
    """Rewrite the stand-in with another seed: the same ids, new weights and commit -> new keys."""
    from harness.features.tables import sae_hash
    from harness.world.model import weights_hash

    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    profile = load_profile(TINY)
    before = weights_hash(profile.model), {r: sae_hash(c) for r, c in profile.saes.items()}
    assert before == (weights_hash(profile.model), {r: sae_hash(c) for r, c in profile.saes.items()})  # stable
    copy = tmp_path / "hub"
    import shutil

    shutil.copytree(hf_home / "hub", copy, symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(copy))
    assert (weights_hash(profile.model), {r: sae_hash(c) for r, c in profile.saes.items()}) == before  # same content
    # one weight file changes in place (same revision, same size): the blob it links to is another
    snapshot = copy / "models--sae-claims--gemma-2-tiny" / "snapshots"
    weights = next(snapshot.glob("*/model-00001-of-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    import hashlib

    blob = copy / "models--sae-claims--gemma-2-tiny" / "blobs" / hashlib.sha256(data).hexdigest()
    blob.write_bytes(data)
    weights.unlink()
    weights.symlink_to(os.path.relpath(blob, weights.parent))
    assert weights_hash(profile.model) != before[0]
    # a new revision of the SAE repo (refs/main moves to a new commit)
    repo = copy / "models--sae-claims--tiny-gemma-scope-2b-pt-res"
    old = (repo / "refs" / "main").read_text()
    shutil.copytree(repo / "snapshots" / old, repo / "snapshots" / ("f" * 40), symlinks=True)
    (repo / "refs" / "main").write_text("f" * 40)
    after = {r: sae_hash(c) for r, c in profile.saes.items()}
    assert all(after[r] != before[1][r] for r in after)


def test_a_local_hf_model_folder_loads(hf_home, tmp_path, monkeypatch):
    """model.path: a folder save_pretrained wrote (here the stand-in's snapshot), no hub involved."""
    import dataclasses

    from harness.world.model import load_model, weights_hash

    snapshot = next((hf_home / "hub" / "models--sae-claims--gemma-2-tiny" / "snapshots").iterdir())
    profile = load_profile(TINY)
    local = dataclasses.replace(profile.model, hf_id="", path=str(snapshot))
    monkeypatch.setenv("SAE_CLAIMS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bridge = load_model(local, device="cpu")
    assert (bridge.cfg.n_layers, bridge.cfg.d_model) == (4, 64)
    assert weights_hash(local) != weights_hash(profile.model)  # keyed by content, not by the hub id


def test_device_map_loads_through_the_bridge(hf_home, monkeypatch):
    """model.device_map goes to TransformerBridge.boot_transformers; with no GPU "auto" places every layer on
    the CPU and the residuals equal a plain load's (several GPUs were not available to test)."""
    import dataclasses

    import torch

    from harness.world.model import load_model
    from harness.world.residuals import resid_at_hook

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    model_cfg = load_profile(TINY).model
    plain = load_model(dataclasses.replace(model_cfg, hf_id="", path=str(_snapshot(hf_home))), device="cpu")
    mapped = load_model(dataclasses.replace(model_cfg, hf_id="", path=str(_snapshot(hf_home)), device_map="auto"))
    tokens = torch.tensor([[2, 10, 20, 30, 40]])
    assert torch.equal(resid_at_hook(plain, tokens, model_cfg.hook, model_cfg.layer),
                       resid_at_hook(mapped, tokens, model_cfg.hook, model_cfg.layer))


def _snapshot(hf_home: Path) -> Path:
    return next((hf_home / "hub" / "models--sae-claims--gemma-2-tiny" / "snapshots").iterdir())


def test_hook_mismatch_is_a_usage_error_before_the_model_loads(hf_home, tmp_path):
    profile = tmp_path / "wrong-hook.toml"
    profile.write_text(f'extends = "{TINY}"\nname = "wrong-hook"\n[model]\nhook = "blocks.1.hook_resid_post"\n')
    env = offline_env(hf_home, tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "pytest", "claims/", "--profile", str(profile), "-p",
                           "no:cacheprovider", "-q"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 4, done.stdout[-2000:]
    text = done.stdout + done.stderr
    assert "'blocks.2.hook_resid_post'" in text and "'blocks.1.hook_resid_post'" in text
    assert "Traceback" not in text and "activations" not in text  # nothing was captured


def test_hook_mismatch_of_a_gemma_scope_sae_fails_in_preflight():
    from harness.entry.preflight import check_hub_saes
    import dataclasses

    profile = load_profile("gemma-2-2b")
    moved = dataclasses.replace(profile, model=dataclasses.replace(profile.model, hook="blocks.10.hook_resid_post"))
    with pytest.raises(ConfigError, match=r"'blocks\.12\.hook_resid_post'.*'blocks\.10\.hook_resid_post'"):
        check_hub_saes(moved)
    check_hub_saes(profile)  # the unmodified profile passes


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "topk"])
def test_any_saelens_folder_loads_as_a_local_sae(architecture, tmp_path):
    """A local SAELens folder of any architecture SAELens saves: loaded, encoded, no TopK assumption."""
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    from harness.core.config import SaeConfig
    from harness.features.tables import load_sae

    classes = {"standard": (StandardSAE, StandardSAEConfig, {}), "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
               "topk": (TopKSAE, TopKSAEConfig, {"k": 4})}
    sae_cls, cfg_cls, extra = classes[architecture]
    sae = sae_cls(cfg_cls(d_in=16, d_sae=32, dtype="float32", device="cpu", **extra))
    sae.cfg.metadata.hook_name = "blocks.2.hook_resid_post"
    sae.save_model(str(tmp_path / architecture))
    cfg = SaeConfig(role="coarse", source="local", d_sae=32, path=str(tmp_path / architecture))
    loaded = load_sae(cfg, 16, hook="blocks.2.hook_resid_post")
    assert loaded.cfg.architecture() == architecture
    assert loaded.encode(torch.randn(3, 16)).shape == (3, 32)
    with pytest.raises(ConfigError, match="blocks.5.hook_resid_post"):
        load_sae(cfg, 16, hook="blocks.5.hook_resid_post")


def test_stand_in_refuses_what_it_cannot_write(tmp_path):
    done = harness_cli("stand-in", "--profile", "smollm2-135m", str(tmp_path / "hub"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "stand-in has no recipe for model" in done.stderr and "google/gemma-2-2b" in done.stderr
    (tmp_path / "file").write_text("")
    done = harness_cli("stand-in", "--profile", TINY, str(tmp_path / "file"))
    assert done.returncode == 2 and "is a file" in done.stderr
    assert not (tmp_path / "hub").exists()  # nothing half-written


def test_a_mismatch_found_only_when_the_sae_loads_is_still_a_usage_error(hf_home, tmp_path):
    """The tiny coarse folder (width_512) names no width SAELens knows, so the profile's d_sae is checked
    when the SAE loads: still exit 4 with one line, never a verdict, and before the model loads."""
    profile = tmp_path / "wrong-width.toml"
    profile.write_text(f'extends = "{TINY}"\nname = "wrong-width"\n[saes.coarse]\nd_sae = 256\n')
    env = offline_env(hf_home, tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "pytest", "claims/", "--profile", str(profile), "--html",
                           str(tmp_path / "out"), "-p", "no:cacheprovider", "-q"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout[-2000:]
    assert "USAGE ERROR (exit 4)" in done.stdout and "d_sae=512" in done.stdout and "d_sae=256" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr and not (tmp_path / "out").exists()


def test_the_stand_in_is_reproducible(hf_home, tmp_path):
    """Same profile and seed: byte-identical blobs, so the same commits (and the same cache keys)."""
    done = harness_cli("stand-in", "--profile", TINY, str(tmp_path), env=offline_env(tmp_path, tmp_path / "unused"))
    assert done.returncode == 0, done.stderr[-2000:]
    for repo in ("models--sae-claims--gemma-2-tiny", "models--sae-claims--tiny-gemma-scope-2b-pt-res"):
        assert (tmp_path / "hub" / repo / "refs" / "main").read_text() == \
            (hf_home / "hub" / repo / "refs" / "main").read_text()


def test_revalidation_after_a_model_and_sae_update_names_what_changed(main_job, tmp_path):
    """The re-validation loop at tiny scale: the stand-in rewritten with another seed is an updated model
    and updated SAEs; `--baseline` names both, follows every declared feature by decoder cosine, and claims
    on features without a match say to re-run discover (random SAEs share no features: nothing matches)."""
    _, out = main_job
    baseline = out / "reports" / "claims.json"
    home = tmp_path / "hf-updated"
    done = harness_cli("stand-in", "--profile", TINY, "--seed", "1", str(home), env=offline_env(home, home / "unused"))
    assert done.returncode == 0, done.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "pytest", "claims/", f"--html={tmp_path / 'reports'}", "--profile", TINY,
                          "--baseline", str(baseline), "-p", "no:cacheprovider", "-q"], cwd=REPO_ROOT,
                         env=offline_env(home, tmp_path / "cache"), capture_output=True, text=True, timeout=900)
    text = run.stdout + run.stderr
    assert run.returncode == 1 and "Traceback" not in text, text[-3000:]
    assert "diff vs baseline" in text and "changed: model weights (weights " in text
    assert "coarse SAE (weights " in text and "fine SAE (weights " in text
    ledger = json.loads((tmp_path / "reports" / "claims.json").read_text())
    declared = load_profile(TINY)
    followed = {m["name"]: m for m in ledger["diff"]["followed"]}
    assert set(followed) >= {f"coarse-{c}" for c in declared.anchors.coarse} | {f"fine-{f}" for f in declared.anchors.fine}
    assert all(m["new"] is None and m["cosine"] < 0.7 for m in followed.values())
    gate = next(c for c in ledger["claims"] if c["family"] == "go_gate")
    assert gate["verdict"] == "not evaluated" and "python -m harness discover" in gate["reason"]
    assert ledger["verdict"] == "NO-GO"
