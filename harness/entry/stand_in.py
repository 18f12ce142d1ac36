"""An offline stand-in for the Hugging Face hub that drives the real loaders.

`python -m harness stand-in --profile gemma-2-2b DIR` writes, under DIR/hub in the layout
huggingface_hub reads (refs/main -> snapshots/<commit>/<file> -> blobs/<sha256>):

- the profile's model repo (e.g. google/gemma-2-2b) with its real config, random weights
  (bf16 safetensors in shards of at most 1 GiB with the hub's index file, streamed tensor by
  tensor so memory stays at one tensor), and an
  offline byte-level BPE tokenizer trained on the profile's prompts whose ids fit the vocabulary;
- each pretrained SAE as Gemma Scope ships it: `<folder>/params.npz` with W_enc [d_in, d_sae],
  W_dec [d_sae, d_in], b_enc, b_dec and threshold, streamed in feature blocks, thresholds set so
  the JumpReLU L0 lands near the SAE's average_l0 on the stand-in's own residuals.

With HF_HOME=DIR and HF_HUB_OFFLINE=1 the unmodified profile then loads through
TransformerBridge and SAE.from_pretrained. Every repo carries `stand_in.json`; a run that loads
from such a repo says "stand-in: random weights" in its ledger and report, since its findings
are meaningless.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.core.config import Profile
from harness.core.errors import ConfigError
from harness.core.paths import TEMP_MARK

MARKER = "stand_in.json"
STAND_IN_FORMAT = "1"

# The real Gemma 2 2B config (huggingface.co/google/gemma-2-2b/config.json).
GEMMA_2_2B = {
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 2304,
    "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
    "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False, "attention_dropout": 0.0,
    "query_pre_attn_scalar": 256, "sliding_window": 4096, "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}
# A Gemma-2 small enough for every CI run: same architecture and code path, 4 layers of width 64.
GEMMA_2_TINY = {**GEMMA_2_2B, "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 4, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
                "query_pre_attn_scalar": 32, "sliding_window": 64, "torch_dtype": "float32"}
MODEL_RECIPES = {"google/gemma-2-2b": GEMMA_2_2B, "sae-claims/gemma-2-tiny": GEMMA_2_TINY}
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]  # ids 0..5, as Gemma
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == "
                 "'assistant' else message['role'] }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
                 "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@dataclass(frozen=True)
class SaePlan:
    role: str
    repo_id: str
    folder: str
    d_in: int
    d_sae: int
    target_l0: float


def plan_saes(profile: Profile) -> list[SaePlan]:
    """Where each of the profile's SAEs lives on the hub and what it must look like."""
    from harness.features.tables import in_registry, registry_entry, sae_location

    plans = []
    for role, cfg in profile.saes.items():
        if cfg.source != "pretrained":
            raise ConfigError(f"stand-in writes hub SAEs; saes.{role} of profile {profile.name!r} has source "
                              f"{cfg.source!r} (valid: 'pretrained')")
        repo_id, folder, loader = sae_location(cfg)
        if loader != "gemma_2":
            raise ConfigError(f"stand-in writes Gemma Scope's layout (SAELens loader 'gemma_2'); saes.{role} "
                              f"loads with {loader!r}")
        entry_l0 = None
        if in_registry(cfg.release):
            entry_l0 = registry_entry(cfg.release, cfg.sae_id)["average_l0"]
        target = cfg.expected_l0 or entry_l0 or _l0_from_folder(folder) or 64
        plans.append(SaePlan(role, repo_id, folder, profile.model.d_model, cfg.d_sae, float(target)))
    return plans


def _l0_from_folder(folder: str) -> int | None:
    import re

    match = re.search(r"average_l0_(\d+)", folder)
    return int(match.group(1)) if match else None


# ---- the hub cache layout -----------------------------------------------------------------------
def _repo_dir(hub: Path, repo_id: str) -> Path:
    return hub / ("models--" + repo_id.replace("/", "--"))


class RepoWriter:
    """Writes one repo's files as blobs named by their sha256, then links a snapshot to them.

    The whole repo is built in a temp folder beside its final place and renamed in at the end,
    so an interrupted stand-in never leaves a half-written repo that looks complete.
    """

    def __init__(self, hub: Path, repo_id: str):
        self.final = _repo_dir(hub, repo_id)
        hub.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}{TEMP_MARK}", dir=hub))
        (self.tmp / "blobs").mkdir()
        self.files: dict[str, str] = {}

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.add_stream(rel, lambda handle: handle.write(data))

    def add_stream(self, rel: str, write: Callable) -> None:
        """`write(handle)` writes the file; its bytes are hashed on the way to disk."""
        part = self.tmp / "blobs" / f".part-{len(self.files)}"
        with open(part, "wb") as raw:
            handle = _HashingWriter(raw)
            write(handle)
        digest = handle.digest.hexdigest()
        os.replace(part, self.tmp / "blobs" / digest)
        self.files[rel] = digest

    def commit(self) -> str:
        manifest = json.dumps(sorted(self.files.items())).encode()
        commit = hashlib.sha1(manifest).hexdigest()  # 40 hex digits, like a git commit
        snapshot = self.tmp / "snapshots" / commit
        for rel, digest in self.files.items():
            link = snapshot / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(self.tmp / "blobs" / digest, link.parent))
        (self.tmp / "refs").mkdir()
        (self.tmp / "refs" / "main").write_text(commit)
        for folder in [self.tmp, *self.tmp.rglob("*")]:
            if folder.is_dir() and not folder.is_symlink():
                os.chmod(folder, 0o755)
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return commit

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _HashingWriter:
    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        return self.raw.write(view)

    def flush(self) -> None:
        self.raw.flush()

    def tell(self) -> int:
        return self.raw.tell()


# ---- tokenizer -----------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int) -> dict[str, bytes]:
    """A byte-level BPE trained on `texts` (any text encodes), Gemma's special ids 0..5."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
              "pad_token": "<pad>", "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE,
              "model_max_length": 8192, "add_bos_token": True, "add_eos_token": False}
    return {"tokenizer.json": tokenizer.to_str().encode(),
            "tokenizer_config.json": json.dumps(config, indent=2).encode(),
            "special_tokens_map.json": json.dumps({k: config[k] for k in ("bos_token", "eos_token", "pad_token",
                                                                             "unk_token")}).encode()}


# ---- model weights -------------------------------------------------------------------------------
def model_tensor_shapes(config) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes as the HF model saves them (meta device: nothing allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    if config.tie_word_embeddings:
        shapes = [(n, s) for n, s in shapes if n != "lm_head.weight"]
    return shapes


SHARD_BYTES = 1 << 30  # transformers maps one shard at a time: small shards keep the load's peak memory low


def shard_tensors(tensors: list[tuple[str, tuple[int, ...]]], *, itemsize: int, max_bytes: int) -> list[list]:
    """Consecutive tensors grouped into shards of at most max_bytes (a larger tensor gets its own)."""
    shards: list[list] = [[]]
    size = 0
    for name, shape in tensors:
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def write_safetensors(handle, tensors: list[tuple[str, tuple[int, ...]]], make: Callable[[str, tuple], torch.Tensor],
                      dtype: torch.dtype, progress: Callable[[int], None] | None = None) -> None:
    """Stream a safetensors file: header first, then each tensor as `make` produces it."""
    names = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}
    itemsize = torch.tensor([], dtype=dtype).element_size()
    header, offset = {}, 0
    for name, shape in tensors:
        size = math.prod(shape) * itemsize
        header[name] = {"dtype": names[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors aligns the data start
    handle.write(struct.pack("<Q", len(blob)))
    handle.write(blob)
    for name, shape in tensors:
        tensor = make(name, shape).to(dtype).contiguous()
        handle.write(tensor.view(torch.uint8).numpy().tobytes() if dtype == torch.bfloat16 else tensor.numpy().tobytes())
        if progress:
            progress(tensor.numel())


def random_parameter(name: str, shape: tuple, seed: int, std: float = 0.02) -> torch.Tensor:
    """Gemma's RMSNorm scales by (1 + weight): zeros are the identity. Everything else ~ N(0, std)."""
    if name.endswith("norm.weight"):
        return torch.zeros(shape)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * std


# ---- SAE weights -------------------------------------------------------------------------------
def residual_sample(model_dir: Path, layer: int, texts: list[str], max_tokens: int) -> np.ndarray:
    """The residual after block `layer` of the stand-in model at every token of `texts` (BOS dropped).

    Only the first layer + 1 blocks are loaded: the rest of the model does not touch this point.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    config.num_hidden_layers = layer + 1
    config.layer_types = config.layer_types[: layer + 1]
    import logging

    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)  # "unused weights" is intended
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=config, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, captured = [], {}

    def keep_output(module, args, output):  # the block's output is the residual after it
        captured["x"] = output[0] if isinstance(output, tuple) else output

    handle = model.model.layers[layer].register_forward_hook(keep_output)
    with torch.no_grad():
        for text in texts:
            ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
            model.model(torch.tensor([ids]))
            rows.append(captured["x"][0, 1:].double())  # drop BOS, as the harness does
    handle.remove()
    del model
    return torch.cat(rows).numpy()


def write_gemma_scope_params(handle, plan: SaePlan, sample: np.ndarray, seed: int,
                             block: int = 8192, progress: Callable[[int], None] | None = None) -> dict:
    """params.npz as Gemma Scope ships it, streamed in blocks of features.

    Decoder rows are random unit vectors and W_enc = W_dec.T (a tied start). Gemma Scope's encoder
    does not subtract b_dec (SAELens: apply_b_dec_to_input False), so b_enc = -mean . w_f centres
    each pre-activation, b_dec is the residual mean, and each threshold is c standard deviations of
    its feature's pre-activation, one c for the whole SAE, chosen so that the SAE fires target_l0
    features per token on `sample` (the stand-in's own residuals; the Gaussian quantile alone
    overshoots: residuals have heavier tails). Returns the L0 reached on the sample.
    W_enc is stored column-major (numpy reads it back as the same [d_in, d_sae] array), so the
    262K file is written one block of features at a time.
    """
    from scipy.stats import norm

    d_in, d_sae = plan.d_in, plan.d_sae
    z = float(norm.isf(min(plan.target_l0 / d_sae, 0.5)))
    streams = np.random.SeedSequence([seed, d_sae]).spawn((d_sae + block - 1) // block)
    thresholds = np.empty(d_sae, np.float32)
    b_enc = np.empty(d_sae, np.float32)

    mean = sample.mean(0)
    centred = (sample - mean).astype(np.float32)
    cov32, mean32 = np.cov(sample, rowvar=False).astype(np.float32), mean.astype(np.float32)
    z_low = z - 1.5  # standardised pre-activations above this are kept to place the common cutoff
    kept: list[np.ndarray] = []
    sd_all = np.empty(d_sae, np.float32)

    def blocks(first: bool) -> Iterator[np.ndarray]:
        for index, start in enumerate(range(0, d_sae, block)):
            rng = np.random.default_rng(streams[index])  # the same rows on both passes
            rows = rng.standard_normal((min(block, d_sae - start), d_in), dtype=np.float32)
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            if first:  # pre-activation (x - mean) . w_f has variance w_f' cov w_f
                sd = np.sqrt(((rows @ cov32) * rows).sum(1).clip(1e-12))
                sd_all[start:start + rows.shape[0]] = sd
                b_enc[start:start + rows.shape[0]] = -(rows @ mean32)
                standardised = (centred @ rows.T) / sd
                kept.append(standardised[standardised > z_low])
            yield rows

    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        # W_dec first: its blocks also fix the thresholds; W_enc re-derives the same blocks.
        with archive.open("W_dec.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (d_sae, d_in)})
            for rows in blocks(first=True):
                member.write(rows.tobytes())
                if progress:
                    progress(rows.size)
        with archive.open("W_enc.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, {"descr": "<f4", "fortran_order": True,
                                                          "shape": (d_in, d_sae)})
            for rows in blocks(first=False):  # column-major [d_in, d_sae]: column f is row f of W_dec
                member.write(rows.tobytes())
                if progress:
                    progress(rows.size)
        # one common cutoff c: the (target_l0 x tokens)-th largest standardised pre-activation
        ranked = np.sort(np.concatenate(kept))[::-1]
        wanted = int(round(plan.target_l0 * sample.shape[0]))
        c = float(ranked[wanted - 1]) if 0 < wanted <= ranked.size else z_low
        thresholds[:] = c * sd_all
        reached = float((ranked >= c).sum() / sample.shape[0])
        for name, values in (("b_enc", b_enc), ("b_dec", mean.astype(np.float32)),
                             ("threshold", thresholds)):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, values)
    return {"cutoff_sd": round(c, 3), "gaussian_cutoff_sd": round(z, 3), "l0_on_sample": round(reached, 1),
            "sample_tokens": int(sample.shape[0])}


# ---- the command --------------------------------------------------------------------------------
def write_stand_in(profile: Profile, out_dir: Path, *, seed: int = 0, progress: bool = True) -> dict:
    """Write the profile's model and SAEs into a hub cache under out_dir/hub; return what was written."""
    from harness.world.prompts import load_prompt_sets

    model_cfg = profile.model
    if model_cfg.source != "huggingface" or model_cfg.hf_id not in MODEL_RECIPES:
        raise ConfigError(f"stand-in has no recipe for model {model_cfg.hf_id or model_cfg.source!r} of profile "
                          f"{profile.name!r}; valid hub ids: {sorted(MODEL_RECIPES)}")
    recipe = MODEL_RECIPES[model_cfg.hf_id]
    if recipe["hidden_size"] != model_cfg.d_model or recipe["num_hidden_layers"] != model_cfg.n_layers:
        raise ConfigError(f"profile {profile.name!r} says d_model={model_cfg.d_model}, n_layers={model_cfg.n_layers}; "
                          f"{model_cfg.hf_id} has {recipe['hidden_size']}, {recipe['num_hidden_layers']}")
    plans = plan_saes(profile)  # a bad SAE entry fails before anything is written
    hub = Path(out_dir) / "hub"
    texts = [p.text for p in load_prompt_sets(profile).all()]
    marker = {"stand_in": "random weights", "format": STAND_IN_FORMAT, "profile": profile.name, "seed": seed,
              "written_by": "python -m harness stand-in"}
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    started = time.time()
    summary: dict = {"hub": str(hub), "model": model_cfg.hf_id, "saes": {}}

    # 1. model: config, tokenizer, random bf16 weights
    tokenizer_files = train_tokenizer(texts, min(recipe["vocab_size"], 8192))
    vocab = json.loads(tokenizer_files["tokenizer.json"])["model"]["vocab"]
    if len(vocab) > recipe["vocab_size"]:
        raise ConfigError(f"the stand-in tokenizer has {len(vocab)} ids; {model_cfg.hf_id} has {recipe['vocab_size']}")
    config = _config(recipe)
    shapes = model_tensor_shapes(config)
    total = sum(math.prod(s) for _, s in shapes)
    say(f"stand-in: {model_cfg.hf_id}: {total / 1e9:.2f}B random parameters (bf16) -> {hub}")
    writer = RepoWriter(hub, model_cfg.hf_id)
    try:
        writer.add_bytes("config.json", config.to_json_string().encode())
        writer.add_bytes("generation_config.json", json.dumps({"bos_token_id": 2, "eos_token_id": 1,
                                                                "pad_token_id": 0}).encode())
        for name, data in tokenizer_files.items():
            writer.add_bytes(name, data)
        seeds = {name: int(s.generate_state(1)[0]) for (name, _), s in
                 zip(shapes, np.random.SeedSequence([seed, 1]).spawn(len(shapes)), strict=True)}
        bar = _Bar(total, "model weights", progress)
        # at least three shards, as the hub's Gemma 2 2B has: the tiny stand-in exercises the index too
        shards = shard_tensors(shapes, itemsize=2, max_bytes=min(SHARD_BYTES, 2 * total // 3 + 1))
        names = ["model.safetensors"] if len(shards) == 1 else \
            [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for name, shard in zip(names, shards, strict=True):
            writer.add_stream(name, lambda h, shard=shard: write_safetensors(
                h, shard, lambda n, shape: random_parameter(n, shape, seeds[n]), torch.bfloat16, bar.update))
        if len(shards) > 1:  # the index transformers reads to find each tensor's shard
            index = {"metadata": {"total_size": 2 * total},
                     "weight_map": {n: f for f, shard in zip(names, shards, strict=True) for n, _ in shard}}
            writer.add_bytes("model.safetensors.index.json", json.dumps(index, indent=2).encode())
        bar.close()
        writer.add_bytes(MARKER, json.dumps({**marker, "config": recipe}, indent=2).encode())
        commit = writer.commit()
    except BaseException:
        writer.abort()
        raise
    model_dir = _repo_dir(hub, model_cfg.hf_id) / "snapshots" / commit
    summary["model_commit"] = commit
    summary["model_parameters"] = total

    # 2. SAEs, grouped by repo (one snapshot holds every folder of a repo)
    say(f"stand-in: residuals at {model_cfg.hook} on {min(len(texts), 64)} prompts (to place the thresholds)")
    sample = residual_sample(model_dir, model_cfg.layer, texts[::max(1, len(texts) // 64)][:64], model_cfg.max_tokens)
    for repo_id in sorted({p.repo_id for p in plans}):
        writer = RepoWriter(hub, repo_id)
        try:
            for index, plan in enumerate(p for p in plans if p.repo_id == repo_id):
                bar = _Bar(2 * plan.d_in * plan.d_sae, f"SAE {plan.role} ({plan.d_sae:,})", progress)
                fit: dict = {}
                writer.add_stream(f"{plan.folder}/params.npz", lambda h, plan=plan, bar=bar, fit=fit: fit.update(
                    write_gemma_scope_params(h, plan, sample, seed=seed + index, progress=bar.update)))
                bar.close()
                summary["saes"][plan.role] = {"repo_id": repo_id, "folder": plan.folder, "d_sae": plan.d_sae,
                                              "target_l0": plan.target_l0, **fit}
            writer.add_bytes(MARKER, json.dumps(marker, indent=2).encode())
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    summary["seconds"] = round(time.time() - started, 1)
    say(f"stand-in: done in {summary['seconds']} s. Use it with HF_HOME={out_dir} HF_HUB_OFFLINE=1")
    return summary


def _config(recipe: dict):
    from transformers import Gemma2Config

    if recipe["model_type"] != "gemma2":
        raise ConfigError(f"stand-in recipes are Gemma-2 only; got model_type {recipe['model_type']!r}")
    fields = {k: v for k, v in recipe.items() if k not in ("model_type", "torch_dtype", "rope_theta")}
    config = Gemma2Config(**fields)
    config.torch_dtype = recipe["torch_dtype"]
    return config


class _Bar:
    """tqdm on stderr (shown under pytest's capture too: it writes to the real stream)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="param", unit_scale=True, disable=not enabled,
                        file=sys.__stderr__)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


# ---- reading the marker back -----------------------------------------------------------------
def stand_in_marker(repo_id_or_folder: str) -> dict | None:
    """The stand_in.json of a hub repo in the local cache (or of a local folder), else None."""
    folder = Path(repo_id_or_folder)
    if folder.is_dir():
        path = folder / MARKER
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id_or_folder, MARKER)
    except Exception:  # noqa: BLE001 - an id that is not a repo id has no marker
        return None
    if isinstance(found, str):
        try:
            return json.loads(Path(found).read_text())
        except (OSError, ValueError):
            return {"stand_in": "random weights"}
    return None
