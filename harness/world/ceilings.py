"""Activation ceilings: the largest activation each SAE feature reaches on held-out corpus text.

The selectivity bound needs to know how large a firing the other prompt set could hide: when the
other set fires on a handful of prompts, its mean is bounded by (upper firing rate) x (ceiling).
Ceilings are measured on the held-out corpus sample the SAEs were evaluated on (never on the
claims' prompts), one file per SAE, tied to the SAE's content hash and to the model's weights and
dtype they were measured with, so a retrained SAE or an updated model never borrows stale ones:

- a local SAE: `ceilings.safetensors` inside its SAELens folder (SAELens ignores the extra file;
  the SAE's content hash covers only cfg.json and the weights);
- any SAE: the user cache, `ceilings/<sae hash>-<model key>.safetensors`.

`python -m harness ceilings --profile NAME` measures them for every SAE of a profile;
`train-saes` writes them with the SAEs it trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.core.config import Profile, SaeConfig
from harness.core.paths import atomic_write_bytes, cache_dir

FILE_NAME = "ceilings.safetensors"


@torch.no_grad()
def measure_ceilings(sae, acts: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """Per feature, the largest activation over the token residuals `acts` ([T, d_model])."""
    best = None
    for part in acts.split(chunk):
        feats = sae.encode(part.to(sae.W_dec.device, sae.W_dec.dtype)).float().amax(0).cpu()
        best = feats if best is None else torch.maximum(best, feats)
    return best.clamp_min(0).numpy().astype(np.float32)


def sae_folder_digest(folder: Path) -> str:
    """What identifies a local SAE: the bytes of its config and weights (harness.features.tables.sae_hash)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("cfg.json", "sae_weights.safetensors"):
        path = Path(folder) / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def model_key(weights: str, dtype: str) -> str:
    return f"{weights}:{dtype}"


def local_file(cfg: SaeConfig) -> Path:
    return cfg.local_path / FILE_NAME


def cache_file(sae_hash: str, model: str) -> Path:
    return cache_dir() / "ceilings" / f"{sae_hash}-{model.replace(':', '-')}.safetensors"


def ceiling_target(cfg: SaeConfig, sae_hash: str, model: str) -> Path:
    """Where an SAE's ceilings are written: inside a local SAE's folder, else the user cache."""
    return local_file(cfg) if cfg.source == "local" else cache_file(sae_hash, model)


def _read(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return handle.get_tensor("ceilings"), dict(handle.metadata() or {})


def write_ceilings(path: Path, values: np.ndarray, *, sae_hash: str, model: str, tokens: int) -> None:
    """One SAE's ceilings, atomically, with what they are valid for."""
    from safetensors.numpy import save

    meta = {"sae_hash": sae_hash, "model": model, "heldout_tokens": str(tokens),
            "what": "per feature, the largest activation on held-out corpus text (harness.world.ceilings)"}
    atomic_write_bytes(path, save({"ceilings": np.ascontiguousarray(values, dtype=np.float32)}, metadata=meta))


def load_ceilings(profile: Profile, hashes: dict[str, str], model: str) -> dict[str, np.ndarray]:
    """The ceilings recorded for exactly these SAEs and this model; a role without them is left out."""
    out = {}
    for role, cfg in profile.saes.items():
        for path in ([local_file(cfg)] if cfg.source == "local" else []) + [cache_file(hashes[role], model)]:
            if not path.is_file():
                continue
            try:
                values, meta = _read(path)
            except Exception:  # noqa: BLE001 - an unreadable file is no ceiling, never a crash
                continue
            if meta.get("sae_hash") == hashes[role] and meta.get("model") == model and values.shape == (cfg.d_sae,):
                out[role] = values.astype(np.float64)
                break
    return out


def describe(values: np.ndarray) -> dict:
    return {"features": int(values.size), "median": float(np.median(values)), "max": float(values.max()),
            "zero": int((values == 0).sum())}
