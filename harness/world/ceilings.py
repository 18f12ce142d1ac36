"""Activation ceilings: the largest activation each SAE feature reaches on held-out corpus text.

The selectivity bound needs to know how large a firing the other prompt set could hide: when the
other set fires on a handful of prompts, its mean is bounded by (upper firing rate) x (ceiling).
Ceilings are measured on the held-out corpus sample the SAEs were evaluated on (never on the
claims' prompts) and stored per SAE content hash, so a retrained SAE never borrows stale ones:

- a local SAE: `ceilings.safetensors` beside its folder (with provenance.json), one tensor per role;
- any SAE: the user cache, `ceilings/<sae hash>.safetensors`.

`python -m harness ceilings --profile NAME` measures them for every SAE of a profile;
`train-saes` writes them with the SAEs it trains.
"""

from __future__ import annotations

import json
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


def local_file(cfg: SaeConfig) -> Path:
    return cfg.local_path.parent / FILE_NAME


def cache_file(sae_hash: str) -> Path:
    return cache_dir() / "ceilings" / f"{sae_hash}.safetensors"


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="np") as handle:
        meta = handle.metadata() or {}
        for key in handle.keys():
            out[key] = handle.get_tensor(key)
    return out, meta


def write_ceilings(path: Path, values: dict[str, np.ndarray], hashes: dict[str, str], tokens: int) -> None:
    """Add (or replace) roles in a ceilings file, atomically; metadata ties each to its SAE hash."""
    from safetensors.numpy import save

    existing, meta = _read(path) if path.is_file() else ({}, {})
    existing.update({role: np.ascontiguousarray(v, dtype=np.float32) for role, v in values.items()})
    meta = {**meta, **{f"sae_hash:{role}": h for role, h in hashes.items()},
            **{f"heldout_tokens:{role}": str(tokens) for role in values},
            "what": "per feature, the largest activation on held-out corpus text (harness.features.ceilings)"}
    atomic_write_bytes(path, save(existing, metadata=meta))


def load_ceilings(profile: Profile, hashes: dict[str, str]) -> dict[str, np.ndarray]:
    """The ceilings recorded for exactly these SAEs (by content hash); a role without them is left out."""
    out = {}
    for role, cfg in profile.saes.items():
        for path in ([local_file(cfg)] if cfg.source == "local" else []) + [cache_file(hashes[role])]:
            if not path.is_file():
                continue
            try:
                values, meta = _read(path)
            except Exception:  # noqa: BLE001 - an unreadable file is no ceiling, never a crash
                continue
            key = role if role in values else "ceilings" if "ceilings" in values else None
            recorded = meta.get(f"sae_hash:{role}") or meta.get("sae_hash")
            if key is not None and recorded == hashes[role] and values[key].shape == (cfg.d_sae,):
                out[role] = values[key].astype(np.float64)
                break
    return out


def describe(ceilings: dict[str, np.ndarray]) -> dict[str, dict]:
    return {role: {"features": int(v.size), "median": float(np.median(v)), "max": float(v.max())}
            for role, v in ceilings.items()}




def ceiling_target(profile: Profile, role: str, sae_hash: str) -> Path:
    """Where a role's ceilings are written: beside a local SAE's folder, else the user cache."""
    cfg = profile.saes[role]
    return local_file(cfg) if cfg.source == "local" else cache_file(sae_hash)
