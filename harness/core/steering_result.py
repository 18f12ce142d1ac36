"""The steering study's result, typed: what the steering claims decide on, and what the report draws.

`harness.steering.study.steering_study` returns a `SteeringResult`; the disk cache is its JSON;
the ledger keeps `ledger_view()` (everything but the per-prompt arrays). The fields a steering
claim reads are required; the report's extras default to empty, so a calibration world can build
the part the claims need and nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WordScore(_Strict):
    word: str
    base_probability: float = Field(description="mean unsteered probability that the next word is this word "
                                    "(all its spellings, whole words), on the confirmation prompts")
    anchor_shift: float = Field(description="mean per-prompt shift of its log-probability under the anchor (nats)")
    discovery_base_probability: float | None = Field(None, description="the same unsteered probability on the "
                                                     "discovery (calibration) prompts, where a lexicon is vetted")


class LexiconInfo(_Strict):
    name: str
    words: list[str] = Field(default_factory=list)
    units: list[Any] = Field(default_factory=list, description="the spellings scored (reply-initial variants)")
    base_log_mass: float | None = Field(None, description="mean unsteered log-probability of the lexicon")
    per_word: list[WordScore] = Field(default_factory=list)


class Lexicons(_Strict):
    concept: LexiconInfo
    other: LexiconInfo


class DirectionInfo(_Strict):
    name: str
    kind: str = Field(description="anchor, multi, fine, aligned_mixture, diffmean, other, other_diffmean, ...")
    components: Any = None
    coefficient: float | None = None
    kl_reached: float | None = None


class PromptScores(_Strict):
    """One method on the confirmation prompts, per prompt (nats, from unsteered)."""
    concept: list[float]
    other: list[float]
    kl: list[float] = Field(default_factory=list)


class ControlKind(_Strict):
    names: list[str] = Field(default_factory=list)
    concept_shift: list[float] = Field(description="each control's shift on the control prompts; where `exact` is "
                                       "False, an upper bound below every ranked direction (screened)")
    exact: list[bool] = Field(default_factory=list, description="scored in full (empty: all were)")
    kl: list[float] = Field(default_factory=list)
    coefficient: list[float] = Field(default_factory=list)


class Controls(_Strict):
    prompts: int
    on_control_prompts: dict[str, float] = Field(default_factory=dict, description="the named methods' shift on "
                                                 "the control prompts (ranked among the controls)")
    on_control_kl: dict[str, float] = Field(default_factory=dict, description="the named methods' mean KL on the "
                                            "control prompts, where they are matched too")
    by_kind: dict[str, ControlKind] = Field(default_factory=dict)
    screened_below: float | None = Field(None, description="controls whose two-token bound on the shift fell "
                                         "below this (the lowest ranked direction's shift) were not scored in full")


class Curve(_Strict):
    kind: str = ""
    coefficient: list[float]
    concept_shift: list[float]
    kl: list[float]


class Band(_Strict):
    coefficient: list[float]
    low: list[float]
    high: list[float]
    median: list[float]
    kl: list[float]
    n: int


class Steerability(_Strict):
    wrong_way: float
    n: int


class MethodSummary(_Strict):
    kind: str
    coefficient: float | None = None
    kl: float | None = None
    concept_shift: float | None = None
    other_shift: float | None = None
    wrong_way: float | None = None
    concept_share: float | None = None
    other_share: float | None = None


class Samples(_Strict):
    prompts: int = 0
    max_new_tokens: int = 0
    concept_share: dict[str, list[float]] = Field(default_factory=dict, description="per sampled continuation")
    other_share: dict[str, list[float]] = Field(default_factory=dict)


class SteeringResult(_Strict):
    # The kind of the anchor pushed to prompting's own KL (versus prompting compares at one KL).
    AT_PROMPTING_KL: ClassVar[str] = "anchor_at_prompting_kl"
    # what the steering claims decide on
    directions: list[DirectionInfo]
    chosen_coefficient: dict[str, float | None]
    per_prompt: dict[str, PromptScores]
    kl_budget: float
    kl_reached: dict[str, float]
    controls: Controls
    lexicons: Lexicons
    samples: Samples = Field(default_factory=Samples)
    steerability: dict[str, Steerability] = Field(default_factory=dict)
    # how it was measured, and what the report draws
    version: int = 0
    scoring: str = ""
    description: str = ""
    radius: float | None = None
    coefficients: list[float] = Field(default_factory=list)
    positions: str = ""
    chat_template: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)
    instruction: str = ""
    calibration_kl: dict[str, list[float]] = Field(default_factory=dict)
    dose_response: dict[str, Curve] = Field(default_factory=dict)
    random_band: Band | None = None
    summary: dict[str, MethodSummary] = Field(default_factory=dict)
    examples: list[dict[str, str]] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    n_prompts: dict[str, int] = Field(default_factory=dict)

    @field_validator("random_band", mode="before")
    @classmethod
    def _no_band(cls, value):
        return value or None  # a study without random directions stores {}

    def first_of_kind(self, kind: str) -> str | None:
        """The name of the first direction of this kind (None when the study has none)."""
        return next((d.name for d in self.directions if d.kind == kind), None)

    def ledger_view(self) -> dict:
        """What the ledger and report keep: everything but the per-prompt arrays (they stay in the cache)."""
        return self.model_dump(mode="json", exclude={"per_prompt": True,
                                                     "samples": {"concept_share": True, "other_share": True}})
