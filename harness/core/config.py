"""Profiles: one TOML file each, parsed into typed, validated, frozen dataclasses.

A profile names the model, the hook point, the two SAEs (`coarse`, `fine`), the prompt
sets, and the claims with their thresholds. Every bad value raises one ConfigError that
names the value and lists the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Literal, get_args

from harness.core.errors import ConfigError, choices_error
from harness.core.families import FAMILY_NAME, check_type, get_family, registered_families, require_family
from harness.core.paths import FIXTURES_DIR, PROFILES_DIR

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
ModelSource = Literal["smollm2-gguf", "huggingface", "synthetic"]
SaeSource = Literal["local", "pretrained", "random"]
Pooling = Literal["max", "mean"]
Device = Literal["auto", "cpu", "cuda"]
Dtype = Literal["float32", "bfloat16", "float16"]
SAE_ROLES = ("coarse", "fine")
HOOK_PATTERN = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|mid|post)$")


def _check_literal(what: str, value: Any, literal: Any) -> None:
    valid = get_args(literal)
    if value not in valid:
        raise choices_error(what, value, valid)


def _reject_unknown(where: str, data: dict[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise choices_error(f"key in {where}", key, known)


def _check_field_types(cls: type, where: str, data: dict) -> None:
    import typing

    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        kind = hints.get(key)
        if kind in (int, float, str, bool):
            check_type(f"{where}.{key}", value, kind)


def _build(cls: type, where: str, data: Any, **extra: Any):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__} {data!r}")
    _reject_unknown(where, data, cls)
    _check_field_types(cls, where, data)
    try:
        return cls(**data, **extra)
    except TypeError as exc:  # a missing required key
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data and name not in extra]
        raise ConfigError(f"{where} is missing required keys {missing}") from exc


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: str
    hook: str
    n_layers: int
    d_model: int
    hf_id: str = ""
    path: str = ""  # a local Hugging Face model folder (config.json + weights), instead of hf_id
    gguf_file: str = ""
    package: str = ""
    dtype: str = "float32"
    device: str = "auto"
    # Spread a model too large for one GPU over several: a Hugging Face device map ("auto", "balanced",
    # "sequential"), passed to TransformerBridge.boot_transformers; "" loads it whole on `device`.
    device_map: str = ""
    max_tokens: int = 128

    def __post_init__(self) -> None:
        _check_literal("model.source", self.source, ModelSource)
        _check_literal("model.dtype", self.dtype, Dtype)
        _check_literal("model.device", self.device, Device)
        if self.source == "huggingface" and not (self.hf_id or self.path):
            raise ConfigError("model: source 'huggingface' needs 'hf_id' (a hub id) or 'path' (a local HF folder)")
        if self.device_map and self.device_map not in DEVICE_MAPS:
            raise choices_error("model.device_map", self.device_map, DEVICE_MAPS)
        if self.hf_id and self.path:
            raise ConfigError(f"model: give 'hf_id' ({self.hf_id!r}) or 'path' ({self.path!r}), not both")
        match = HOOK_PATTERN.match(self.hook)
        if not match:
            raise ConfigError(
                f"model.hook {self.hook!r} is not a residual-stream hook name; "
                "valid form: 'blocks.<layer>.hook_resid_{pre,mid,post}'"
            )
        if not 0 <= int(match.group(1)) < self.n_layers:
            raise ConfigError(
                f"model.hook {self.hook!r} names layer {match.group(1)}; "
                f"valid layers: 0..{self.n_layers - 1}"
            )

    @property
    def layer(self) -> int:
        return int(HOOK_PATTERN.match(self.hook).group(1))  # type: ignore[union-attr]


@dataclass(frozen=True)
class SaeConfig:
    role: str
    source: str
    d_sae: int
    path: str = ""
    release: str = ""
    sae_id: str = ""
    neuronpedia_id: str = ""
    expected_l0: float = 0.0
    # SAELens loader for a hub repo outside SAELens's registry (release = "owner/repo", sae_id = the
    # folder in it), e.g. "gemma_2" for Gemma Scope's params.npz; registry releases name their own.
    loader: str = ""

    def __post_init__(self) -> None:
        _check_literal("sae.role", self.role, Literal["coarse", "fine"])
        _check_literal(f"saes.{self.role}.source", self.source, SaeSource)
        if self.source == "local" and not self.path:
            raise ConfigError(f"saes.{self.role}: source 'local' needs a 'path'")
        if self.source == "pretrained" and not (self.release and self.sae_id):
            raise ConfigError(f"saes.{self.role}: source 'pretrained' needs 'release' and 'sae_id'")

    @property
    def local_path(self) -> Path:
        return (FIXTURES_DIR / self.path).resolve()


@dataclass(frozen=True)
class PromptsConfig:
    concept: str
    neutral: str
    near_miss: str = ""
    concept_name: str = "France"
    split_seed: int = 0
    # Words that mark a text as about the concept: neutral and near-miss prompts may hold none
    # (checked at run time, whatever files the prompts come from). Empty: not checked.
    concept_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.split_seed < 0:
            raise ConfigError(f"prompts.split_seed {self.split_seed} must be >= 0")
        words = self.concept_words
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ConfigError(f"prompts.concept_words = {words!r} must be a list of non-empty strings")
        object.__setattr__(self, "concept_words", tuple(words))

    def resolve(self, name: str) -> Path:
        value = getattr(self, name)
        path = Path(value)
        return path if path.is_absolute() else (FIXTURES_DIR / path).resolve()


Spending = Literal["pocock", "obrien-fleming", "even"]  # alpha-spending across sequential looks


@dataclass(frozen=True)
class AnalysisConfig:
    pooling: str = "max"
    seed: int = 0
    permutations: int = 10_000
    bootstrap: int = 2_000
    alpha: float = 0.05
    batch_size: int = 16
    top_fine_matches: int = 8
    # A feature firing on fewer prompts than this is "silent on these prompts": not evaluable.
    min_firing_prompts: int = 5
    # Null directions for the geometry claims (drawn with the fine decoder's covariance).
    null_directions: int = 1000
    # A tested prompt group smaller than this makes its claims "not evaluated": too little data.
    min_group_size: int = 10
    # A set where a feature fires on fewer prompts than this: its mean rests on a handful of firings, so
    # the selectivity bound assumes unseen firings at the feature's ceiling, and the prompt planning
    # draws the firing rate from its posterior.
    few_firings: int = 10
    # Facet claims leave out a facet with fewer prompts than this (where the anchor fires) in either half.
    min_facet_prompts: int = 2
    # The gate's negative control: the same prompts through random SAEs of the trained ones' shape
    # ("random_sae"), or none ("none": then a go_gate claim must say control = false).
    control: str = "random_sae"
    # Re-validation: a declared feature is followed into a changed SAE by decoder cosine; a best match
    # below this is no match (the claim is "not evaluated"; re-run discover). Random rows reach ~0.2.
    follow_min_cosine: float = 0.7
    # Sequential re-validation: the looks declared in advance (prompts added between them), the look
    # this run is, and how alpha is spent across them (harness/statistics/sequential.py).
    looks: int = 1
    look: int = 1
    spending: str = "pocock"
    # Activation ceilings (harness/world/ceilings.py) bound the firings a prompt set has not shown yet.
    # "measure": an SAE with none recorded for these weights gets them measured on `ceiling_tokens`
    # held-out corpus tokens before the claims (cached per SAE and model); "recorded": only recorded
    # ones are used, and an SAE without them is bounded by the firings seen (said in the run notes).
    ceilings: str = "measure"
    ceiling_tokens: int = 40_000

    def __post_init__(self) -> None:
        _check_literal("analysis.pooling", self.pooling, Pooling)
        if self.ceilings not in ("measure", "recorded"):
            raise choices_error("analysis.ceilings", self.ceilings, ("measure", "recorded"))
        if self.ceiling_tokens < 512:
            raise ConfigError(f"analysis.ceiling_tokens {self.ceiling_tokens} is too few to find a feature's "
                              "largest activation; use >= 512")
        _check_literal("analysis.spending", self.spending, Spending)
        if self.looks < 1:
            raise ConfigError(f"analysis.looks {self.looks} must be >= 1")
        if not 1 <= self.look <= self.looks:
            raise ConfigError(f"look {self.look} is not one of the {self.looks} declared looks; valid: 1..{self.looks}"
                              + ("" if self.looks > 1 else " (declare [analysis] looks = K in the profile to look again)"))
        if not 0 < self.follow_min_cosine <= 1:
            raise ConfigError(f"analysis.follow_min_cosine {self.follow_min_cosine} must lie in (0, 1]")
        if self.control not in ("random_sae", "none"):
            raise choices_error("analysis.control", self.control, ("random_sae", "none"))
        for name, least in (("seed", 0), ("batch_size", 1), ("top_fine_matches", 0), ("min_firing_prompts", 2),
                            ("min_group_size", 2), ("few_firings", 1), ("min_facet_prompts", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"analysis.{name} {getattr(self, name)} must be >= {least}")
        for name in ("permutations", "bootstrap", "null_directions"):  # Monte Carlo draws
            if getattr(self, name) < 99:
                raise ConfigError(f"analysis.{name} {getattr(self, name)} is too few; use >= 99")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"analysis.alpha {self.alpha} must lie in (0, 1)")


@dataclass(frozen=True)
class DiscoveryConfig:
    """How `python -m harness discover` picks anchors on the discovery half, and what it then claims."""

    n_coarse_anchors: int = 3
    min_fire_rate: float = 0.2
    claim_min_selectivity: float = 0.8
    claim_near_miss_min_selectivity: float = 0.6
    claim_fine_min_selectivity: float = 0.8

    def __post_init__(self) -> None:
        if self.n_coarse_anchors < 1:
            raise ConfigError(f"discovery.n_coarse_anchors {self.n_coarse_anchors} must be >= 1")
        for name in ("min_fire_rate", "claim_min_selectivity", "claim_near_miss_min_selectivity",
                     "claim_fine_min_selectivity"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"discovery.{name} {value} must lie in [0, 1]")


@dataclass(frozen=True)
class ClaimSpec:
    """One declared claim. `params` holds the family's parameters, checked against its registered
    `harness.Param`s. Every claim is a finding with its own verdict; GO is the `go_gate` claim's, plus
    any claim the profile marks `gating = true` (never a steering claim: Phase 2 does not gate Phase 2).

    A family that no module has registered yet (a researcher's, in claims/) is checked when its
    module registers it, at collection, before anything loads."""

    family: str
    name: str
    statement: str
    params: dict[str, Any] = field(default_factory=dict)
    gating: bool | None = None  # None: the family's default
    origin: str = field(default="", compare=False)  # "profile.toml: claims[3]", for error messages

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not FAMILY_NAME.match(self.family):
            raise choices_error("claim family", self.family, registered_families())
        if self.gating is not None and not isinstance(self.gating, bool):
            raise ConfigError(f"claim {self.claim_id!r}: gating = {self.gating!r} must be true or false")
        family = get_family(self.family)
        if family is not None:
            family.check(f"claim {self.claim_id!r}", self.params)
            if self.gating and family.phase == "phase 2":
                raise ConfigError(f"claim {self.claim_id!r}: gating = true, but {family.name} claims are Phase 2 and "
                                  "never gate the decision to start Phase 2; remove `gating`")
            if self.gating is False and family.go_rule:
                raise ConfigError(f"claim {self.claim_id!r}: gating = false, but the {family.name} claim is the gate; "
                                  "remove `gating` (or the claim, for a run with no GO decision)")

    def check(self) -> None:
        """Check against the registered family (raises when none is registered)."""
        require_family(self.family).check(f"claim {self.claim_id!r}", self.params)

    def __repr__(self) -> str:
        return f"ClaimSpec({self.claim_id!r})"

    def param(self, key: str) -> Any:
        if key in self.params:
            return self.params[key]
        family = require_family(self.family)
        if key not in family.params:
            raise choices_error(f"parameter of family {self.family!r}", key, sorted(family.params))
        return family.params[key].default

    def __getattr__(self, key: str) -> Any:
        # claim.min_selectivity reads like the claim; dunders and private names stay attribute errors
        if key.startswith("_") or key in ("family", "name", "statement", "params", "gating", "origin"):
            raise AttributeError(key)
        try:
            return self.param(key)
        except ConfigError as exc:
            raise AttributeError(str(exc)) from None

    @property
    def is_gating(self) -> bool:
        if self.gating is not None:
            return self.gating
        family = get_family(self.family)
        return family.gating if family is not None else True

    @property
    def role(self) -> str:
        """gate (the GO rule's claim), gating (GO needs it too), phase 2, or a phase 1 finding."""
        family = get_family(self.family)
        if family is not None and family.go_rule:
            return "gate"
        if self.is_gating:
            return "gating"
        return "phase 2" if family is not None and family.phase == "phase 2" else "finding"

    @property
    def claim_id(self) -> str:
        return f"{self.family}[{self.name}]"


@dataclass(frozen=True)
class Anchors:
    """Pre-registered feature ids; `source` says where they came from."""

    coarse: tuple[int, ...] = ()
    fine: tuple[int, ...] = ()
    source: str = "pre-registered"
    registered_on: str = ""
    discovery_prompt_hash: str = ""
    split: Literal["all", "confirmation"] = "all"
    # Prompt sets used whole whatever the split (prompts supplied for this run, never seen by discovery).
    whole_sets: tuple[str, ...] = ()
    split_reason: str = ""
    notes: str = ""
    # role -> content hash of the SAE the ids count from (written by discover); a run on other weights
    # follows them from a --baseline or says to re-run discover. Not in repr: cache keys already hold it.
    sae_hashes: dict = field(default_factory=dict, repr=False)


# ---- [steering]: the Phase 2 study's settings (the study itself is harness/steering) --------------
STEERING_POSITIONS = ("reply", "all")  # where the direction is added: the reply's tokens, or every token
MIN_UNIT_CHARS = 3  # no scored word shorter than this: single letters are not words
RENAMED_KEYS = {"random_seeds": "random_directions", "prompt_only": "positions", "alphas": "coefficients"}
WORD_PATTERN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)


@dataclass(frozen=True)
class SteeringConfig:
    # coefficient is in units of the mean residual norm at the hook (neutral prompts).
    coefficients: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
    kl_budget: float = 0.5  # the fluency cost every method is matched to (nats)
    kl_precision: float = 0.01  # each method's mean KL on the prompts it is scored on lands within this (nats)
    positions: str = "reply"
    chat_template: bool = True
    concept_words: tuple[str, ...] = ()
    other_concept: str = ""
    other_concept_words: tuple[str, ...] = ()
    instruction: str = "Talk about {concept}."
    random_directions: int = 99
    random_rows: int = 99
    control_mixtures: int = 19
    calibration_prompts: int = 12  # discovery prompts on which every coefficient is interpolated
    # Confirmation prompts scored: 0 = the whole confirmation half; N = its first N (in prompt order, so
    # the same at every --claims-seed), for a quicker, smaller study.
    confirmation_prompts: int = 0
    control_prompts: int = 12  # confirmation prompts on which the controls are ranked
    band_directions: int = 19  # random directions drawn at every coefficient for the dose-response band
    # Dose-response curves and samples of every method: only the report draws them, so they are off the
    # claims' path unless asked for (they take about as long as the claims' own measurements).
    report_extras: bool = False
    multi_coarse_weight: float = 0.5
    # The other concept's direction (the 2 x 2 design): its most selective coarse feature on at least this
    # many near-miss prompts of that concept, among features firing on at least this share of them.
    other_concept_min_prompts: int = 5
    other_feature_min_fire_rate: float = 0.2
    generation_prompts: int = 64
    max_new_tokens: int = 32
    examples: int = 3
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.coefficients or any(a <= 0 for a in self.coefficients) or list(self.coefficients) != sorted(self.coefficients):
            raise ConfigError(f"steering.coefficients {list(self.coefficients)} must be positive and increasing")
        if self.kl_budget <= 0:
            raise ConfigError(f"steering.kl_budget {self.kl_budget} must be > 0")
        if not 0 < self.kl_precision < self.kl_budget:
            raise ConfigError(f"steering.kl_precision {self.kl_precision} must be > 0 and below kl_budget "
                              f"({self.kl_budget})")
        if self.positions not in STEERING_POSITIONS:
            raise choices_error("steering.positions", self.positions, STEERING_POSITIONS)
        if not self.concept_words:
            raise ConfigError("steering.concept_words is empty; list the concept's words to score")
        check_lexicons(self.concept_words, self.other_concept_words)
        for key in ("random_directions", "random_rows", "control_mixtures", "calibration_prompts",
                    "control_prompts", "generation_prompts", "max_new_tokens", "other_concept_min_prompts"):
            if getattr(self, key) < 1:
                raise ConfigError(f"steering.{key} = {getattr(self, key)} must be >= 1")
        if self.confirmation_prompts < 0:
            raise ConfigError(f"steering.confirmation_prompts = {self.confirmation_prompts} must be >= 0 "
                              "(0: the whole confirmation half)")
        if not 0 <= self.other_feature_min_fire_rate < 1:
            raise ConfigError(f"steering.other_feature_min_fire_rate = {self.other_feature_min_fire_rate} must be in [0, 1)")
        if not 0 < self.multi_coarse_weight < 1:
            raise ConfigError(f"steering.multi_coarse_weight = {self.multi_coarse_weight} must be in (0, 1)")
        if self.temperature <= 0:
            raise ConfigError(f"steering.temperature = {self.temperature} must be > 0")
        if bool(self.other_concept) != bool(self.other_concept_words):
            raise ConfigError("steering.other_concept and steering.other_concept_words go together: the 2 x 2 "
                              f"design needs both (got other_concept = {self.other_concept!r} and "
                              f"{len(self.other_concept_words)} other_concept_words)")

    @classmethod
    def from_dict(cls, data: dict) -> SteeringConfig:
        known = set(cls.__dataclass_fields__)
        kinds = {"coefficients": float, "concept_words": str, "other_concept_words": str}
        for key, value in data.items():
            if key in RENAMED_KEYS:
                raise ConfigError(f"steering.{key} is gone; use steering.{RENAMED_KEYS[key]} (see README, Steering)")
            if key not in known:
                raise choices_error("key in [steering]", key, known)
            if key in kinds:
                if not isinstance(value, list):
                    raise ConfigError(f"steering.{key} = {value!r} must be a list")
                for item in value:
                    check_type(f"steering.{key} item", item, kinds[key])
            else:
                default = cls.__dataclass_fields__[key].default
                check_type(f"steering.{key}", value, type(default))
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_lexicons(concept: Sequence[str], other: Sequence[str]) -> None:
    """Whole words only (no unit under MIN_UNIT_CHARS characters), and the two lexicons share nothing."""
    for name, words in (("concept_words", concept), ("other_concept_words", other)):
        for word in words:
            if len(word.strip()) < MIN_UNIT_CHARS:
                raise ConfigError(f"steering.{name} item {word!r} is shorter than {MIN_UNIT_CHARS} characters; "
                                  f"score whole words, not letters")
            if word != word.strip() or not WORD_PATTERN.search(word):
                raise ConfigError(f"steering.{name} item {word!r} must be a word or phrase without surrounding "
                                  f"spaces (the leading-space variant is scored automatically)")
    shared = {w.casefold() for w in concept} & {w.casefold() for w in other}
    if shared:
        raise ConfigError(f"steering.concept_words and other_concept_words share {sorted(shared)}; "
                          f"the 2 x 2 design needs disjoint lexicons")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model: ModelConfig
    saes: dict[str, SaeConfig]
    prompts: PromptsConfig
    analysis: AnalysisConfig
    anchors: Anchors
    claims: tuple[ClaimSpec, ...]
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    steering: SteeringConfig | None = None  # [steering]; None: the profile declares no Phase 2 study
    path: Path | None = None
    extends: str = ""  # the parent profile's file, when this one extends another

    def claims_of(self, family: str) -> list[ClaimSpec]:
        return [c for c in self.claims if c.family == family]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path) if self.path else None
        return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml") if not p.stem.endswith(".anchors"))


def profile_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.is_dir():
        raise ConfigError(f"profile {name_or_path!r} is a folder; give a profile name or a .toml file")
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise ConfigError(f"profile file {str(candidate)!r} does not exist")
        return candidate
    path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise choices_error("profile", name_or_path, available_profiles())
    return path


def anchors_path(profile_file: Path) -> Path:
    return profile_file.with_name(profile_file.stem + ".anchors.toml")


def load_profile(name_or_path: str, *, require_anchors: bool = True) -> Profile:
    """Load and validate a profile by name (fixtures/profiles/NAME.toml) or path.

    Every problem is one ConfigError that starts with the file it is in. `require_anchors=False`
    (for `discover`, which writes them) accepts a profile whose gate and steering claims have no
    anchors yet.
    """
    path = profile_path(name_or_path)
    try:
        return _load_profile(path, require_anchors=require_anchors)
    except ConfigError as exc:
        message = str(exc)
        if message.split(": ")[0].endswith(".toml"):  # already names its file (this one, a parent, a sidecar)
            raise
        raise ConfigError(f"{path}: {message}") from exc


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc


def _absolute(value: Any, folder: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _resolve_paths(data: dict, folder: Path) -> None:
    """Relative paths in a profile are relative to the folder of the TOML file that wrote them."""
    for sae in (data.get("saes") or {}).values():
        if isinstance(sae, dict) and "path" in sae:
            sae["path"] = _absolute(sae["path"], folder)
    model = data.get("model")
    if isinstance(model, dict) and "path" in model:
        model["path"] = _absolute(model["path"], folder)
    prompts = data.get("prompts")
    if isinstance(prompts, dict):
        for key in ("concept", "neutral", "near_miss"):
            if key in prompts:
                prompts[key] = _absolute(prompts[key], folder)


def _merge(parent: dict, child: dict) -> dict:
    """Tables merge key by key (the child wins); lists and values are replaced."""
    out = dict(parent)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


ORIGIN, SIDECAR, ANCHORS_FILE = "__origin__", "__sidecar__", "__anchors_file__"


def _file_data(path: Path) -> dict:
    """One profile file with its sidecar (`NAME.anchors.toml`, written by `discover`, beside it wherever
    it is): paths absolute, every claim tagged with where it was written."""
    data = _read_toml(path)
    _resolve_paths(data, path.parent)
    claims = data.get("claims", [])
    if not isinstance(claims, list):
        raise ConfigError(f"{path}: claims must be an array of tables ([[claims]])")
    data["claims"] = [{**c, ORIGIN: f"{path}: claims[{i}]"} if isinstance(c, dict) else c for i, c in enumerate(claims)]
    if "anchors" in data:
        data[ANCHORS_FILE] = str(path)
    side_file = anchors_path(path)
    if side_file.is_file():
        side = _read_toml(side_file)
        if "anchors" in side:
            if not isinstance(side["anchors"], dict):
                raise ConfigError(f"{side_file}: [anchors] must be a table")
            data["anchors"] = {**data.get("anchors", {}), **side["anchors"]}
            data[ANCHORS_FILE] = str(side_file)
        data["claims"] += [{**c, ORIGIN: f"{side_file}: claims[{i}]", SIDECAR: True} if isinstance(c, dict) else c
                           for i, c in enumerate(side.get("claims", []))]
    return data


def _profile_data(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A profile's data; with `extends = "name-or-path"`, merged over its parent: model, SAEs, prompts,
    analysis, steering and the parent's claims are inherited (a claim of the same id is replaced).
    The parent's anchors, and the claims `discover` wrote for them, are inherited only while the child
    keeps the parent's concept prompts and declares no anchors of its own: anchors belong to a concept.
    So do the steering lexicons: a child with other concept prompts and no [steering] of its own
    inherits neither the parent's [steering] nor its steering claims."""
    data = _file_data(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str) or not parent_ref:
        raise ConfigError(f"{path}: extends = {parent_ref!r} must be a profile name or a .toml path")
    parent_path = Path(_absolute(parent_ref, path.parent)) if parent_ref.endswith(".toml") else profile_path(parent_ref)
    if parent_path.resolve() in chain or parent_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: extends {parent_ref!r}, which extends it back (a cycle)")
    parent = _profile_data(parent_path, (*chain, path.resolve()))
    for key in ("name", "description"):
        parent.pop(key, None)
    concept_changed = data.get("prompts", {}).get("concept", parent.get("prompts", {}).get("concept")) != \
        parent.get("prompts", {}).get("concept")
    own_claims = [c for c in data.get("claims", []) if isinstance(c, dict)]
    inherited = [c for c in parent.pop("claims", []) if isinstance(c, dict)]
    if concept_changed or "anchors" in data:
        parent.pop("anchors", None)
        parent.pop(ANCHORS_FILE, None)
        inherited = [c for c in inherited if not c.get(SIDECAR)]
    if concept_changed and "steering" not in data:
        # The parent's steering lexicons score the parent's concept: not this one's.
        parent.pop("steering", None)
        inherited = [c for c in inherited if c.get("family") != "steering"]
    replaced = {(c.get("family"), c.get("name")) for c in own_claims}
    merged = _merge(parent, data)
    merged["claims"] = [c for c in inherited if (c.get("family"), c.get("name")) not in replaced] + own_claims
    merged["extends"] = str(parent_path)
    return merged


def _load_profile(path: Path, *, require_anchors: bool = True) -> Profile:
    data = _profile_data(path)
    extends = data.pop("extends", "")
    anchors_file = data.pop(ANCHORS_FILE, str(path))
    top = {"name", "description", "extends", "model", "saes", "prompts", "analysis", "anchors", "claims",
           "steering", "discovery"}
    for key in data:
        if key not in top:
            raise choices_error(f"top-level key in {path.name}", key, top)
    for key in ("name", "model", "saes", "prompts", "claims"):
        if key not in data:
            raise ConfigError(f"profile {path.name} is missing the required section {key!r}")
    saes_data = data["saes"]
    if not isinstance(saes_data, dict):
        raise ConfigError(f"saes must be a table with [saes.coarse] and [saes.fine]; got {saes_data!r}")
    for role in saes_data:
        if role not in SAE_ROLES:
            raise choices_error(f"SAE role in {path.name}", role, SAE_ROLES)
    missing_roles = [r for r in SAE_ROLES if r not in saes_data]
    if missing_roles:
        raise ConfigError(f"profile {path.name} is missing SAEs {missing_roles}")
    saes = {role: _build(SaeConfig, f"saes.{role}", saes_data[role], role=role) for role in SAE_ROLES}

    anchors_data = data.get("anchors", {})
    if not isinstance(anchors_data, dict):
        raise ConfigError(f"{anchors_file}: [anchors] must be a table")
    anchors_data = {k: tuple(v) if isinstance(v, list) else v for k, v in anchors_data.items()}
    hashes = anchors_data.get("sae_hashes", {})
    if not isinstance(hashes, dict) or any(not isinstance(v, str) for v in hashes.values()) or \
            set(hashes) - set(SAE_ROLES):
        raise ConfigError(f"{anchors_file}: anchors.sae_hashes = {hashes!r} must map SAE roles "
                          f"({', '.join(SAE_ROLES)}) to content hashes (strings)")
    side_file = anchors_path(path)
    try:
        anchors = _build(Anchors, "anchors", anchors_data)
        for role in SAE_ROLES:
            for feature in getattr(anchors, role):
                if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < saes[role].d_sae:
                    raise ConfigError(f"anchors.{role} id {feature!r} is not a feature of the {role} SAE; "
                                      f"valid: 0..{saes[role].d_sae - 1}")
    except ConfigError as exc:
        raise ConfigError(f"{anchors_file}: {exc}") from exc

    concept_name = str((data.get("prompts") or {}).get("concept_name", "France"))
    other_concept = str((data.get("steering") or {}).get("other_concept", "") or "the other concept")
    claims = []
    seen: set[str] = set()
    for index, raw in enumerate(data["claims"]):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: claims[{index}] must be a table")
        raw = dict(raw)
        where = raw.pop(ORIGIN, f"{path}: claims[{index}]")
        raw.pop(SIDECAR, None)
        for key in ("family", "name", "statement"):
            if key not in raw:
                raise ConfigError(f"{where} is missing {key!r}")
        try:
            gating = raw.pop("gating", None)
            statement = raw.pop("statement")
            if isinstance(statement, str):  # the concept is data: "{concept} words" reads "France words"
                statement = statement.replace("{concept}", concept_name).replace("{other_concept}", other_concept)
            spec = ClaimSpec(family=raw.pop("family"), name=raw.pop("name"), statement=statement,
                             params=raw, gating=gating, origin=where)
            if get_family(spec.family) is not None:
                check_feature_ids(spec, saes)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if spec.claim_id in seen:
            raise ConfigError(f"{where}: duplicate claim id {spec.claim_id!r}")
        seen.add(spec.claim_id)
        claims.append(spec)

    # Unknown keys and bad values fail here, not minutes later.
    steering = SteeringConfig.from_dict(data["steering"]) if data.get("steering") else None
    profile = Profile(
        name=data["name"],
        description=data.get("description", ""),
        model=_build(ModelConfig, "model", data["model"]),
        saes=saes,
        prompts=_build(PromptsConfig, "prompts", data["prompts"]),
        analysis=_build(AnalysisConfig, "analysis", data.get("analysis", {})),
        anchors=anchors,
        claims=tuple(claims),
        discovery=_build(DiscoveryConfig, "discovery", data.get("discovery", {})),
        steering=steering,
        path=path,
        extends=extends,
    )
    if profile.name != path.stem and path.parent == PROFILES_DIR:
        raise ConfigError(f"profile file {path.name} declares name {profile.name!r}; they must match")
    if profile.analysis.control == "none":
        for spec in claims:
            family = get_family(spec.family)
            if family is not None and family.needs_control and "control" in family.params and spec.param("control"):
                raise ConfigError(f"{spec.origin}: {spec.claim_id} requires the random-SAE control (control = true) "
                                  "but [analysis] control = \"none\"; set one of them the other way")
    needs_anchors = sorted({c.family for c in claims if (f := get_family(c.family)) is not None and f.needs_anchors})
    if require_anchors and needs_anchors and not anchors.coarse:
        raise ConfigError(f"claims of families {needs_anchors} need coarse anchors, and the profile has none (no "
                          f"[anchors] and no {side_file.name} beside it): pick them on the discovery half with "
                          f"`python -m harness discover --profile {path}`, or pre-register them by hand in "
                          f"{side_file.name} ([anchors] coarse = [...], fine = [...], source = \"pre-registered\"; "
                          "README: Anchors)")
    return profile


def check_feature_ids(spec: ClaimSpec, saes: dict[str, SaeConfig]) -> None:
    """Feature ids against the SAE widths the profile declares (checked against the SAEs' own
    configs by `harness.entry.preflight` before any model loads)."""
    family = require_family(spec.family)
    for key, param in family.params.items():
        if not param.feature_of or key not in spec.params or spec.params[key] is None:
            continue
        role = spec.param("sae") if param.feature_of == "sae" else param.feature_of
        value = spec.params[key]
        if role in saes and value >= saes[role].d_sae:
            raise ConfigError(f"{key} {value} is not a feature of the {role} SAE; valid: 0..{saes[role].d_sae - 1}")


def check_claim(spec: ClaimSpec, profile: Profile) -> None:
    """A claim of a family registered after the profile loaded (a researcher's, in claims/): its
    parameters and feature ids, with the profile line it came from."""
    try:
        spec.check()
        check_feature_ids(spec, profile.saes)
    except ConfigError as exc:
        raise ConfigError(f"{spec.origin or profile.path}: {exc}") from exc


def with_overrides(profile: Profile, **changes: Any) -> Profile:
    """A copy of the profile with analysis or prompt fields replaced (CLI/pytest options)."""
    analysis_keys = {f.name for f in dataclasses.fields(AnalysisConfig)}
    prompt_keys = {f.name for f in dataclasses.fields(PromptsConfig)}
    analysis_changes = {k: v for k, v in changes.items() if k in analysis_keys and v is not None}
    prompt_changes = {k: v for k, v in changes.items() if k in prompt_keys and v is not None}
    unknown = set(changes) - analysis_keys - prompt_keys
    if unknown:
        raise choices_error("override", sorted(unknown)[0], analysis_keys | prompt_keys)
    anchors = profile.anchors
    fresh = [k for k in ("concept", "neutral", "near_miss") if k in prompt_changes]
    if fresh and anchors.split != "all":
        # Prompts the user brings took no part in discovery: halving them would only cost power.
        anchors = dataclasses.replace(anchors, whole_sets=tuple(fresh), split_reason=(
            f"{', '.join(fresh)} prompts supplied for this run took no part in discovery: used whole"))
    return dataclasses.replace(
        profile,
        analysis=dataclasses.replace(profile.analysis, **analysis_changes),
        prompts=dataclasses.replace(profile.prompts, **prompt_changes),
        anchors=anchors,
    )
