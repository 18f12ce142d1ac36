"""Train the embedded profile's coarse and fine SAEs with SAELens's training classes.

`python -m harness train-saes --profile PROFILE [--out DIR]` trains both, deterministically:
corpus (pinned registry packages) -> residuals at the hook (sharded, resumable) ->
TopK SAEs (`TopKTrainingSAE` + `SAETrainer`) -> held-out evaluation (SAEBench core
definitions) -> float16 SAELens folders + provenance.json. Each finished stage is kept in
the cache, so an interrupted run resumes from the last finished stage or shard.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from harness.core.version import __version__
from harness.core.config import Profile
from harness.world.corpus import build_corpus, split_heldout
from harness.world.model import load_model, weights_hash
from harness.core.paths import atomic_dir, atomic_write_text, cache_dir
from harness.world.residuals import batched, ce_loss_score_batches, pack_rows, resid_at_hook


@dataclass(frozen=True)
class SaeRecipe:
    d_sae: int
    k: int
    lr: float
    epochs: float
    batch_tokens: int = 4096


# Chosen before training. Width ratio 8 (the suggestion). k: Gemma Scope's
# L0/d_model is ~82/2304 = 3.6%, i.e. ~20 of 576; k=32 coarse leaves headroom for
# explained variance >= 0.8, and the fine SAE gets 2x the budget as Gemma Scope's 262K does.
RECIPES = {
    "coarse": SaeRecipe(d_sae=2048, k=32, lr=5e-4, epochs=2.0),
    "fine": SaeRecipe(d_sae=16384, k=64, lr=5e-4, epochs=1.0),
}
DEFAULT_TRAIN_TOKENS = 1_200_000
DEAD_FEATURE_WINDOW_STEPS = 10
HELDOUT_TOKENS = 40_000
SEQ_TOKENS = 128
SHARD_TOKENS = 100_000


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def chunk_token_rows(tokenizer, paragraphs: list[str], seq_tokens: int) -> list[list[int]]:
    """Each paragraph tokenised alone, cut into rows of BOS + up to seq_tokens-1 tokens."""
    rows = []
    bos = tokenizer.bos_token_id
    for text in paragraphs:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), seq_tokens - 1):
            piece = ids[start : start + seq_tokens - 1]
            if len(piece) >= 8:
                rows.append([bos, *piece])
    return rows


def length_bucketed(rows: list[list[int]], block: int = 1024) -> list[list[int]]:
    """Sort by length inside blocks of the (already shuffled) order: far less padding per batch."""
    out = []
    for start in range(0, len(rows), block):
        out += sorted(rows[start : start + block], key=len)
    return out


def harvest(model, profile: Profile, rows: list[list[int]], n_tokens: int, out_dir: Path,
            desc: str, batch_rows: int = 32) -> torch.Tensor:
    """Residuals at the hook for the kept positions, float16, in resumable shards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hook, layer = profile.model.hook, profile.model.layer
    shards = sorted(out_dir.glob("shard-*.safetensors"))
    have = sum(load_file(s)["acts"].shape[0] for s in shards)
    rows_done = int(json.loads((out_dir / "progress.json").read_text())["rows"]) if shards else 0
    buffer: list[torch.Tensor] = []
    buffered = 0
    bar = tqdm(total=n_tokens, initial=min(have, n_tokens), desc=desc, unit="tok")
    position = rows_done
    for batch in batched(rows[rows_done:], batch_rows):
        if have + buffered >= n_tokens:
            break
        token_batch = pack_rows(batch, model.tokenizer)
        acts = resid_at_hook(model, token_batch.tokens_BS, hook, layer)
        kept = acts[token_batch.keep_BS].to(torch.float16)
        buffer.append(kept)
        buffered += kept.shape[0]
        position += len(batch)
        bar.update(kept.shape[0])
        if buffered >= SHARD_TOKENS:
            _write_shard(out_dir, len(shards), torch.cat(buffer), position)
            shards.append(out_dir / f"shard-{len(shards):04d}.safetensors")
            have += buffered
            buffer, buffered = [], 0
    if buffer:
        _write_shard(out_dir, len(shards), torch.cat(buffer), position)
    bar.close()
    all_acts = torch.cat([load_file(s)["acts"] for s in sorted(out_dir.glob("shard-*.safetensors"))])
    return all_acts[:n_tokens]


def _write_shard(out_dir: Path, index: int, acts: torch.Tensor, rows_done: int) -> None:
    path = out_dir / f"shard-{index:04d}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({"acts": acts.contiguous()}, str(tmp))
    tmp.replace(path)
    atomic_write_text(out_dir / "progress.json", json.dumps({"rows": rows_done}))


def activation_batches(acts: torch.Tensor, batch_tokens: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled batches, a new permutation every epoch, from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(acts.shape[0], generator=generator)
        for start in range(0, acts.shape[0] - batch_tokens + 1, batch_tokens):
            yield acts[order[start : start + batch_tokens]].float()


ROLE_SEED_OFFSET = {"coarse": 1, "fine": 2}


def role_seed(seed: int, role: str) -> int:
    """Distinct seeds per role: with one seed, the fine SAE's first rows would start as exact copies
    of the coarse SAE's rows, planting artificial cross-resolution matches."""
    return seed * 100 + ROLE_SEED_OFFSET[role]


@torch.no_grad()
def data_init(sae, acts: torch.Tensor, role: str, seed: int, pool: int = 65_536) -> None:
    """Start b_dec at the data mean and decoder rows at centred activation samples.

    SmolLM2's residual stream carries a large constant offset (mean norm ~118 of a median ~159,
    mostly two dimensions). From a zero b_dec the few features aligned with that offset win
    TopK on every token and most others never fire (65% dead in a first attempt). Coarse and
    fine draw their samples from disjoint halves of the tokens (even / odd positions), so no
    fine row starts as a copy of a coarse row.
    """
    generator = torch.Generator().manual_seed(seed)
    offset = ROLE_SEED_OFFSET[role] - 1
    candidates = torch.arange(offset, acts.shape[0], 2)
    sample = acts[candidates[torch.randint(0, candidates.numel(), (pool,), generator=generator)]].float()
    scale = sae.cfg.d_in**0.5 / sample.norm(dim=1).mean()  # SAELens's expected_average_only_in factor
    mean = sample.mean(0)
    rows = sample[torch.randint(0, pool, (sae.cfg.d_sae,), generator=generator)] - mean
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-6)
    norms = sae.W_dec.norm(dim=1, keepdim=True)  # keep SAELens's decoder init norm
    sae.b_dec.copy_(mean * scale)
    sae.W_dec.copy_(rows * norms)
    sae.W_enc.copy_(sae.W_dec.T)


def train_sae(acts: torch.Tensor, recipe: SaeRecipe, profile: Profile, role: str, seed: int, device: str):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    seed = role_seed(seed, role)
    seed_everything(seed)
    cfg = TopKTrainingSAEConfig(
        d_in=profile.model.d_model, d_sae=recipe.d_sae, k=recipe.k, dtype="float32", device=device,
        normalize_activations="expected_average_only_in", aux_loss_coefficient=1.0,
    )
    cfg.metadata.model_name = profile.model.name
    cfg.metadata.hook_name = profile.model.hook
    sae = TopKTrainingSAE(cfg)
    data_init(sae, acts, role, seed)
    total = int(recipe.epochs * acts.shape[0]) // recipe.batch_tokens * recipe.batch_tokens
    steps = total // recipe.batch_tokens
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total, train_batch_size_samples=recipe.batch_tokens, lr=recipe.lr,
        lr_end=recipe.lr / 10, lr_scheduler_name="cosineannealing", lr_warm_up_steps=max(1, steps // 20),
        lr_decay_steps=steps // 5, device=device, autocast=device == "cuda",
        # AuxK revives a feature once it has been silent this many steps (10 x 4,096 tokens); a window
        # of a quarter of training left half the coarse features dead in a first attempt.
        dead_feature_window=DEAD_FEATURE_WINDOW_STEPS, feature_sampling_window=max(100, steps // 2),
        n_batches_for_norm_estimate=50,
    )
    class StepProgressTrainer(SAETrainer):
        """SAELens moves its bar every 100 steps; a short training (48 steps) would show 0 until the end."""

        def _update_pbar(self, step_output, pbar, update_interval: int = 100):
            super()._update_pbar(step_output, pbar, update_interval=1)

    trainer = StepProgressTrainer(trainer_cfg, sae, activation_batches(acts, recipe.batch_tokens, seed))
    started = time.time()
    trained = trainer.fit()
    return trained, {"steps": steps, "tokens_seen": total, "seconds": round(time.time() - started, 1)}


@torch.no_grad()
def evaluate_sae(sae, model, profile: Profile, heldout_acts: torch.Tensor, heldout_rows: list[list[int]],
                 ce_rows: int = 64) -> dict:
    """SAEBench core metrics on held-out text: L0, explained variance, CE-loss score, dead fraction."""
    x = heldout_acts.float().to(sae.device)
    feats = torch.cat([sae.encode(chunk) for chunk in x.split(4096)])
    recon = torch.cat([sae.decode(chunk) for chunk in feats.split(4096)])
    l0 = (feats > 0).float().sum(-1).mean().item()
    residual = ((x - recon) ** 2).sum()
    total = ((x - x.mean(0, keepdim=True)) ** 2).sum()
    explained_variance = 1 - (residual / total).item()
    dead_fraction = ((feats > 0).sum(0) == 0).float().mean().item()
    ce = ce_loss_score(sae, model, profile, heldout_rows[:ce_rows])
    ce.pop("per_prompt", None)
    return {"l0": round(l0, 2), "explained_variance": round(explained_variance, 4),
            "dead_fraction": round(dead_fraction, 4), **ce, "heldout_tokens": int(x.shape[0])}


def ce_loss_score(sae, model, profile: Profile, rows: list[list[int]], batch_rows: int = 16) -> dict:
    return ce_loss_score_batches(sae, model, profile.model.hook,
                                 [pack_rows(batch, model.tokenizer) for batch in batched(rows, batch_rows)])


def save_sae_float16(sae, out_dir: Path) -> None:
    """SAELens inference format (cfg.json + sae_weights.safetensors), weights in float16."""
    from sae_lens import SAE

    with atomic_dir(out_dir) as tmp:
        inference = sae.to_inference_sae() if hasattr(sae, "to_inference_sae") else sae
        inference.save_model(str(tmp))
        weights_path = tmp / "sae_weights.safetensors"
        state = load_file(str(weights_path))
        save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(weights_path))
        cfg = json.loads((tmp / "cfg.json").read_text())
        cfg["dtype"] = "float32"  # loaded weights are upcast; storage is float16
        (tmp / "cfg.json").write_text(json.dumps(cfg, indent=2))
        for path in tmp.iterdir():
            path.chmod(0o644)
        SAE.load_from_disk(str(tmp))  # refuse to ship a folder SAELens cannot load


def library_versions() -> dict[str, str]:
    from importlib.metadata import version
    names = ["torch", "sae-lens", "transformer-lens", "transformers", "numpy", "scipy", "statsmodels"]
    out = {name: version(name) for name in names}
    out["python"] = platform.python_version()
    out["harness"] = __version__
    return out


def heldout_residuals(model, profile: Profile, heldout_paragraphs: list[str], tokens: int
                      ) -> tuple[torch.Tensor, list[list[int]]]:
    """Residuals at the hook on the held-out paragraphs, and their token rows. They do not depend on a
    training seed: harvested once per profile and model, shared by train-saes and `ceilings`."""
    rows = length_bucketed(chunk_token_rows(model.tokenizer, heldout_paragraphs, SEQ_TOKENS))
    work = cache_dir() / "training" / f"{profile.name}-{weights_hash(profile.model)}-heldout"
    return harvest(model, profile, rows, tokens, work, "residuals (held-out)"), rows


def training_targets(profile: Profile, roles=("coarse", "fine"), out_root: Path | None = None,
                     overwrite: bool = False) -> dict[str, Path]:
    """Where each role's SAE is written: `out_root/<role>`, else the profile's own `saes.<role>.path`.

    Refuses, before anything loads, a folder that already holds an SAE unless `overwrite`, and a packaged
    SAE (fixtures/saes) even more plainly: the repository's data changes only when asked for."""
    from harness.core.errors import HarnessError
    from harness.core.paths import SAES_DIR

    targets = {}
    for role in roles:
        cfg = profile.saes.get(role)
        if out_root is not None:
            targets[role] = (Path(out_root) / role).resolve()
        elif cfg is None or cfg.source != "local":
            raise HarnessError(f"saes.{role} of profile {profile.name!r} is not a local folder "
                               f"({cfg.source if cfg else 'missing'}); give --out DIR to train into a folder")
        else:
            targets[role] = cfg.local_path
    for role, target in targets.items():
        if target.exists() and not target.is_dir():
            raise HarnessError(f"train-saes target {str(target)!r} for the {role} SAE is a file; give a folder")
        if (target / "cfg.json").exists() and not overwrite:
            packaged = SAES_DIR.resolve() in target.resolve().parents
            what = "the repository's packaged" if packaged else "an existing"
            raise HarnessError(f"train-saes would overwrite {what} {role} SAE at {str(target)!r}; give --out DIR, "
                               f"point saes.{role}.path at a new folder (and train only that role with --roles), "
                               "or pass --overwrite to replace it")
    return targets


def train_saes(profile: Profile, *, tokens: int = DEFAULT_TRAIN_TOKENS, seed: int = 0,
               device: str = "auto", roles=("coarse", "fine"), forbidden_prompts: list[str] | None = None,
               out_root: Path | None = None, overwrite: bool = False,
               heldout_tokens: int = HELDOUT_TOKENS) -> dict:
    """The whole rebuild. Returns the provenance record it wrote (with `written`: role -> folder)."""
    from harness.world.model import resolve_device

    targets = training_targets(profile, roles, out_root, overwrite)
    device = resolve_device(device)
    seed_everything(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = cache_dir() / "training" / f"{profile.name}-{weights_hash(profile.model)}-seed{seed}"
    model = load_model(profile.model, device=device)
    paragraphs, corpus_info = build_corpus(forbidden_prompts or [])
    train_paras, heldout_paras = split_heldout(paragraphs)
    random.Random(seed).shuffle(train_paras)
    train_rows = length_bucketed(chunk_token_rows(model.tokenizer, train_paras, SEQ_TOKENS))
    started = time.time()
    train_acts = harvest(model, profile, train_rows, tokens, work / f"train-{tokens}", "residuals (train)")
    heldout_acts, heldout_rows = heldout_residuals(model, profile, heldout_paras, heldout_tokens)
    harvest_seconds = round(time.time() - started, 1)
    command = (f"python -m harness train-saes --profile {profile.path or profile.name} --tokens {tokens} "
               f"--seed {seed} --roles {','.join(roles)} --heldout-tokens {heldout_tokens}"
               + (f" --out {out_root}" if out_root is not None else " --overwrite"))
    written = {}
    for role in roles:
        target = targets[role]
        # Provenance sits beside the SAE folders (the layout `info` and the ledger read).
        provenance_path = target.parent / "provenance.json"
        provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
        provenance.update({
            "profile": profile.name, "model": profile.model.name, "hook": profile.model.hook,
            "corpus": corpus_info, "train_tokens": int(train_acts.shape[0]),
            "heldout_tokens": int(heldout_acts.shape[0]), "sequence_tokens": SEQ_TOKENS,
            "excluded_positions": "first position (BOS) and every special token",
            "seed": seed, "device": device, "harvest_seconds": harvest_seconds,
            "command": command, "library_versions": library_versions(),
        })
        provenance.setdefault("saes", {})
        recipe = RECIPES[role]
        sae, stats = train_sae(train_acts, recipe, profile, role, seed, device)
        sae.eval()
        quality = evaluate_sae(sae, model, profile, heldout_acts, heldout_rows)
        save_sae_float16(sae, target)
        # Re-evaluate the float16 artefact as shipped: the numbers must describe what loads.
        from sae_lens import SAE
        shipped = SAE.load_from_disk(str(target), device=device)
        shipped_quality = evaluate_sae(shipped, model, profile, heldout_acts, heldout_rows)
        provenance["saes"][role] = {
            "architecture": "topk", "d_sae": recipe.d_sae, "k": recipe.k, "lr": recipe.lr,
            "epochs": recipe.epochs, "batch_tokens": recipe.batch_tokens, "seed": seed, "folder": target.name,
            **stats, "quality_float32": quality, "quality": shipped_quality,
        }
        atomic_write_text(provenance_path, json.dumps(provenance, indent=2))
        from harness.world.ceilings import FILE_NAME, measure_ceilings, model_key, sae_folder_digest, write_ceilings

        # The largest activation of each feature on the held-out text: the selectivity bound's ceiling.
        write_ceilings(target / FILE_NAME, measure_ceilings(shipped, heldout_acts.float()),
                       sae_hash=sae_folder_digest(target), model=model_key(weights_hash(profile.model),
                                                                            profile.model.dtype),
                       tokens=int(heldout_acts.shape[0]))
        written[role] = str(target)
        print(f"[train-saes] wrote the {role} SAE to {target} (provenance: {provenance_path})", flush=True)
    return {"written": written, "saes": {role: json.loads((Path(path).parent / "provenance.json").read_text())
                                         ["saes"][role] for role, path in written.items()}}
