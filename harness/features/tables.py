"""SAEs and pooled feature tables, cached on disk by content hash.

profile -> prompts -> residuals at the hook (forward stopped there) -> each SAE encodes
the kept tokens in chunks and pools per prompt on the fly (max by default, mean as an
option) -> FeatureTables. A dense tokens x d_sae matrix is never held for the whole set:
only one batch of tokens is encoded at a time.
"""

from __future__ import annotations

import hashlib
import io
import math
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.core.version import __version__
from harness.core.config import Profile, SaeConfig
from harness.core.errors import ConfigError, MissingResourceError
from harness.world.model import weights_hash
from harness.core.paths import atomic_write_bytes, cache_dir
from harness.world.prompts import PromptSets
from harness.world.residuals import batched, ce_loss_score_batches, resid_at_hook, tokenize_batch

TABLE_FORMAT = "2"  # 2: per-prompt CE losses (for the CE-loss score interval)


def registry_entry(release: str, sae_id: str) -> dict:
    """SAELens's bundled registry record for a pretrained SAE (offline): path, Neuronpedia id, L0.

    A wrong release or id raises one error naming it and listing the closest valid choices.
    """
    import difflib
    import re

    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        close = difflib.get_close_matches(release, list(directory), n=8, cutoff=0.5)
        raise MissingResourceError(f"unknown SAELens release {release!r}; closest valid choices: {close} (or a hub "
                                   "repo id 'owner/repo' with sae_id = the folder and loader = a SAELens loader)")
    lookup = directory[release]
    if sae_id not in lookup.saes_map:
        close = difflib.get_close_matches(sae_id, list(lookup.saes_map), n=8, cutoff=0.5)
        raise MissingResourceError(f"unknown sae_id {sae_id!r} in release {release!r}; closest valid choices: {close}")
    path = lookup.saes_map[sae_id]
    l0 = re.search(r"average_l0_(\d+)", path)
    width = re.search(r"width_(\d+)k", sae_id)
    return {"release": release, "sae_id": sae_id, "repo_id": lookup.repo_id, "model": lookup.model, "path": path,
            "neuronpedia_id": (lookup.neuronpedia_id or {}).get(sae_id, ""),
            "average_l0": int(l0.group(1)) if l0 else None,
            # "16k" is 2**14 and "262k" is 2**18: widths are powers of two, named in thousands.
            "d_sae": 2 ** round(math.log2(int(width.group(1)) * 1000)) if width else None}


def in_registry(release: str) -> bool:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return release in get_pretrained_saes_directory()


def sae_location(sae_cfg: SaeConfig) -> tuple[str, str, str]:
    """(hub repo, folder in it, SAELens loader name) of a pretrained SAE, checked offline.

    A release in SAELens's registry names its repo, folder and loader; a release written as a
    hub repo id ("owner/repo") takes sae_id as the folder and `loader` (default "sae_lens").
    """
    from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if sae_cfg.release in directory or "/" not in sae_cfg.release:
        entry = registry_entry(sae_cfg.release, sae_cfg.sae_id)  # a typo fails here, with choices
        loader = directory[sae_cfg.release].conversion_func or "sae_lens"
        return entry["repo_id"], entry["path"], loader
    loader = sae_cfg.loader or "sae_lens"
    if loader not in NAMED_PRETRAINED_SAE_LOADERS:
        raise ConfigError(f"saes.{sae_cfg.role}.loader {loader!r} is not a SAELens loader; valid choices: "
                          f"{sorted(NAMED_PRETRAINED_SAE_LOADERS)}")
    return sae_cfg.release, sae_cfg.sae_id, loader


def _shapes_from_weights(loader):
    """Wrap a SAELens loader so d_in and d_sae come from the weights: Gemma Scope's loader reads them
    from the repo and folder names, which only Google's own repos follow."""
    def load(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        cfg, state, sparsity = loader(repo_id=repo_id, folder_name=folder_name, device=device,
                                      force_download=force_download, cfg_overrides=cfg_overrides)
        if "W_dec" in state:
            cfg["d_sae"], cfg["d_in"] = (int(n) for n in state["W_dec"].shape)
        return cfg, state, sparsity
    return load


def hook_mismatch(where: str, sae_hook: str, model_hook: str) -> ConfigError:
    return ConfigError(f"{where} was trained at hook {sae_hook!r}; the profile reads model.hook {model_hook!r}. "
                       "Point model.hook at the SAE's hook or use SAEs trained at yours")


def sae_hook_name(sae) -> str:
    cfg = sae.cfg
    return getattr(getattr(cfg, "metadata", None), "hook_name", None) or getattr(cfg, "hook_name", None) or ""


def load_sae(sae_cfg: SaeConfig, d_in: int, device: str = "cpu", hook: str | None = None):
    """A SAELens SAE: from a local SAELens folder, a hub release or repo, or random weights.

    With `hook`, an SAE trained at another hook is a ConfigError naming both (SAEs load before the
    model, so this fails before any model weights are read).
    """
    from sae_lens import SAE

    if sae_cfg.source == "local":
        path = sae_cfg.local_path
        if not (path / "cfg.json").is_file():
            raise MissingResourceError(
                f"SAE folder {str(path)!r} has no cfg.json; rebuild it with "
                "`python -m harness train-saes --profile smollm2-135m`"
            )
        sae = SAE.load_from_disk(str(path), device=device)
    elif sae_cfg.source == "pretrained":
        from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS

        repo_id, folder, loader = sae_location(sae_cfg)
        converter = None if repo_id != sae_cfg.release else _shapes_from_weights(NAMED_PRETRAINED_SAE_LOADERS[loader])
        try:
            sae = SAE.from_pretrained(sae_cfg.release, sae_cfg.sae_id, device=device, converter=converter)
        except Exception as exc:  # noqa: BLE001 - network/hub failures come in many types
            raise MissingResourceError(
                f"could not load SAE {sae_cfg.release}/{sae_cfg.sae_id} (repo {repo_id}, folder {folder}) "
                f"({type(exc).__name__}: {exc}). It needs Hugging Face access or a local hub cache "
                "(HF_HOME; `python -m harness stand-in` writes one with random weights); on an offline machine "
                "use the smollm2-135m profile."
            ) from exc
        if isinstance(sae, tuple):  # older SAELens returned (sae, cfg, sparsity)
            sae = sae[0]
    else:
        sae = random_sae(d_in, sae_cfg.d_sae, device=device, seed=sae_cfg.d_sae)
    if sae.cfg.d_sae != sae_cfg.d_sae or sae.cfg.d_in != d_in:
        raise ConfigError(
            f"SAE {sae_cfg.role}: loaded d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}; "
            f"profile says d_in={d_in} (model.d_model), d_sae={sae_cfg.d_sae}"
        )
    found = sae_hook_name(sae)
    if hook and found and sae_cfg.source != "random" and found != hook:
        raise hook_mismatch(f"SAE {sae_cfg.role}", found, hook)
    sae.eval()
    return sae


def random_sae(d_in: int, d_sae: int, *, device: str = "cpu", seed: int = 0, k: int = 64):
    """A TopK SAE with random unit-norm decoder rows: real sizes, no real weights (benchmarks)."""
    from sae_lens import TopKSAE, TopKSAEConfig

    generator = torch.Generator().manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device=device, dtype="float32"))
    with torch.no_grad():
        w_dec = torch.randn(d_sae, d_in, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(w_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def sae_hash(sae_cfg: SaeConfig) -> str:
    """What identifies an SAE's weights: local folders by content; hub SAEs by the snapshot commit and
    their files' content hashes (blob names in the HF cache); random ones by their shape."""
    from harness.world.model import hub_revision

    if sae_cfg.source == "local":  # the bytes of its config and weights (the key every cache already uses)
        from harness.world.ceilings import sae_folder_digest

        return sae_folder_digest(sae_cfg.local_path)
    if sae_cfg.source == "pretrained":
        try:
            repo_id, folder, _ = sae_location(sae_cfg)
            revision = hub_revision(repo_id, weights_glob=f"{folder}/*")
        except (MissingResourceError, ConfigError):
            revision = "unknown release"
    else:
        revision = ""  # random weights: the shape is the identity
    return hashlib.sha256(f"{sae_cfg.source}:{sae_cfg.release}:{sae_cfg.sae_id}:{sae_cfg.d_sae}:{revision}".encode()
                          ).hexdigest()[:16]


def decoder_directions(sae) -> torch.Tensor:
    """W_dec rows as float32 unit vectors (decoder cosine is defined on these)."""
    w_dec = sae.W_dec.detach().float()
    return w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class FeatureTables:
    """Pooled activations and per-SAE token statistics for every prompt, in PromptSets order."""

    prompt_ids: list[str]
    prompt_sets: list[str]  # concept / neutral / near_miss per row
    pooled: dict[str, np.ndarray]  # role -> [P, d_sae] float32
    n_tokens: np.ndarray  # [P] kept tokens per prompt
    l0_sum: dict[str, np.ndarray]  # role -> [P] sum over kept tokens of firing count
    sq_error: dict[str, np.ndarray]  # role -> [P] sum of ||x - x_hat||^2 over kept tokens
    resid_sum: np.ndarray  # [P, d_model] sum of residuals over kept tokens (for variance)
    resid_sq: np.ndarray  # [P] sum of ||x||^2 over kept tokens
    resid_norm_sum: np.ndarray  # [P] sum of ||x|| over kept tokens
    key: str = ""
    meta: dict = field(default_factory=dict)

    def rows(self, set_name: str) -> np.ndarray:
        return np.array([s == set_name for s in self.prompt_sets])

    def explained_variance(self, role: str, rows: np.ndarray | None = None) -> float:
        """1 - sum ||x - x_hat||^2 / sum ||x - mean x||^2 over the kept tokens of `rows`."""
        rows = np.ones(len(self.prompt_ids), bool) if rows is None else rows
        n = self.n_tokens[rows].sum()
        mean = self.resid_sum[rows].sum(0) / n
        total = self.resid_sq[rows].sum() - n * float(mean @ mean)
        return float(1 - self.sq_error[role][rows].sum() / total)

    def l0(self, role: str, rows: np.ndarray | None = None) -> float:
        rows = np.ones(len(self.prompt_ids), bool) if rows is None else rows
        return float(self.l0_sum[role][rows].sum() / self.n_tokens[rows].sum())

    def mean_resid_norm(self, rows: np.ndarray) -> float:
        return float(self.resid_norm_sum[rows].sum() / self.n_tokens[rows].sum())


def tables_key(profile: Profile, prompt_sets: PromptSets, sae_hashes: dict[str, str]) -> str:
    from importlib.metadata import version

    payload = {
        "format": TABLE_FORMAT, "harness": __version__, "model": weights_hash(profile.model),
        "libraries": {name: version(name) for name in ("sae-lens", "transformers", "transformer-lens")},
        "hook": profile.model.hook, "max_tokens": profile.model.max_tokens, "dtype": profile.model.dtype,
        "saes": sae_hashes, "prompts": prompt_sets.hashes(), "pooling": profile.analysis.pooling,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


@torch.no_grad()
def compute_feature_tables(model, saes: dict, profile: Profile, prompt_sets: PromptSets,
                           *, batch_size: int | None = None, progress: bool = True,
                           timings: dict[str, float] | None = None, ce_loss: bool = True) -> FeatureTables:
    """`timings`, when given, collects seconds per stage (forward to the hook, encode per SAE, CE-loss).
    `ce_loss=False` skips the CE-loss score (the random-SAE control needs only activations)."""
    import time

    timings = {} if timings is None else timings

    def spent(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + now - since
        return now

    prompts = prompt_sets.all()
    batch_size = batch_size or profile.analysis.batch_size
    hook, layer, pooling = profile.model.hook, profile.model.layer, profile.analysis.pooling
    n_prompts = len(prompts)
    d_model = profile.model.d_model
    pooled = {role: np.zeros((n_prompts, sae.cfg.d_sae), np.float32) for role, sae in saes.items()}
    l0_sum = {role: np.zeros(n_prompts) for role in saes}
    sq_error = {role: np.zeros(n_prompts) for role in saes}
    n_tokens = np.zeros(n_prompts, np.int64)
    resid_sum = np.zeros((n_prompts, d_model))
    resid_sq = np.zeros(n_prompts)
    resid_norm_sum = np.zeros(n_prompts)
    bar = tqdm(total=n_prompts, desc="activations", unit="prompt", disable=not progress)
    start = 0
    for chunk in batched(prompts, batch_size):
        clock = time.perf_counter()
        token_batch = tokenize_batch(model.tokenizer, [p.text for p in chunk], profile.model.max_tokens)
        warn_truncated(model.tokenizer, chunk, profile.model.max_tokens)
        acts_BSD = resid_at_hook(model, token_batch.tokens_BS, hook, layer)
        keep_BS = token_batch.keep_BS.to(acts_BSD.device)
        if (keep_BS.sum(1) == 0).any():
            empty = [chunk[i].id for i in torch.nonzero(keep_BS.sum(1) == 0).flatten().tolist()]
            raise MissingResourceError(f"prompts {empty} have no real tokens after BOS; give them text")
        x_TD = acts_BSD[keep_BS]
        row_T = torch.nonzero(keep_BS)[:, 0]
        rows = slice(start, start + len(chunk))
        counts = keep_BS.sum(1)
        n_tokens[rows] = counts.cpu().numpy()
        resid_sum[rows] = torch.zeros(len(chunk), d_model, dtype=torch.float64,
                                      device=x_TD.device).index_add_(0, row_T, x_TD.double()).cpu().numpy()
        resid_sq[rows] = _segment_sum(x_TD.double().pow(2).sum(-1), row_T, len(chunk))
        resid_norm_sum[rows] = _segment_sum(x_TD.double().norm(dim=-1), row_T, len(chunk))
        clock = spent("forward to the hook", clock)
        for role, sae in saes.items():
            feats_TF = sae.encode(x_TD.to(sae.W_dec.dtype)).float()
            recon_TD = sae.decode(feats_TF.to(sae.W_dec.dtype)).float()
            sq_error[role][rows] = _segment_sum((x_TD - recon_TD).double().pow(2).sum(-1), row_T, len(chunk))
            l0_sum[role][rows] = _segment_sum((feats_TF > 0).double().sum(-1), row_T, len(chunk))
            pooled[role][rows] = _pool(feats_TF, row_T, len(chunk), pooling, counts).cpu().numpy()
            del feats_TF, recon_TD
            clock = spent(f"encode {role}", clock)
        start += len(chunk)
        bar.update(len(chunk))
    bar.close()
    ce, ce_per_prompt = compute_ce_loss(model, saes, profile, prompt_sets, batch_size=batch_size, progress=progress,
                                        timings=timings) if ce_loss else ({}, {})
    return FeatureTables(
        prompt_ids=[p.id for p in prompts], prompt_sets=[p.set for p in prompts], pooled=pooled,
        n_tokens=n_tokens, l0_sum=l0_sum, sq_error=sq_error, resid_sum=resid_sum, resid_sq=resid_sq,
        resid_norm_sum=resid_norm_sum, meta={"ce_loss": ce, "ce_per_prompt": ce_per_prompt},
    )


@torch.no_grad()
def compute_ce_loss(model, saes: dict, profile: Profile, prompt_sets: PromptSets, *, batch_size: int | None = None,
                    progress: bool = True, timings: dict[str, float] | None = None) -> tuple[dict, dict]:
    """CE-loss score on the concept + neutral prompts: how much next-token loss each SAE costs."""
    import time

    prompts = prompt_sets.all()
    batch_size = batch_size or profile.analysis.batch_size
    ce_batches = [tokenize_batch(model.tokenizer, [p.text for p in chunk], profile.model.max_tokens)
                  for chunk in batched([p for p in prompts if p.set != "near_miss"], batch_size)]
    ce = {}
    ce_per_prompt: dict = {"ids": [p.id for p in prompts if p.set != "near_miss"]}
    for role, sae in tqdm(saes.items(), desc="CE-loss score", disable=not progress):
        clock = time.perf_counter()
        reference = {"clean": ce_per_prompt["clean"], "zero": ce_per_prompt["zero"]} if "clean" in ce_per_prompt else None
        ce[role] = ce_loss_score_batches(sae, model, profile.model.hook, ce_batches, reference=reference)
        if timings is not None:
            timings[f"CE-loss score {role}"] = timings.get(f"CE-loss score {role}", 0.0) + time.perf_counter() - clock
        per = ce[role].pop("per_prompt")
        # clean and zero-ablated losses do not depend on the SAE: the same for every role.
        ce_per_prompt.update(clean=per["clean"], zero=per["zero"], tokens=per["tokens"])
        ce_per_prompt[role] = per["sae"]
    return ce, ce_per_prompt


def warn_truncated(tokenizer, prompts, max_tokens: int) -> None:
    """A prompt longer than model.max_tokens is read only in part: say so, with its id."""
    import warnings

    for p in prompts:
        n = len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) + 1
        if n > max_tokens:
            warnings.warn(f"prompt {p.id!r} has {n} tokens; only the first {max_tokens} are read "
                          "(model.max_tokens in the profile)", stacklevel=2)


def _segment_sum(values_T: torch.Tensor, row_T: torch.Tensor, n_rows: int) -> np.ndarray:
    out = torch.zeros(n_rows, dtype=values_T.dtype, device=values_T.device)
    return out.index_add_(0, row_T, values_T).cpu().numpy()


def _pool(feats_TF: torch.Tensor, row_T: torch.Tensor, n_rows: int, pooling: str, counts: torch.Tensor):
    out = torch.zeros(n_rows, feats_TF.shape[1], device=feats_TF.device)
    if pooling == "max":
        # Activations are >= 0, so a zero start is the identity for max.
        return out.index_reduce_(0, row_T, feats_TF, "amax", include_self=True)
    return out.index_add_(0, row_T, feats_TF) / counts[:, None].to(out.dtype)


def save_tables(tables: FeatureTables, path: Path) -> None:
    arrays = {"n_tokens": tables.n_tokens, "resid_sum": tables.resid_sum, "resid_sq": tables.resid_sq,
              "resid_norm_sum": tables.resid_norm_sum}
    for role in tables.pooled:
        arrays[f"pooled__{role}"] = tables.pooled[role]
        arrays[f"l0_sum__{role}"] = tables.l0_sum[role]
        arrays[f"sq_error__{role}"] = tables.sq_error[role]
    header = {"key": tables.key, "prompt_ids": tables.prompt_ids, "prompt_sets": tables.prompt_sets,
              "roles": sorted(tables.pooled), "meta": tables.meta}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_tables(path: Path, expected_key: str) -> FeatureTables | None:
    """The cached tables, or None when the file is missing, corrupt or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header["key"] != expected_key:
                return None
            roles = header["roles"]
            tables = FeatureTables(
                prompt_ids=header["prompt_ids"], prompt_sets=header["prompt_sets"],
                pooled={r: data[f"pooled__{r}"] for r in roles},
                n_tokens=data["n_tokens"], l0_sum={r: data[f"l0_sum__{r}"] for r in roles},
                sq_error={r: data[f"sq_error__{r}"] for r in roles}, resid_sum=data["resid_sum"],
                resid_sq=data["resid_sq"], resid_norm_sum=data["resid_norm_sum"], key=header["key"],
                meta=header.get("meta", {}),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
        return None
    if any(t.shape[0] != len(tables.prompt_ids) for t in tables.pooled.values()):
        return None
    return tables


def cached_feature_tables(profile: Profile, prompt_sets: PromptSets, *, model_loader, sae_loader,
                          cache_root: Path | None = None, progress: bool = True,
                          sae_hashes: dict[str, str] | None = None, ce_loss: bool = True) -> FeatureTables:
    """Load the tables for this exact (model, hook, SAEs, prompts, pooling) or build and store them.

    `model_loader()` and `sae_loader()` are called only on a cache miss, so a warm run never
    loads the model. `sae_hashes` names SAEs the profile does not describe (the random-SAE control).
    """
    hashes = sae_hashes or {role: sae_hash(cfg) for role, cfg in profile.saes.items()}
    key = tables_key(profile, prompt_sets, hashes)
    path = (cache_root or cache_dir() / "features") / f"tables-{key}.npz"  # content only, not the profile's name
    tables = load_tables(path, key)
    if tables is not None:
        if ce_loss and not tables.meta.get("ce_loss"):
            # Activations cached by a run that did not need the CE-loss score (discover): add only that.
            ce, per_prompt = compute_ce_loss(model_loader(), sae_loader(), profile, prompt_sets, progress=progress)
            tables.meta.update(ce_loss=ce, ce_per_prompt=per_prompt)
            try:
                save_tables(tables, path)
            except OSError:
                pass  # kept in memory; the next run computes it again
        tables.meta["cache"] = "hit"
        return tables
    if path.is_file():
        import warnings

        warnings.warn(f"feature-table cache {path} is unreadable or incomplete: rebuilding it", stacklevel=2)
    saes = sae_loader()  # before the model: a wrong SAE fails before gigabytes of model weights load
    tables = compute_feature_tables(model_loader(), saes, profile, prompt_sets, progress=progress, ce_loss=ce_loss)
    tables.key = key
    tables.meta.update({"sae_hashes": hashes, "prompt_hashes": prompt_sets.hashes(), "path": str(path)})
    try:
        save_tables(tables, path)
    except OSError as exc:
        import warnings

        warnings.warn(f"could not write the feature-table cache {path} ({exc.strerror}); this run keeps the "
                      "tables in memory", stacklevel=2)
    tables.meta["cache"] = "miss"
    return tables


def profile_ceilings(profile: Profile, *, tokens: int = 40_000, overwrite: bool = False,
                     device: str = "auto") -> dict[str, dict]:
    """Measure every SAE of the profile on held-out corpus text and write the ceilings. Returns, per role,
    the file written and a summary. A packaged SAE's file is replaced only with `overwrite`."""
    from harness.core.errors import HarnessError
    from harness.core.paths import SAES_DIR
    from harness.world.ceilings import ceiling_target, describe, model_key

    for role, cfg in profile.saes.items():
        if cfg.source == "local" and SAES_DIR.resolve() in cfg.local_path.resolve().parents and not overwrite:
            raise HarnessError(f"ceilings would write into the repository's packaged {role} SAE folder "
                               f"({cfg.local_path}); pass --overwrite to replace its ceilings")
    from harness.world.model import load_model, resolve_device, weights_hash

    device = resolve_device(device)
    saes = {role: load_sae(cfg, profile.model.d_model, device=device, hook=profile.model.hook)
            for role, cfg in profile.saes.items()}  # first: a hub SAE's hash needs its files
    hashes = {role: sae_hash(cfg) for role, cfg in profile.saes.items()}
    model = load_model(profile.model, device=device)
    key = model_key(weights_hash(profile.model), profile.model.dtype)
    targets = {role: ceiling_target(cfg, hashes[role], key) for role, cfg in profile.saes.items()}
    values = measure_sae_ceilings(profile, model, saes, hashes=hashes, model_key=key, tokens=tokens, targets=targets)
    return {role: {"written": str(targets[role]), **describe(v)} for role, v in values.items()}


def measure_sae_ceilings(profile: Profile, model, saes: dict, *, hashes: dict[str, str], model_key: str, tokens: int,
                         targets: dict) -> dict[str, np.ndarray]:
    """Each SAE's ceilings on `tokens` held-out corpus tokens (never a claims prompt), written to
    `targets[role]` with what they are valid for; returns them per role."""
    from harness.world.ceilings import measure_ceilings, write_ceilings
    from harness.world.corpus import build_corpus, split_heldout
    from harness.world.prompts import all_prompt_texts
    from harness.world.training import heldout_residuals

    paragraphs, _ = build_corpus(all_prompt_texts(profile))
    _, heldout = split_heldout(paragraphs)
    acts, _ = heldout_residuals(model, profile, heldout, tokens)
    out = {}
    for role, sae in saes.items():
        out[role] = measure_ceilings(sae, acts.float())
        write_ceilings(targets[role], out[role], sae_hash=hashes[role], model=model_key, tokens=int(acts.shape[0]))
    return out
