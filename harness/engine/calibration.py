"""Calibration: how often the engine's own verdicts are wrong, on synthetic data with a planted truth.

Every trial builds a synthetic `Analysis` (pooled activations, decoder directions, a profile with
one claim) and calls `harness.engine.claims_engine.evaluate`, the very function `pytest claims/` calls:
no decision rule is re-implemented here. Conditions:

- null conditions plant the truth at the boundary of the claim's null (selectivity exactly tau,
  co-firing absent within prompt sets, equal residual writes, explained variance exactly at the
  floor, ...): the rate of the wrong verdict (usually "held") is the false-positive rate, which
  must stay <= alpha + 2 Monte Carlo standard errors;
- `silent` plants features that barely fire: the wrong verdict is "refuted";
- effect conditions plant the seed's effect sizes: the rate of "held" is the power.

Datasets come from `numpy.random.SeedSequence([seed, *name_entropy("family/condition")]).spawn(n)`:
independent streams, so the Monte Carlo standard error is honest, and a row's datasets depend on its
name only (adding, removing or reordering conditions changes no other row). Each row stores its
per-dataset verdicts, settings, commit and library versions, so a test can recompute any prefix.
"""

from __future__ import annotations

import hashlib
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from harness.engine.analysis import Analysis
from harness.engine.claims_engine import evaluate
from harness.core.config import (
    AnalysisConfig,
    Anchors,
    ClaimSpec,
    ModelConfig,
    Profile,
    PromptsConfig,
    SaeConfig,
)
from harness.core.errors import ConfigError, choices_error
from harness.core.steering_result import Samples, SteeringResult
from harness.features.tables import FeatureTables
from harness.world.prompts import Prompt, PromptSets
from harness.statistics.stats import anisotropic_null

N_CONCEPT = 100  # the confirmation half of 200 concept prompts
N_NEUTRAL = 100
D_MODEL = 128
N_FINE = 1024
# Geometry needs a realistic crowd: in 128 dimensions even isotropic rows reach 0.3 by chance.
D_GEOMETRY, N_FINE_GEOMETRY, DECAY_GEOMETRY = 384, 2048, 0.2


@dataclass(frozen=True)
class Settings:
    n_permutations: int = 199
    n_bootstrap: int = 999
    n_null_directions: int = 200
    alpha: float = 0.05


@dataclass(frozen=True)
class Trial:
    """One synthetic dataset: the analysis, the claim on it, and (for steering) the study."""

    analysis: Analysis
    spec: ClaimSpec
    study: dict | None = None
    control: Analysis | None = None  # the gate's random-SAE control
    # Sequential looks at nested data (the first looks see prefixes of the last): the researcher stops at
    # the first decided verdict, so that verdict is the trial's.
    earlier_looks: tuple[Analysis, ...] = ()
    # Advice conditions: the same world drawn again at the sizes an inconclusive verdict advised.
    rerun: Callable[[dict[str, int]], Trial] | None = None

    def record(self, analysis: Analysis | None = None):
        return claim_record(self.spec, self.analysis if analysis is None else analysis, study=self.study,
                            control=self.control)

    def verdict(self) -> str:
        for look in self.earlier_looks:
            verdict = self.record(look).verdict
            if verdict in ("held", "refuted"):
                return verdict
        return self.record().verdict


PAIRED = "paired"  # Analysis._cache key of a paired-mean world's per-prompt differences


def claim_record(spec: ClaimSpec, analysis: Analysis, *, study=None, control=None):
    """The engine's record. A "paired_mean" world (per-prompt paired differences, as steering claims
    decide on) goes through `claims_engine.paired_shift` (BCa interval + exact sign-flip test) and the
    planner, as every steering claim does."""
    if spec.family != "paired_mean":
        return evaluate(spec, analysis, steering=study, control=control)
    from harness.engine.claims_engine import make_record, paired_shift

    values = analysis._cache[PAIRED]
    verdict, interval, _ = paired_shift(values, analysis)
    return make_record(spec, verdict=verdict, statistic_name="mean",
                       statistic=interval.estimate, threshold=0.0, comparison=">", reason="",
                       plan=lambda: analysis.plan_mean(values, 0.0, ">", "prompts"))


# ---- building synthetic worlds -----------------------------------------------------------------
def _labels(n_concept: int = N_CONCEPT, n_neutral: int = N_NEUTRAL) -> np.ndarray:
    return np.array(["concept"] * n_concept + ["neutral"] * n_neutral)


def zero_heavy(rng, n: int, rate: float, mean_magnitude: float) -> np.ndarray:
    """Pooled SAE activations as they look: zero on most prompts, gamma-distributed when firing."""
    return np.where(rng.random(n) < rate, rng.gamma(2.0, mean_magnitude / 2.0, n), 0.0)


def by_set(rng, concept: tuple[float, float], neutral: tuple[float, float], n_concept: int = N_CONCEPT,
           n_neutral: int = N_NEUTRAL) -> np.ndarray:
    """A feature firing at (rate, mean magnitude) on concept prompts and at another on neutral ones."""
    return np.r_[zero_heavy(rng, n_concept, *concept), zero_heavy(rng, n_neutral, *neutral)]


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def anisotropic_rows(rng, n: int, d: int = D_MODEL, decay: float = 0.5) -> np.ndarray:
    """Unit rows crowded into a cone of leading dimensions, as real decoders are (spectrum k^-decay)."""
    return unit_rows(rng.standard_normal((n, d)) * np.arange(1, d + 1) ** -decay)


def aligned_to(rng, anchor: np.ndarray, cosine: float) -> np.ndarray:
    noise = rng.standard_normal(anchor.size)
    noise -= noise @ anchor * anchor
    return cosine * anchor + math.sqrt(1 - cosine**2) * noise / np.linalg.norm(noise)


def synthetic_world(spec: ClaimSpec, *, coarse, fine=None, coarse_dirs=None, fine_dirs=None, seed: int,
                    settings: Settings, decoder_norms=None, sae_info=None, tables_extra: dict | None = None,
                    min_firing_prompts: int = 5, concept_facets=None, n_concept: int = N_CONCEPT,
                    n_neutral: int = N_NEUTRAL, anchors: tuple[int, ...] = (0,),
                    ceilings: dict | None = None, plan_prompts: bool = False,
                    look: tuple[int, int, str] = (1, 1, "pocock")) -> Analysis:
    """An Analysis over synthetic pooled activations ([prompts, features], concept rows first)."""
    rng = np.random.default_rng([seed, 0x776F726C64])
    labels = _labels(n_concept if concept_facets is None else len(concept_facets), n_neutral)
    coarse = np.asarray(coarse, dtype=np.float64).reshape(len(labels), -1)
    fine = np.zeros((len(labels), 1)) if fine is None else np.asarray(fine, dtype=np.float64)
    d = D_MODEL
    coarse_dirs = unit_rows(rng.standard_normal((coarse.shape[1], d))) if coarse_dirs is None else coarse_dirs
    fine_dirs = unit_rows(rng.standard_normal((fine.shape[1], d))) if fine_dirs is None else fine_dirs
    def facet(name, i):
        return str(concept_facets[i]) if name == "concept" and concept_facets is not None else "synthetic"

    prompts = {name: tuple(Prompt(id=f"{name}-{i}", text=f"{name} {i}", set=name, facet=facet(name, i))
                           for i in range(int((labels == name).sum()))) for name in ("concept", "neutral")}
    sets = PromptSets(prompts["concept"], prompts["neutral"], ())
    n = len(labels)
    extra = dict(tables_extra or {})
    tables = FeatureTables(
        prompt_ids=[p.id for p in sets.all()], prompt_sets=list(labels),
        pooled={"coarse": coarse.astype(np.float32), "fine": fine.astype(np.float32)},
        n_tokens=extra.pop("n_tokens", np.full(n, 10)),
        l0_sum=extra.pop("l0_sum", {"coarse": np.full(n, 10.0), "fine": np.full(n, 10.0)}),
        sq_error=extra.pop("sq_error", {"coarse": np.ones(n), "fine": np.ones(n)}),
        resid_sum=extra.pop("resid_sum", np.zeros((n, d))), resid_sq=extra.pop("resid_sq", np.full(n, 10.0)),
        resid_norm_sum=np.full(n, 10.0), key=f"synthetic-{seed}", meta=extra.pop("meta", {}),
    )
    profile = Profile(
        name="calibration", description="synthetic data with a planted truth",
        model=ModelConfig(name="synthetic", source="synthetic", hook="blocks.0.hook_resid_post", n_layers=1,
                          d_model=d),
        saes={role: SaeConfig(role=role, source="random", d_sae=x.shape[1])
              for role, x in (("coarse", coarse), ("fine", fine))},
        prompts=PromptsConfig(concept="(synthetic)", neutral="(synthetic)"),
        analysis=AnalysisConfig(seed=seed, permutations=settings.n_permutations, bootstrap=settings.n_bootstrap,
                                alpha=settings.alpha, null_directions=settings.n_null_directions,
                                min_firing_prompts=min_firing_prompts, look=look[0], looks=look[1],
                                spending=look[2]),
        anchors=Anchors(coarse=tuple(anchors), source="synthetic", split="all"), claims=(spec,),
    )
    analysis = Analysis.build(profile, tables, sets, {"coarse": coarse_dirs, "fine": fine_dirs}, split="all",
                              decoder_norms=decoder_norms, sae_info=sae_info, ceilings=ceilings)
    analysis.plan_prompts = plan_prompts  # calibration counts verdicts; the advice has its own validation
    return analysis


def _claim(family: str, **params) -> ClaimSpec:
    return ClaimSpec(family=family, name="calibration", statement=f"synthetic {family} claim", params=params)


# ---- selectivity ---------------------------------------------------------------------------------
def selectivity_trial(rng, seed: int, s: Settings, *, other_rate: float, true_selectivity: float) -> Trial:
    """Concept fires on 50% of prompts at mean 3; the other set's mean makes selectivity exactly the truth."""
    mean_concept = 0.5 * 3.0
    mean_other = mean_concept * (1 - true_selectivity) / true_selectivity
    x = by_set(rng, (0.5, 3.0), (other_rate, mean_other / other_rate))
    spec = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9)
    return Trial(synthetic_world(spec, coarse=x, seed=seed, settings=s), spec)


def sequential_trial(rng, seed: int, s: Settings, *, family: str, sizes: tuple[int, ...], spending: str) -> Trial:
    """Looks at the first sizes[k] prompts of each set, each deciding at its share of alpha (declared
    looks = len(sizes)); the data are nested, as when a researcher adds prompts and reruns.

    selectivity: true selectivity exactly 0.9 (the selectivity boundary, other set firing on 10%);
    loud_unselective: equal residual writes (the loudness boundary). The SAE's ceiling is the largest firing."""
    n = max(sizes)
    if family == "paired_mean":  # per-prompt paired differences with mean exactly 0 (Student t, 3 d.f.)
        values = rng.standard_t(3, n) * 0.5
        looks = [_paired_world(values[:size], seed, s, (1, 1, "pocock") if spending == "none" else
                               (k + 1, len(sizes), spending)) for k, size in enumerate(sizes)]
        return Trial(looks[-1], _claim("paired_mean"), earlier_looks=tuple(looks[:-1]))
    if family == "selectivity":
        mean_other = 1.5 * 0.1 / 0.9  # the concept set's mean is 0.5 x 3.0 = 1.5: true selectivity 0.9
        x = by_set(rng, (0.5, 3.0), (0.10, mean_other / 0.10), n, n)[:, None]
        spec, extra = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9), {}
    else:
        x = np.stack([by_set(rng, (0.8, 3.67), (0.02, 1.0), n, n), by_set(rng, (0.8, 4.48), (0.3, 2.0), n, n)], axis=1)
        spec = _claim("loud_unselective", sae="coarse", loud=1, anchor=0, units="residual")
        extra = {"decoder_norms": {"coarse": np.array([1.0, 3.67 / 4.48]), "fine": np.ones(1)}}
    # The SAE's ceiling is the largest firing (as for the rare-large nulls): early looks with a handful of
    # firings are bounded the way a real SAE's packaged ceilings bound them.
    extra["ceilings"] = {"coarse": x.max(0)}
    # spending "none": every look at the whole alpha (what a researcher rerunning without a plan does)
    looks = [synthetic_world(spec, coarse=np.r_[x[:size], x[n:n + size]], seed=seed, settings=s, n_concept=size,
                             n_neutral=size, look=(1, 1, "pocock") if spending == "none" else
                             (k + 1, len(sizes), spending), **extra)
             for k, size in enumerate(sizes)]
    return Trial(looks[-1], spec, earlier_looks=tuple(looks[:-1]))


# ---- prompts that would decide: rerun at the advice --------------------------------------------
def _paired_world(values: np.ndarray, seed: int, s: Settings, look: tuple[int, int, str] = (1, 1, "pocock"),
                  plan: bool = False) -> Analysis:
    analysis = synthetic_world(_claim("sparsity", sae="coarse", max_l0_fraction=0.01), coarse=np.zeros(20), seed=seed,
                               settings=s, n_concept=10, n_neutral=10, plan_prompts=plan, look=look)
    analysis._cache[PAIRED] = values
    return analysis


def advice_trial(rng, seed: int, s: Settings, *, world: str) -> Trial:
    """A world whose claim is usually inconclusive at the present size; `rerun(needed)` draws the same
    world afresh at the advised sizes (sets not named keep theirs).

    selectivity-firing: concept fires on 50% at mean 3, the other set on 25%: true selectivity 0.93 vs 0.9;
    selectivity-rare:   concept on 90% at mean 3, the other set on 1.5% at mean 1.5 (true 0.99), ceiling 9:
                        the other set is usually seen firing 0-2 times;
    selectivity-silent: as rare, the other set never fires (the guard alone decides);
    reconstruction:     explained variance about 0.815 vs the floor 0.8 over 200 prompts (CE-loss score held);
    paired-mean:        per-prompt paired differences, Student t with 3 d.f., mean 0.15 (sd ~0.9) vs 0, 60 prompts.
    """
    def draw(sizes: dict[str, int]) -> Trial:
        if world.startswith("selectivity"):
            n_c, n_o = sizes.get("concept", N_CONCEPT), sizes.get("neutral", N_NEUTRAL)
            if world == "selectivity-firing":
                concept, other = zero_heavy(rng, n_c, 0.5, 3.0), zero_heavy(rng, n_o, 0.25, 1.5 * 0.07 / 0.93 / 0.25)
            else:
                concept = zero_heavy(rng, n_c, 0.9, 3.0)
                other = zero_heavy(rng, n_o, 0.015 if world == "selectivity-rare" else 0.0, 1.5)
            spec = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9)
            analysis = synthetic_world(spec, coarse=np.r_[concept, other], seed=seed, settings=s, n_concept=n_c,
                                       n_neutral=n_o, ceilings=None if world == "selectivity-firing"
                                       else {"coarse": np.array([9.0])}, plan_prompts=True)
        elif world == "reconstruction":
            n = sizes.get("evaluation (concept + neutral)", N_CONCEPT + N_NEUTRAL)
            n_c = n // 2
            tokens = rng.integers(5, 30, n)
            resid_sq = tokens * rng.gamma(4.0, 25.0, n)
            unexplained = rng.beta(2.0, 2.0 * 0.81 / 0.19, n)  # mean 0.19 (EV about 0.815 as a ratio of sums)
            clean = tokens * rng.normal(3.0, 0.2, n)
            zero = tokens * rng.normal(8.0, 0.3, n)
            sae_loss = clean + 0.05 * (zero - clean) * rng.uniform(0.5, 1.5, n)  # CE-loss score ~0.95: held
            ids = [f"{name}-{i}" for name, count in (("concept", n_c), ("neutral", n - n_c)) for i in range(count)]
            extra = {"n_tokens": tokens, "resid_sq": resid_sq,
                     "sq_error": {"coarse": resid_sq * unexplained, "fine": resid_sq},
                     "meta": {"ce_per_prompt": {"ids": ids, "clean": clean.tolist(), "zero": zero.tolist(),
                                                "coarse": sae_loss.tolist(), "tokens": tokens.tolist()}}}
            spec = _claim("reconstruction", sae="coarse", min_explained_variance=0.8, min_ce_loss_score=0.8)
            analysis = synthetic_world(spec, coarse=np.zeros(n), seed=seed, settings=s, tables_extra=extra,
                                       n_concept=n_c, n_neutral=n - n_c, plan_prompts=True)
        else:
            spec = _claim("paired_mean")
            analysis = _paired_world(0.15 + rng.standard_t(3, sizes.get("prompts", 60)) * 0.5, seed, s, plan=True)
        return Trial(analysis, spec, rerun=draw)
    return draw({})


def selectivity_rare_large_trial(rng, seed: int, s: Settings, *, other_rate: float, ratio: float, n_per_set: int,
                                 ceiling: bool = True) -> Trial:
    """The audit's hard null: true selectivity exactly 0.9, the other set firing rarely (`other_rate`) but
    `ratio` times larger than the concept set's mean firing (gamma, mean 3). Every other-set firing is
    exactly at the planted ceiling: the least favourable point for a bound that assumes nothing below it.
    `ceiling=False` decides without one (an SAE with no recorded ceilings)."""
    magnitude_c = 3.0
    large = ratio * magnitude_c  # the ceiling, and the size of every other-set firing
    mean_o = other_rate * ratio * magnitude_c
    rate_c = 9 * mean_o / magnitude_c  # selectivity mean_c / (mean_c + mean_o) exactly 0.9
    if rate_c > 1:
        raise ConfigError(f"rare-large null: other_rate {other_rate} x ratio {ratio} needs a concept rate {rate_c} > 1")
    concept = zero_heavy(rng, n_per_set, rate_c, magnitude_c)
    other = np.where(rng.random(n_per_set) < other_rate, large, 0.0)
    spec = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9)
    world = synthetic_world(spec, coarse=np.r_[concept, other], seed=seed, settings=s, n_concept=n_per_set,
                            n_neutral=n_per_set, ceilings={"coarse": [large]} if ceiling else None)
    return Trial(world, spec)


def selectivity_hidden_large_trial(rng, seed: int, s: Settings, *, small_rate: float, small_share: float,
                                   large_rate: float, n_per_set: int) -> Trial:
    """The hard null for a bound that counts the firings seen at their size: true selectivity exactly 0.9,
    the other set firing often but small (`small_rate`, at `small_share` of the ceiling) and rarely at the
    ceiling itself (`large_rate`), so a sample usually shows only small firings while the mean rests on the
    large ones it missed. The concept set fires on 90% (gamma, mean 3); the ceiling is sized to make the
    selectivity exactly 0.9."""
    mean_c = 0.9 * 3.0
    ceiling = mean_c / 9 / (small_rate * small_share + large_rate)  # mean_o = mean_c / 9
    concept = zero_heavy(rng, n_per_set, 0.9, 3.0)
    u = rng.random(n_per_set)
    other = np.where(u < large_rate, ceiling, np.where(u < large_rate + small_rate, small_share * ceiling, 0.0))
    spec = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9)
    world = synthetic_world(spec, coarse=np.r_[concept, other], seed=seed, settings=s, n_concept=n_per_set,
                            n_neutral=n_per_set, ceilings={"coarse": [ceiling]})
    return Trial(world, spec)


def selectivity_ceiling_power_trial(rng, seed: int, s: Settings, *, true_selectivity: float, ceiling_ratio: float,
                                    n_per_set: int) -> Trial:
    """Power with a ceiling: concept prompts fire on 95% at 3 x U(0.5, 1.5); the other set on 2%, sized to make
    the true selectivity; the SAE's ceiling is `ceiling_ratio` x the concept set's mean firing (the embedded
    anchors' corpus ceilings are 2.1 / 2.1 / 2.8 x their concept means)."""
    magnitude, rate_c, rate_o = 3.0, 0.95, 0.02
    mean_o = rate_c * magnitude * (1 - true_selectivity) / true_selectivity
    size_o = mean_o / rate_o
    ceiling = ceiling_ratio * magnitude
    if size_o > ceiling:
        raise ConfigError(f"ceiling-power: the other set's firing size {size_o:.3g} exceeds the ceiling {ceiling:.3g}")
    concept = np.where(rng.random(n_per_set) < rate_c, magnitude * rng.uniform(0.5, 1.5, n_per_set), 0.0)
    other = np.where(rng.random(n_per_set) < rate_o, size_o, 0.0)
    spec = _claim("selectivity", sae="coarse", feature=0, min_selectivity=0.9)
    world = synthetic_world(spec, coarse=np.r_[concept, other], seed=seed, settings=s, n_concept=n_per_set,
                            n_neutral=n_per_set, ceilings={"coarse": [ceiling]})
    return Trial(world, spec)


# ---- co-firing: sub-features and the GO gate ------------------------------------------------------
CHILD_COSINES = (0.35, 0.5, 0.8)


def _fine_dictionary(rng, anchor: np.ndarray) -> np.ndarray:
    fine = unit_rows(rng.standard_normal((N_FINE, D_MODEL)))
    fine -= 0.9 * np.outer(fine @ anchor, anchor)  # the crowd stays below the cutoff
    fine = unit_rows(fine)
    for row, cosine in enumerate(CHILD_COSINES):
        fine[row] = aligned_to(rng, anchor, cosine)
    return fine


def co_firing_trial(rng, seed: int, s: Settings, *, condition: str, family: str) -> Trial:
    """Parent (coarse 0) prefers the concept; three fine rows are aligned with it (cosines 0.35-0.8).

    within-set: the aligned rows prefer the concept too, but fire independently of the parent within
                each set (the set label alone would make them "co-fire");
    display:    the aligned rows fire independently of everything, while unaligned rows co-fire
                strongly with the parent (the top picks by correlation, which must not pad BH);
    effect:     the aligned rows are the parent's children: they fire only when it fires.
    """
    anchor = unit_rows(rng.standard_normal(D_MODEL))
    fine_dirs = _fine_dictionary(rng, anchor)
    parent = by_set(rng, (0.8, 3.0), (0.05, 1.0))
    fine = np.stack([by_set(rng, (0.05, 1.0), (0.05, 1.0)) for _ in range(N_FINE)], axis=1)
    for row in range(len(CHILD_COSINES)):
        if condition == "within-set":
            fine[:, row] = by_set(rng, (0.5, 2.0), (0.05, 1.0))
        elif condition == "display":
            fine[:, row] = by_set(rng, (0.2, 2.0), (0.2, 2.0))
        else:  # effect: a facet of the parent: on 60% of its firings, carrying part of its magnitude
            fine[:, row] = (rng.random(parent.size) < 0.6) * parent * rng.uniform(0.4, 0.8, parent.size)
    if condition in ("within-set", "display"):
        for row in range(3, 11):  # unaligned features that follow the parent: picked for display by r
            fine[:, row] = (parent > 0) * (rng.random(parent.size) < 0.8) * rng.gamma(2.0, 1.0, parent.size)
    spec = (_claim("go_gate", min_sub_features=3, control=False) if family == "go_gate"
            else _claim("sub_features", anchor=0, min_count=3 if condition == "effect" else 1))
    world = synthetic_world(spec, coarse=parent, fine=fine, coarse_dirs=anchor[None], fine_dirs=fine_dirs, seed=seed,
                            settings=s)
    return Trial(world, spec)


# ---- facets --------------------------------------------------------------------------------------
FACET_NAMES = ("cuisine", "geography", "history", "sport")


def facet_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """Parent (coarse 0) fires on 80% of concept prompts; three aligned children nested in it (each
    fires on 60% of its firings). Concept prompts fall into four facets of 25.

    boundary:      the children's activations do not depend on the facet (no sub-feature prefers one);
    parent-facet:  the parent fires on 95% of cuisine prompts (65% elsewhere) and twice as strongly
                   there; nested children with no facet of their own inherit it (not a finding);
    parent-threshold: as parent-facet, the children fire only where the parent exceeds 4.5 (1.5x its mean
                   firing elsewhere): a non-proportional dependence, still no facet of their own;
    parent-squared: as parent-facet, the children grow as the parent squared;
    two-facets:    child 0 fires on 90% of the parent's firings on cuisine and on geography, 15%
                   elsewhere: it prefers two facets, not one;
    effect:        child 0 encodes the cuisine facet: it fires on 90% of the parent's firings on
                   cuisine prompts and on 15% elsewhere.
    """
    anchor = unit_rows(rng.standard_normal(D_MODEL))
    fine_dirs = _fine_dictionary(rng, anchor)
    n_concept = 2 * N_CONCEPT
    facets = np.array([FACET_NAMES[i % len(FACET_NAMES)] for i in range(n_concept)])
    parent = by_set(rng, (0.8, 3.0), (0.05, 1.0), n_concept)
    cuisine = np.r_[facets == "cuisine", np.zeros(N_NEUTRAL, bool)]
    if condition.startswith("parent-"):
        rate = np.where(cuisine, 0.95, 0.65)
        parent = np.where(np.arange(parent.size) < n_concept,
                          (rng.random(parent.size) < rate) * rng.gamma(2.0, 1.5, parent.size) * (1 + cuisine), parent)
    fine = np.stack([by_set(rng, (0.05, 1.0), (0.05, 1.0), n_concept) for _ in range(N_FINE)], axis=1)
    for row in range(len(CHILD_COSINES)):
        dependence = (parent * (parent > 4.5) if condition == "parent-threshold"
                      else parent**2 / 3.0 if condition == "parent-squared" else parent)
        fine[:, row] = (rng.random(parent.size) < 0.6) * dependence * rng.uniform(0.4, 0.8, parent.size)
    if condition in ("effect", "two-facets"):
        chosen = cuisine | (np.r_[facets == "geography", np.zeros(N_NEUTRAL, bool)] if condition == "two-facets"
                            else False)
        rate = np.where(chosen, 0.9, 0.15)
        fine[:, 0] = (rng.random(parent.size) < rate) * parent * rng.uniform(0.4, 0.8, parent.size)
    spec = _claim("facet", anchor=0, min_sub_features=1)
    world = synthetic_world(spec, coarse=parent, fine=fine, coarse_dirs=anchor[None], fine_dirs=fine_dirs, seed=seed,
                            settings=s, concept_facets=facets)
    return Trial(world, spec)


# ---- geometry ------------------------------------------------------------------------------------
_FIXED_DICTIONARY: dict = {}


def _boundary_dictionary(s: Settings) -> tuple[np.ndarray, float]:
    """One anisotropic dictionary and the true 95% quantile of the null's largest cosine (20,000 draws)."""
    if "rows" not in _FIXED_DICTIONARY:
        rng = np.random.default_rng(0x67656F)
        rows = anisotropic_rows(rng, N_FINE_GEOMETRY, d=D_GEOMETRY, decay=DECAY_GEOMETRY)
        reference = anisotropic_null(rows, n_null=20_000, cutoff=1.0, seed=0x7265)
        _FIXED_DICTIONARY.update(rows=rows, q95=float(np.quantile(reference.max_cosine, 0.95)))
    return _FIXED_DICTIONARY["rows"], _FIXED_DICTIONARY["q95"]


def geometry_trial(rng, seed: int, s: Settings, *, condition: str, width: int = N_FINE_GEOMETRY) -> Trial:
    """boundary:  the cutoff sits exactly at the null's true 95% quantile; 30 planted rows beyond it;
    unaligned: the anchor is one more draw from the decoder's own (anisotropic) distribution;
    effect:    30 rows planted at cosines 0.35-0.8 in an anisotropic dictionary, cutoff 0.3."""
    if condition == "boundary":
        rows, cutoff = _boundary_dictionary(s)
        rows = rows.copy()
    else:
        rows = anisotropic_rows(rng, width, d=D_GEOMETRY, decay=DECAY_GEOMETRY)
        cutoff = 0.3
    anchor = (anisotropic_rows(rng, 1, d=D_GEOMETRY, decay=DECAY_GEOMETRY)[0] if condition == "unaligned"
              else unit_rows(rng.standard_normal(D_GEOMETRY)))
    if condition != "unaligned":
        for row, cosine in enumerate(rng.uniform(max(cutoff + 0.05, 0.35), 0.8, 30)):
            rows[row] = aligned_to(rng, anchor, cosine)
    spec = _claim("geometry", anchor=0, cutoff=cutoff, quantile=0.95)
    world = synthetic_world(spec, coarse=np.zeros(N_CONCEPT + N_NEUTRAL), fine=np.zeros((N_CONCEPT + N_NEUTRAL, 1)),
                            coarse_dirs=anchor[None], fine_dirs=rows, seed=seed, settings=s)
    return Trial(world, spec)


# ---- empty top-left ------------------------------------------------------------------------------
def top_left_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """boundary: one aligned child whose within-set correlation is exactly the floor (0.1);
    silent:   two aligned children co-fire (rho 0.6), a third fires on 2 prompts only;
    effect:   three aligned children co-fire at rho 0.5."""
    anchor = unit_rows(rng.standard_normal(D_MODEL))
    fine_dirs = _fine_dictionary(rng, anchor)
    n = N_CONCEPT + N_NEUTRAL
    rhos = {"boundary": (0.1,), "silent": (0.6, 0.6, None), "effect": (0.5, 0.5, 0.5)}[condition]
    z = rng.standard_normal(n)
    shift = np.where(_labels() == "concept", 6.0, 3.0)
    parent = shift + z
    fine = np.zeros((n, N_FINE))
    for row, rho in enumerate(rhos):
        if rho is None:  # silent on these prompts
            fine[rng.choice(n, 2, replace=False), row] = 1.0
        else:
            fine[:, row] = shift + rho * z + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    for row in range(len(rhos), len(CHILD_COSINES)):  # only the planted rows stay aligned
        fine_dirs[row] = unit_rows(fine_dirs[row] - (fine_dirs[row] @ anchor) * anchor)
    spec = _claim("empty_top_left", min_cosine=0.3, min_correlation=0.1)
    world = synthetic_world(spec, coarse=parent, fine=fine, coarse_dirs=anchor[None], fine_dirs=fine_dirs, seed=seed,
                            settings=s)
    return Trial(world, spec)


# Zero-heavy co-firing: per set, parent ~ Bernoulli(rate) x Gamma(shape, mean / shape); the child fires on
# its own the same way and, with probability `coupling`, adds lam x the parent's activation. lam is
# solved so that the within-set correlation is exactly the floor (0.1) in the population.
ZERO_HEAVY_SETS = (  # (parent rate, parent mean, child rate, child mean, coupling, gamma shape)
    (0.15, 5.0, 0.10, 3.0, 0.5, 0.5),  # concept prompts
    (0.03, 2.0, 0.05, 1.0, 0.5, 0.5),  # neutral prompts
)


def _moments(rate, mean, shape):
    scale = mean / shape
    m1 = rate * shape * scale
    return m1, rate * shape * scale * scale * (shape + 1)


def _within_set_r(lam: float) -> float:
    cov = var_p = var_c = 0.0
    for p_rate, p_mean, c_rate, c_mean, coupling, shape in ZERO_HEAVY_SETS:
        m1, m2 = _moments(p_rate, p_mean, shape)
        c1, c2 = _moments(c_rate, c_mean, shape)
        var = m2 - m1 * m1
        cov += lam * coupling * var
        var_p += var
        var_c += (c2 - c1 * c1) + lam * lam * (coupling * m2 - coupling * coupling * m1 * m1)
    return cov / math.sqrt(var_p * var_c)


def top_left_zero_heavy_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """One aligned child whose within-set correlation with the parent is exactly the floor, zero-heavy."""
    from scipy.optimize import brentq

    lam = brentq(lambda v: _within_set_r(v) - 0.1, 1e-6, 100.0)
    anchor = unit_rows(rng.standard_normal(D_MODEL))
    fine_dirs = _fine_dictionary(rng, anchor)
    for row in range(1, len(CHILD_COSINES)):
        fine_dirs[row] = unit_rows(fine_dirs[row] - (fine_dirs[row] @ anchor) * anchor)
    parent, child = [], []
    for (p_rate, p_mean, c_rate, c_mean, coupling, shape), n in zip(ZERO_HEAVY_SETS, (N_CONCEPT, N_NEUTRAL),
                                                                    strict=True):
        p = np.where(rng.random(n) < p_rate, rng.gamma(shape, p_mean / shape, n), 0.0)
        c = np.where(rng.random(n) < c_rate, rng.gamma(shape, c_mean / shape, n), 0.0)
        parent.append(p)
        child.append(c + (rng.random(n) < coupling) * lam * p)
    fine = np.zeros((N_CONCEPT + N_NEUTRAL, N_FINE))
    fine[:, 0] = np.concatenate(child)
    spec = _claim("empty_top_left", min_cosine=0.3, min_correlation=0.1)
    world = synthetic_world(spec, coarse=np.concatenate(parent), fine=fine, coarse_dirs=anchor[None],
                            fine_dirs=fine_dirs, seed=seed, settings=s)
    return Trial(world, spec)


# ---- loudness ------------------------------------------------------------------------------------
def loud_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """The seed's C-11333 vs C-3999: mean 4.48 vs 3.67 on concept prompts, both firing on 80%.

    boundary: the loud feature's decoder row is shorter, so both write the same into the residual
    stream (the claim is about residual units); effect: equal decoder norms."""
    anchor = by_set(rng, (0.8, 3.67), (0.02, 1.0))
    loud = by_set(rng, (0.8, 4.48), (0.3, 2.0))
    norms = np.array([1.0, 3.67 / 4.48 if condition == "boundary" else 1.0])
    spec = _claim("loud_unselective", sae="coarse", loud=1, anchor=0, units="residual")
    world = synthetic_world(spec, coarse=np.stack([anchor, loud], axis=1), seed=seed, settings=s,
                            decoder_norms={"coarse": norms, "fine": np.ones(1)})
    return Trial(world, spec)


# ---- reconstruction and sparsity ------------------------------------------------------------------
def reconstruction_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """Per-prompt residual energy and SAE error with population explained variance exactly 0.8 (the floor)."""
    n = N_CONCEPT + N_NEUTRAL
    tokens = rng.integers(5, 30, n)
    resid_sq = tokens * rng.gamma(4.0, 25.0, n)
    unexplained = rng.beta(2.0, 8.0, n)  # mean 0.2: EV exactly 0.8 as a ratio of expected sums
    clean = tokens * rng.normal(3.0, 0.2, n)
    zero = tokens * rng.normal(8.0, 0.3, n)
    sae_loss = clean + 0.05 * (zero - clean) * rng.uniform(0.5, 1.5, n)
    ids = [f"{name}-{i}" for name, count in (("concept", N_CONCEPT), ("neutral", N_NEUTRAL)) for i in range(count)]
    extra = {"n_tokens": tokens, "resid_sq": resid_sq, "sq_error": {"coarse": resid_sq * unexplained, "fine": resid_sq},
             "meta": {"ce_per_prompt": {"ids": ids, "clean": clean.tolist(), "zero": zero.tolist(),
                                        "coarse": sae_loss.tolist(), "tokens": tokens.tolist()}}}
    spec = _claim("reconstruction", sae="coarse", min_explained_variance=0.8, min_ce_loss_score=0.8)
    return Trial(synthetic_world(spec, coarse=np.zeros(n), seed=seed, settings=s, tables_extra=extra), spec)


def sparsity_trial(rng, seed: int, s: Settings, *, condition: str) -> Trial:
    """A JumpReLU-like SAE whose population L0 / width is exactly the limit (1% of 2,048 = 20.48)."""
    n = N_CONCEPT + N_NEUTRAL
    width = 2048
    tokens = rng.integers(5, 30, n)
    l0 = tokens * rng.gamma(8.0, 20.48 / 8.0, n)
    spec = _claim("sparsity", sae="coarse", max_l0_fraction=0.01)
    return Trial(synthetic_world(spec, coarse=np.zeros((n, width)), seed=seed, settings=s,
                                 sae_info={"coarse": {"architecture": "jumprelu"}},
                                 tables_extra={"n_tokens": tokens, "l0_sum": {"coarse": l0, "fine": l0}}), spec)


# ---- steering ------------------------------------------------------------------------------------
N_CONTROLS = 99


def _steering_study(per_prompt: dict, *, controls: dict | None = None, on_control: dict | None = None,
                    kinds: dict | None = None, kl: dict | None = None) -> SteeringResult:
    """The parts of a steering study (harness.steering.study.steering_study) that steering claims read."""
    kinds = kinds or {}
    return SteeringResult.model_validate({"directions": [{"name": n, "kind": kinds.get(n, n)} for n in per_prompt if n != "prompting"],
            "chosen_coefficient": {n: 0.2 for n in per_prompt}, "per_prompt": per_prompt, "kl_budget": 0.5,
            "kl_reached": kl or {n: 0.5 for n in per_prompt},
            "controls": {"prompts": 12, "on_control_prompts": on_control or {},
                         "by_kind": {k: {"concept_shift": list(v), "kl": [0.5] * len(v), "names": [], "coefficient": []}
                                     for k, v in (controls or {}).items()}},
            "lexicons": {"concept": {"name": "France", "words": ["France"]},
                         "other": {"name": "Germany", "words": ["Germany"]}}})


def steering_trial(rng, seed: int, s: Settings, *, condition: str, claim_kind: str = "specificity",
                   part: str = "both", baseline: str = "diffmean") -> Trial:
    """Steering claims at the boundary of their null, built as the study builds them."""
    n = N_NEUTRAL
    noise = rng.standard_t(4, n) * 0.4
    kind = claim_kind
    if kind == "specificity" and part in ("first", "inert"):
        # first: the anchor moves both lexicons alike (the statement's first part exactly at 0) while the
        #        Germany direction clearly favours Germany words (the difference in differences is large);
        # inert: the Germany direction does not raise Germany words at all (mean exactly 0), the rest true.
        fr = rng.normal(0.7, 0.5, n)
        gap = 0.0 if part == "first" else 0.6
        de_own = rng.normal(0.0, 0.3, n) if part == "inert" else rng.normal(1.2, 0.3, n)
        study = _steering_study({"anchor": {"concept": fr.tolist(), "other": (fr - gap + noise).tolist(), "kl": []},
                                 "other": {"concept": rng.normal(-0.6, 0.3, n).tolist(), "other": de_own.tolist(),
                                           "kl": []}})
    elif kind == "specificity":
        # 2 x 2: the France direction favours France words by 0.3 nats, and so does the Germany
        # direction (population means): the difference in differences is exactly 0.
        fr = rng.normal(0.7, 0.5, n)
        study = _steering_study({"anchor": {"concept": fr.tolist(), "other": (fr - 0.3 + noise).tolist(), "kl": []},
                                 "other": {"concept": rng.normal(0.7, 0.3, n).tolist(),
                                           "other": rng.normal(0.4, 0.3, n).tolist(), "kl": []}})
    elif kind == "beats_random" and part == "kl-spread":
        # Controls land around the budget (KL 0.5 +- 0.12) and a bigger push moves words more (shift
        # grows with KL); the anchor, at the budget, is one more draw of a control at the budget. Controls
        # off the budget leave the rank.
        kls = np.clip(rng.normal(0.5, 0.12, 2 * N_CONTROLS), 0.05, None)
        shifts = rng.normal(0.3, 0.2, 2 * N_CONTROLS) + 1.5 * (kls - 0.5)
        study = _steering_study({"anchor": {"concept": rng.normal(0.6, 0.3, n).tolist(), "other": [0] * n, "kl": []}},
                                controls={"random": shifts[:N_CONTROLS], "random_row": shifts[N_CONTROLS:]},
                                on_control={"anchor": float(rng.normal(0.3, 0.2))})
        study.controls.by_kind["random"].kl = kls[:N_CONTROLS].tolist()
        study.controls.by_kind["random_row"].kl = kls[N_CONTROLS:].tolist()
    elif kind == "beats_random":
        # The anchor shifts France words (that part holds) but is one more draw from the controls' distribution.
        draws = rng.normal(0.3, 0.2, 2 * N_CONTROLS + 1)
        study = _steering_study({"anchor": {"concept": rng.normal(0.6, 0.3, n).tolist(), "other": [0] * n, "kl": []}},
                                controls={"random": draws[1:N_CONTROLS + 1], "random_row": draws[N_CONTROLS + 1:]},
                                on_control={"anchor": float(draws[0])})
    elif kind == "more_targeted":
        # Multi moves both lexicons more than the anchor, by the same amount on average: its concept-minus-
        # other gap equals the anchor's (heavy-tailed per-prompt differences).
        # part "effect": multi's gap is 0.2 nats wider (the embedded run's measured +0.207).
        fr, de = rng.normal(0.7, 0.5, n), rng.normal(0.2, 0.3, n)
        push = rng.normal(0.4, 0.3, n)
        wider = 0.2 if part == "effect" else 0.0
        study = _steering_study({"anchor": {"concept": fr.tolist(), "other": de.tolist(), "kl": []},
                                 "multi": {"concept": (fr + push).tolist(),
                                           "other": (de + push + noise - wider).tolist(), "kl": []}})
    elif kind == "versus_baseline" and baseline == "prompting":
        # The anchor pushed to the instruction's KL and the instruction move concept words equally on
        # average; the anchor at the budget is far weaker (it must not enter the comparison).
        at_prompting = rng.normal(1.5, 0.6, n)
        study = _steering_study({"anchor": {"concept": rng.normal(0.6, 0.3, n).tolist(), "other": [0] * n, "kl": []},
                                 "anchor at prompting's KL": {"concept": at_prompting.tolist(), "other": [0] * n,
                                                              "kl": []},
                                 "prompting": {"concept": (at_prompting + noise).tolist(), "other": [0] * n, "kl": []}},
                                kinds={"anchor at prompting's KL": "anchor_at_prompting_kl"},
                                kl={"anchor": 0.5, "anchor at prompting's KL": 1.3, "prompting": 1.3})
        spec = _claim("steering", kind=kind, baseline="prompting")
        return Trial(synthetic_world(spec, coarse=np.zeros(N_CONCEPT + N_NEUTRAL), seed=seed, settings=s), spec, study)
    elif kind == "versus_baseline":
        # SAE anchor and DiffMean move concept words equally on average (correlated per prompt).
        anchor = rng.normal(0.6, 0.3, n)
        study = _steering_study({"anchor": {"concept": anchor.tolist(), "other": [0] * n, "kl": []},
                                 "DiffMean": {"concept": (anchor + noise).tolist(), "other": [0] * n, "kl": []}},
                                kinds={"DiffMean": "diffmean"})
        spec = _claim("steering", kind=kind, baseline="diffmean")
        return Trial(synthetic_world(spec, coarse=np.zeros(N_CONCEPT + N_NEUTRAL), seed=seed, settings=s), spec, study)
    elif kind == "concept_rate":
        # Rare concept words, equally rare steered and unsteered: 6% of samples hold any.
        def shares():
            return np.where(rng.random(64) < 0.06, rng.exponential(0.05, 64), 0.0).tolist()
        study = _steering_study({"anchor": {"concept": [0.0] * n, "other": [0.0] * n, "kl": []}})
        study.samples = Samples(concept_share={"anchor": shares(), "unsteered": shares()}, max_new_tokens=32)
    else:  # multi_vs_single; the claim needs every part, so each part is put at its null with the other clearly true
        anchor = rng.normal(0.6, 0.3, n)
        draws = rng.normal(0.6, 0.2, 20)
        gain = 0.3 if part == "rank" else 0.0  # "rank": multi clearly beats the anchor; the rank is the null
        on_control = float(draws[0]) if part in ("rank", "both") else 10.0  # "interval": far above every mixture
        study = _steering_study({"anchor": {"concept": anchor.tolist(), "other": [0] * n, "kl": []},
                                 "multi": {"concept": (anchor + gain + noise).tolist(), "other": [0] * n,
                                           "kl": []}},
                                controls={"control_mixture": draws[1:]}, on_control={"multi": on_control})
    spec = _claim("steering", kind=kind)
    return Trial(synthetic_world(spec, coarse=np.zeros(N_CONCEPT + N_NEUTRAL), seed=seed, settings=s), spec, study)


# ---- the GO gate as a whole -------------------------------------------------------------------------
SEED_CHILD_COSINES = (0.54, 0.42, 0.34)  # C-11333's three fine matches in the seed (its GO)
GATE_ANCHORS = 3  # the seed pre-registered three coarse anchors; the embedded profile discovers three
N_COARSE_CONTROL, CONTROL_TOKENS, CONTROL_K = (256, 6, (8, 16))
# Activation ceilings in the gate's worlds: each coarse feature's largest activation over HELD_OUT held-out
# prompts drawn from the same world (its own stream, so the prompts' draws are unchanged), as the
# `ceilings` command measures them on corpus text.
HELD_OUT, CEILING_STREAM = 2000, 0x6365696C
# Residual width of the gate's worlds: wide enough that directions unrelated to an anchor almost never reach
# cosine 0.3 by chance, as in the real models (576 and 2,304 dimensions); at 128 they often do.
D_GATE = 384


def _gate_dictionary(rng, anchors_AD: np.ndarray) -> np.ndarray:
    """Fine rows whose crowd stays below the cutoff for every anchor (most of each anchor component removed)."""
    fine = unit_rows(rng.standard_normal((N_FINE, D_GATE)))
    basis, _ = np.linalg.qr(anchors_AD.T)
    fine -= 0.9 * (fine @ basis) @ basis.T
    return unit_rows(fine)


_TRAINED_MOMENTS: dict = {}


def _trained_moments(role: str, size: int):
    """Mean and covariance root of one fixed anisotropic "trained" dictionary per role (its rows do not
    matter to a random SAE, only their moments; computed once per process)."""
    from harness.features.control import decoder_moments

    if role not in _TRAINED_MOMENTS:
        rows = anisotropic_rows(np.random.default_rng([0x7472, size]), size, d=D_GATE)
        _TRAINED_MOMENTS[role] = decoder_moments(rows)
    return _TRAINED_MOMENTS[role]


def random_sae_world(rng, seed: int, s: Settings, spec: ClaimSpec, *, n_concept: int, n_neutral: int,
                     ceilings: bool = False) -> Analysis:
    """A world whose SAEs are random (harness.features.control, the very construction the run uses):
    token residuals with a concept direction, encoded by tied random TopK SAEs built from anisotropic
    "trained" dictionaries, max-pooled per prompt. Anchors: the most concept-selective coarse features,
    picked the way the control picks them. `ceilings`: the coarse SAE's ceilings are measured as
    `python -m harness ceilings` measures them, its largest activation over held-out text (HELD_OUT
    prompts' tokens drawn like the prompts', half of them about the concept). The run's own random-SAE
    control has no ceilings (none are measured for it), so the control world never gets them."""
    from harness.engine.gate import control_anchors, with_anchors
    from harness.features.control import draw_rows, tied_topk_encode

    n = n_concept + n_neutral
    spectrum = np.arange(1, D_GATE + 1) ** -0.5
    x = rng.standard_normal((n * CONTROL_TOKENS, D_GATE)) * spectrum * 3.0
    concept_direction = unit_rows(rng.standard_normal(D_GATE) * spectrum)

    def add_concept(x: np.ndarray, n_concept: int) -> np.ndarray:
        """The concept direction added to every token of the first n_concept prompts."""
        x[:n_concept * CONTROL_TOKENS] += 2.0 * concept_direction
        return x

    x = add_concept(x, n_concept)
    centre = x.mean(0)
    rows = {role: draw_rows(*_trained_moments(role, size), size, seed=seed + i)
            for i, (role, size) in enumerate((("coarse", N_COARSE_CONTROL), ("fine", N_FINE)))}
    pooled = {role: tied_topk_encode(x, rows[role], k=k, centre=centre).reshape(n, CONTROL_TOKENS, -1).max(1)
              for role, k in zip(("coarse", "fine"), CONTROL_K, strict=True)}
    measured = None
    if ceilings:
        held_out = np.random.default_rng([seed, CEILING_STREAM]).standard_normal(
            (HELD_OUT * CONTROL_TOKENS, D_GATE)) * spectrum * 3.0
        held_out = add_concept(held_out, HELD_OUT // 2)
        measured = {"coarse": tied_topk_encode(held_out, rows["coarse"], k=CONTROL_K[0], centre=centre).max(0)}
    world = synthetic_world(spec, coarse=pooled["coarse"], fine=pooled["fine"], coarse_dirs=rows["coarse"],
                            fine_dirs=rows["fine"], seed=seed, settings=s, n_concept=n_concept, n_neutral=n_neutral,
                            ceilings=measured)
    picked = control_anchors(world, GATE_ANCHORS, world.profile.discovery.min_fire_rate)
    return with_anchors(world, picked or (0,))


def gate_trial(rng, seed: int, s: Settings, *, children: int = 3, aligned: int = 0, n_concept: int = N_CONCEPT,
               n_neutral: int = N_NEUTRAL, control: bool = True, world: str = "planted", every_anchor: bool = False,
               shared_aligned: bool = False, unselective: bool = False, ceilings: bool = False,
               ceiling_ratio: float | None = None) -> Trial:
    """The gate over three selective anchors; anchor 0 has `children` nested sub-features at the seed's
    cosines (fire on 60% of its firings, carrying part of its magnitude) and `aligned` more rows at cosines
    0.32-0.6 that prefer the concept but do not co-fire with it within prompt sets. With `control`, a
    random-SAE world on the same prompt counts is the control. world="random": the SAEs themselves are random.

    every_anchor: all three anchors get the children and aligned rows (GO through any of them is the risk);
    shared_aligned: the aligned rows fire together (one latent per prompt), still apart from the parent;
    unselective: anchor 0 fires alike on both sets (selectivity exactly 0.5) but has its children.
    ceilings: the coarse SAE has activation ceilings (`held_out_ceilings`), as a packaged or measured SAE has;
    with `ceiling_ratio`, each is that multiple of the feature's mean firing on concept prompts instead
    (the embedded anchors' measured ceilings are 2.1-2.8x)."""
    spec = _claim("go_gate", min_sub_features=3, control=control)
    control_world = (random_sae_world(np.random.default_rng([seed, 0x6374]), seed + 1, s, spec, n_concept=n_concept,
                                      n_neutral=n_neutral) if control else None)
    if world == "random":
        return Trial(random_sae_world(rng, seed, s, spec, n_concept=n_concept, n_neutral=n_neutral,
                                      ceilings=ceilings), spec, control=control_world)
    anchors = unit_rows(rng.standard_normal((GATE_ANCHORS, D_GATE)))
    fine_dirs = _gate_dictionary(rng, anchors)
    firing = [((0.8, 3.0), (0.8, 3.0) if unselective and i == 0 else (0.05, 1.0)) for i in range(GATE_ANCHORS)]
    parents = np.stack([by_set(rng, *rates, n_concept, n_neutral) for rates in firing], axis=1)
    fine = np.stack([by_set(rng, (0.05, 1.0), (0.05, 1.0), n_concept, n_neutral) for _ in range(N_FINE)], axis=1)
    row = 0
    for a in range(GATE_ANCHORS if every_anchor else 1):
        parent = parents[:, a]
        latent = by_set(rng, (0.5, 2.0), (0.05, 1.0), n_concept, n_neutral) > 0
        for child in range(children):
            fine_dirs[row] = aligned_to(rng, anchors[a], SEED_CHILD_COSINES[child % len(SEED_CHILD_COSINES)])
            fine[:, row] = (rng.random(parent.size) < 0.6) * parent * rng.uniform(0.4, 0.8, parent.size)
            row += 1
        for _ in range(aligned):
            fine_dirs[row] = aligned_to(rng, anchors[a], rng.uniform(0.32, 0.6))
            fine[:, row] = (latent * (rng.random(parent.size) < 0.8) * rng.gamma(2.0, 1.0, parent.size) if shared_aligned
                            else by_set(rng, (0.5, 2.0), (0.05, 1.0), n_concept, n_neutral))
            row += 1
    planted = None
    if ceilings:
        planted = (held_out_ceilings(seed, firing) if ceiling_ratio is None
                   else {"coarse": np.array([ceiling_ratio * concept[1] for concept, _ in firing])})
    analysis = synthetic_world(spec, coarse=parents, fine=fine, coarse_dirs=anchors, fine_dirs=fine_dirs, seed=seed,
                               settings=s, n_concept=n_concept, n_neutral=n_neutral,
                               anchors=tuple(range(GATE_ANCHORS)), ceilings=planted)
    return Trial(analysis, spec, control=control_world)


def held_out_ceilings(seed: int, firing: list[tuple[tuple[float, float], tuple[float, float]]]) -> dict:
    """The coarse SAE's ceilings in a planted world: each feature's largest activation over HELD_OUT held-out
    prompts drawn like its concept and neutral prompts (`firing`: per feature, the two sets' rate and mean
    magnitude), from a stream of their own. Gamma(2) firings make this about 4-5x the mean firing: more
    than the embedded anchors' 2.1-2.8x, so the planted gate is, if anything, harder to pass."""
    rng = np.random.default_rng([seed, CEILING_STREAM])
    return {"coarse": np.array([by_set(rng, *rates, HELD_OUT // 2, HELD_OUT // 2).max() for rates in firing])}


@dataclass(frozen=True)
class Condition:
    family: str
    condition: str  # "boundary", "within-set", "display", "silent", "unaligned", "effect", ...
    kind: str  # "fpr": rate of the wrong verdict; "power": rate of "held"
    make: Callable[..., Trial]
    wrong_verdict: str = "held"
    description: str = ""
    # Shuffles the condition needs at least (the gate's simultaneous bound cannot reach its count with fewer).
    min_permutations: int = 0

    @property
    def key(self) -> str:
        return f"{self.family}/{self.condition}"


def _c(family_name, condition_name, kind, make, description, wrong="held", min_permutations=0, **kwargs) -> Condition:
    if family_name == "go_gate":
        min_permutations = max(min_permutations, GATE_PERMUTATIONS)
    return Condition(family_name, condition_name, kind, lambda rng, seed, s: make(rng, seed, s, **kwargs), wrong,
                     description, min_permutations)


GATE_PERMUTATIONS = 2000  # 3 anchors at alpha / 3 over ~10 cosine-qualified rows
GATE_PERMUTATIONS_WIDE = 5000  # 38 rows at alpha / 3 need ~2,280 shuffles before the count can reach 3


CONDITIONS: tuple[Condition, ...] = (
    _c("selectivity", "boundary", "fpr", selectivity_trial, "true selectivity exactly 0.9 (claim: > 0.9); "
       "other set fires on 10%", other_rate=0.10, true_selectivity=0.9),
    _c("selectivity", "boundary-rare", "fpr", selectivity_trial, "true selectivity exactly 0.9; other set "
       "fires on 4% only (few events)", other_rate=0.04, true_selectivity=0.9),
    _c("selectivity", "effect", "power", selectivity_trial, "true selectivity 0.97 (the seed's C-3999) vs the "
       "bar 0.9", other_rate=0.03, true_selectivity=0.97),
    _c("sub_features", "within-set", "fpr", co_firing_trial, "aligned rows prefer the concept but fire "
       "independently of the parent within each set", condition="within-set", family="sub_features"),
    _c("sub_features", "display", "fpr", co_firing_trial, "aligned rows independent; unaligned rows co-fire "
       "with the parent and are picked for display", condition="display", family="sub_features"),
    _c("sub_features", "effect", "power", co_firing_trial, "three nested children (fire only with the parent) "
       "at cosines 0.35 / 0.5 / 0.8: all three found", condition="effect", family="sub_features"),
    _c("go_gate", "within-set", "fpr", co_firing_trial, "as sub_features within-set, decided by the gate "
       "(>= 3 sub-features)", condition="within-set", family="go_gate"),
    _c("go_gate", "effect", "power", co_firing_trial, "three nested children: GO", condition="effect",
       family="go_gate"),
    _c("geometry", "boundary", "fpr", geometry_trial, "cutoff exactly at the null's true 95% quantile "
       "(anisotropic dictionary), 30 planted rows beyond it", condition="boundary"),
    _c("geometry", "unaligned", "fpr", geometry_trial, "anchor drawn from the decoder's own anisotropic "
       "distribution: nothing aligned with it", condition="unaligned"),
    _c("geometry", "effect", "power", geometry_trial, "30 rows planted at cosines 0.35-0.8, cutoff 0.3",
       condition="effect"),
    _c("geometry", "effect-4x-width", "power", geometry_trial, "as effect, fine dictionary 4x wider",
       condition="effect", width=4 * N_FINE_GEOMETRY),
    _c("empty_top_left", "boundary", "fpr", top_left_trial, "one aligned child co-firing at exactly the floor "
       "(within-set r = 0.1)", condition="boundary"),
    _c("empty_top_left", "boundary-zero-heavy", "fpr", top_left_zero_heavy_trial, "one aligned child at exactly "
       "the floor, zero-heavy activations (parent fires on 15% / 3%, gamma shape 0.5)", condition="boundary"),
    _c("empty_top_left", "silent", "fpr", top_left_trial, "two aligned children co-fire (r 0.6), a third fires "
       "on 2 prompts only: must not be refuted", wrong="refuted", condition="silent"),
    _c("empty_top_left", "effect", "power", top_left_trial, "three aligned children co-firing at r 0.5",
       condition="effect"),
    _c("loud_unselective", "boundary", "fpr", loud_trial, "louder activations (4.48 vs 3.67) but a shorter "
       "decoder row: equal residual writes", condition="boundary"),
    _c("loud_unselective", "effect", "power", loud_trial, "the seed's 4.48 vs 3.67 with equal decoder norms",
       condition="effect"),
    _c("reconstruction", "boundary", "fpr", reconstruction_trial, "explained variance exactly 0.8 (the floor)",
       condition="boundary"),
    _c("sparsity", "boundary", "fpr", sparsity_trial, "a JumpReLU SAE with L0 / width exactly the 1% limit",
       condition="boundary"),
    _c("facet", "boundary", "fpr", facet_trial, "three nested sub-features whose activations do not depend on "
       "the facet (4 facets x 50 concept prompts, halved)", condition="boundary"),
    _c("facet", "parent-facet", "fpr", facet_trial, "the parent prefers cuisine (95% vs 65% of prompts, twice as "
       "strong); its nested children have no facet of their own", condition="parent-facet"),
    _c("facet", "parent-threshold", "fpr", facet_trial, "as parent-facet, the children fire only where the parent "
       "exceeds 4.5, 1.5x its mean firing off cuisine (a non-proportional dependence)", condition="parent-threshold"),
    _c("facet", "parent-squared", "fpr", facet_trial, "as parent-facet, the children grow as the parent squared",
       condition="parent-squared"),
    _c("facet", "two-facets", "fpr", facet_trial, "a child fires on 90% of the parent's firings on two facets, 15% "
       "elsewhere: no single facet", condition="two-facets"),
    _c("facet", "effect", "power", facet_trial, "one sub-feature encodes a facet: fires on 90% of the "
       "parent's firings on it, 15% elsewhere", condition="effect"),
    _c("steering", "boundary", "fpr", steering_trial, "specificity: 2 x 2 difference in differences exactly 0 "
       "(heavy-tailed per-prompt noise)", condition="boundary", claim_kind="specificity"),
    _c("steering", "boundary-rank", "fpr", steering_trial, "beats_random: the anchor shifts France words but is "
       "one more draw among 99 random directions and 99 random rows", condition="boundary", claim_kind="beats_random"),
    _c("steering", "boundary-rank-kl-spread", "fpr", steering_trial, "beats_random: as boundary-rank, the controls "
       "landing at KL 0.5 +- 0.12 with shifts growing with KL (those off the budget leave the rank)",
       condition="boundary", claim_kind="beats_random", part="kl-spread"),
    _c("steering", "boundary-more-targeted", "fpr", steering_trial, "more_targeted: multi moves both lexicons "
       "more than the anchor by the same amount on average (heavy-tailed per-prompt differences)",
       condition="boundary", claim_kind="more_targeted"),
    _c("steering", "effect-more-targeted", "power", steering_trial, "more_targeted: multi's France-minus-Germany "
       "gap is 0.2 nats wider than the anchor's (the embedded run measured +0.207), heavy-tailed per-prompt "
       "differences, 100 prompts", condition="boundary", claim_kind="more_targeted", part="effect"),
    _c("steering", "boundary-baseline", "fpr", steering_trial, "versus_baseline: anchor and DiffMean move "
       "concept words equally on average (heavy-tailed per-prompt differences)", condition="boundary",
       claim_kind="versus_baseline"),
    _c("steering", "boundary-prompting", "fpr", steering_trial, "versus_baseline (prompting): the anchor at the "
       "instruction's KL and the instruction move concept words equally on average (heavy-tailed differences)",
       condition="boundary", claim_kind="versus_baseline", baseline="prompting"),
    _c("steering", "boundary-rare-words", "fpr", steering_trial, "concept_rate: concept words equally rare "
       "steered and unsteered (6% of 64 samples hold any)", condition="boundary", claim_kind="concept_rate"),
    _c("steering", "boundary-multi", "fpr", steering_trial, "multi_vs_single: multi = single on average and "
       "exchangeable with 19 cosine-matched mixtures", condition="boundary", claim_kind="multi_vs_single"),
    _c("steering", "boundary-multi-interval", "fpr", steering_trial, "multi_vs_single: multi = single on average, "
       "far above every cosine-matched mixture", condition="boundary", claim_kind="multi_vs_single", part="interval"),
    _c("steering", "boundary-multi-rank", "fpr", steering_trial, "multi_vs_single: multi beats single by 0.3 "
       "nats but is one more draw among 19 cosine-matched mixtures", condition="boundary", claim_kind="multi_vs_single",
       part="rank"),
    _c("go_gate", "boundary-2+10", "fpr", gate_trial, "the gate at its boundary: anchor 0 has 2 true sub-features "
       "plus 10 aligned rows that prefer the concept but do not co-fire within sets (3 anchors, 100 + 100 "
       "prompts, no control)", children=2, aligned=10, control=False),
    _c("go_gate", "boundary-2+36", "fpr", gate_trial, "as boundary-2+10 with 36 aligned non-co-firing rows",
       children=2, aligned=36, control=False, min_permutations=GATE_PERMUTATIONS_WIDE),
    _c("go_gate", "boundary-2+36-shared", "fpr", gate_trial, "as boundary-2+36, the 36 aligned rows firing together "
       "(one latent per prompt), still apart from the parent: dependent nulls", children=2, aligned=36,
       shared_aligned=True, control=False, min_permutations=GATE_PERMUTATIONS_WIDE),
    _c("go_gate", "boundary-every-anchor", "fpr", gate_trial, "all three anchors at the boundary (2 true "
       "sub-features + 10 aligned non-co-firing rows each): GO through any one is the error", children=2,
       aligned=10, every_anchor=True, control=False),
    _c("go_gate", "boundary-unselective", "fpr", gate_trial, "anchor 0 has 3 true sub-features but no preference "
       "for the concept (fires alike on both sets: selectivity exactly 0.5)", unselective=True, control=False),
    _c("go_gate", "power-seed-design", "power", gate_trial, "3 nested sub-features at the seed's cosines "
       "(0.54 / 0.42 / 0.34), parent selectivity ~0.98; the seed's design: 200 + 200 prompts, 3 pre-registered "
       "anchors, no split; random-SAE control", n_concept=200, n_neutral=200),
    _c("go_gate", "power-embedded-design", "power", gate_trial, "as power-seed-design on the embedded design: "
       "the confirmation half (100 + 100 prompts), 3 discovered anchors; random-SAE control"),
    _c("go_gate", "power-40-prompts", "power", gate_trial, "as power-seed-design with 40 + 40 prompts (a "
       "hand-written re-validation set); random-SAE control", n_concept=40, n_neutral=40),
    _c("go_gate", "power-seed-design-ceilings", "power", gate_trial, "as power-seed-design, the coarse SAE with "
       "activation ceilings (each feature's largest activation on 2,000 held-out prompts of the same world)",
       n_concept=200, n_neutral=200, ceilings=True),
    _c("go_gate", "power-embedded-design-ceilings", "power", gate_trial, "as power-embedded-design, the coarse SAE "
       "with activation ceilings (as power-seed-design-ceilings)", ceilings=True),
    _c("go_gate", "power-embedded-design-ceilings-2.8x", "power", gate_trial, "as power-embedded-design, each "
       "coarse ceiling 2.8x the feature's mean firing on concept prompts (the largest ratio among the embedded "
       "anchors' measured ceilings)", ceilings=True, ceiling_ratio=2.8),
    _c("go_gate", "power-40-prompts-ceilings-2.8x", "power", gate_trial, "as power-40-prompts, each coarse "
       "ceiling 2.8x the feature's mean firing on concept prompts", n_concept=40, n_neutral=40, ceilings=True,
       ceiling_ratio=2.8),
    _c("go_gate", "power-40-prompts-ceilings", "power", gate_trial, "as power-40-prompts, the coarse SAE with "
       "activation ceilings (as power-seed-design-ceilings)", n_concept=40, n_neutral=40, ceilings=True),
    _c("go_gate", "random-sae-rule-only", "fpr", gate_trial, "the SAEs are random (tied TopK with a decoder's "
       "covariance; anchors picked as the most concept-selective): the rule alone, no control",
       world="random", control=False),
    _c("go_gate", "random-sae", "fpr", gate_trial, "the SAEs are random: the whole gate, with the random-SAE "
       "control", world="random"),
    _c("go_gate", "random-sae-ceilings", "fpr", gate_trial, "as random-sae, the random coarse SAE with activation "
       "ceilings measured on held-out tokens (the run's random-SAE control has none)", world="random", ceilings=True),
    _c("steering", "boundary-specificity-first", "fpr", steering_trial, "specificity: the anchor moves France and "
       "Germany words alike (the statement's first part exactly 0); the difference in differences is large",
       condition="boundary", claim_kind="specificity", part="first"),
    _c("steering", "boundary-specificity-inert", "fpr", steering_trial, "specificity: the Germany direction does not "
       "raise Germany words (mean exactly 0); the rest of the 2 x 2 true: must not be held", condition="boundary",
       claim_kind="specificity", part="inert"),
    # The audit's rare-large-firing nulls, decided with the ceiling.
    *(_c("selectivity", f"rare-large-{round(rate * 1000) / 10:g}pct-{ratio:g}x-n{n}", "fpr",
         selectivity_rare_large_trial, f"true selectivity exactly 0.9; the other set fires on {rate:.1%} at {ratio:g}x "
         f"the concept set's size, {n} + {n} prompts; the SAE's ceiling is the largest firing",
         other_rate=rate, ratio=ratio, n_per_set=n)
      for n in (50, 100) for rate, ratio in ((0.02, 2.8), (0.02, 5.0), (0.005, 10.0), (0.01, 10.0))),
    # The betting bound's own hard null: small firings seen, the mean carried by ceiling firings rarely seen.
    *(_c("selectivity", f"hidden-large-{small:g}pct-at-{share:g}-{large:g}pct-at-ceiling-n{n}", "fpr",
         selectivity_hidden_large_trial, f"true selectivity exactly 0.9; the other set fires on {small:g}% at "
         f"{share:g}x the ceiling and on {large:g}% at the ceiling, {n} + {n} prompts",
         small_rate=small / 100, small_share=share, large_rate=large / 100, n_per_set=n)
      for n in (50, 100) for small, share, large in ((7.2, 0.1, 0.8), (4.0, 0.25, 1.0))),
    # Prompts that would decide: the same world rerun at the advice of an inconclusive verdict.
    *(_c("advice", world, "advice", advice_trial, f"{world}: rerun at the sizes an inconclusive verdict advised; "
         "target: decided (held or refuted) in 0.8 +- 0.05 of them", world=world)
      for world in ("selectivity-firing", "selectivity-rare", "selectivity-silent", "reconstruction", "paired-mean")),
    # Sequential re-validation: nested looks (prompts added between them), alpha spent across them.
    *(_c(family, f"sequential-{len(sizes)}-looks-{spending}", "fpr", sequential_trial,
         f"{what}, looked at after {' / '.join(map(str, sizes))} prompts{' per set' * (family != 'paired_mean')}, "
         f"stopping at the first decided verdict; each look decides at its {spending} share of alpha",
         family=family, sizes=sizes, spending=spending)
      for family, what, plans in (
          ("paired_mean", "per-prompt paired differences with mean exactly 0 (Student t, 3 d.f.), decided on the "
           "engine's mean interval as steering claims are", (((40, 70, 100), "pocock"), ((20, 40, 60, 80, 100), "pocock"),
                                                            ((40, 70, 100), "obrien-fleming"))),
          ("loud_unselective", "equal residual writes", (((40, 70, 100), "pocock"), ((20, 40, 60, 80, 100), "pocock"))),
          ("selectivity", "true selectivity exactly 0.9", (((20, 40, 60, 80, 100), "pocock"),)))
      for sizes, spending in plans),
    *(_c("selectivity", f"ceiling-power-{sel:g}-{ratio:g}x-n{n}", "power", selectivity_ceiling_power_trial,
         f"true selectivity {sel:g} vs the bar 0.9, concept fires on 95%, other set on 2%, {n} + {n} prompts; "
         f"ceiling {ratio:g}x the concept set's mean firing", true_selectivity=sel, ceiling_ratio=ratio, n_per_set=n)
      for sel, ratio, n in ((0.97, 2.0, 100), (0.99, 2.0, 100), (0.97, 2.0, 400), (0.97, 3.0, 400))),
)


VERDICT_CODES = {"held": "h", "refuted": "r", "inconclusive": "i", "not evaluated": "n"}
# Advice rows: the first look was inconclusive and advised sizes; the rerun there decided or did not.
ADVICE_CODES = {"decided at the advice": "d", "undecided at the advice": "u", "no advice": "x"}
ADVICE_TARGET, ADVICE_BAND = 0.8, 0.05


def name_entropy(name: str) -> list[int]:
    """Four 32-bit words from the condition's name: its datasets' seeds, independent of its position."""
    digest = hashlib.sha256(name.encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def condition_settings(condition: Condition, settings: Settings) -> Settings:
    return replace(settings, n_permutations=max(settings.n_permutations, condition.min_permutations))


def provenance() -> dict:
    """Where a row was computed: the commit and the versions of the libraries its statistics use."""
    from importlib.metadata import version

    from harness.core.version import __version__
    from harness.outputs.ledger import git_commit

    return {"commit": git_commit(), "versions": {"python": platform.python_version(), "harness": __version__,
                                                 **{n: version(n) for n in ("numpy", "scipy", "statsmodels")}}}


def dataset_verdicts(condition: Condition, *, n_datasets: int, seed: int, settings: Settings,
                     progress_bar=None) -> str:
    """One code per dataset (h held, r refuted, i inconclusive, n not evaluated), in dataset order.
    Dataset i is the i-th child of the condition's SeedSequence, whatever n_datasets is."""
    settings = condition_settings(condition, settings)
    codes = []
    for child in np.random.SeedSequence([seed, *name_entropy(condition.key)]).spawn(n_datasets):
        rng = np.random.default_rng(child)
        engine_seed = int(child.generate_state(1)[0])
        trial = condition.make(rng, engine_seed, settings)
        record = trial.record() if condition.kind == "advice" else None
        if record is None:
            codes.append(VERDICT_CODES[trial.verdict()])
        elif record.verdict != "inconclusive" or not record.prompts_needed:
            codes.append(ADVICE_CODES["no advice"])
        else:
            rerun = trial.rerun(record.prompts_needed)
            rerun.analysis.plan_prompts = False  # only its verdict counts: no advice of its own
            again = rerun.record()
            codes.append(ADVICE_CODES["decided at the advice" if again.verdict in ("held", "refuted")
                                      else "undecided at the advice"])
        if progress_bar is not None:
            progress_bar.update()
    return "".join(codes)


def run_condition(condition: Condition, *, n_datasets: int, seed: int, settings: Settings,
                  progress_bar=None, record: dict | None = None) -> dict:
    """Verdict counts over n independent datasets (SeedSequence children), each through `evaluate`."""
    codes = dataset_verdicts(condition, n_datasets=n_datasets, seed=seed, settings=settings,
                             progress_bar=progress_bar)
    settings = condition_settings(condition, settings)
    codes_of = ADVICE_CODES if condition.kind == "advice" else VERDICT_CODES
    counts = {verdict: codes.count(code) for verdict, code in codes_of.items()}
    alpha = settings.alpha
    if condition.kind == "advice":
        advised = counts["decided at the advice"] + counts["undecided at the advice"]
        rate = counts["decided at the advice"] / advised if advised else float("nan")
        se = math.sqrt(ADVICE_TARGET * (1 - ADVICE_TARGET) / max(advised, 1))
        row = {"decided_at_advice": rate, "advised": advised, "target": ADVICE_TARGET, "band": ADVICE_BAND,
               "ok": bool(advised) and abs(rate - ADVICE_TARGET) <= ADVICE_BAND}
    elif condition.kind == "fpr":
        rate = counts[condition.wrong_verdict] / n_datasets
        se = math.sqrt(alpha * (1 - alpha) / n_datasets)
        limit = alpha + 2 * se
        row = {"fpr": rate, "wrong_verdict": condition.wrong_verdict, "limit": round(limit, 4), "ok": rate <= limit}
    else:
        rate = counts["held"] / n_datasets
        se = math.sqrt(max(rate * (1 - rate), 1e-12) / n_datasets)
        row = {"power": rate, "target": 0.8, "ok": rate >= 0.8}
    return {"family": condition.family, "condition": condition.condition, "description": condition.description,
            **row, "n_datasets": n_datasets, "mc_se": round(se, 4), "alpha": alpha, "verdicts": counts,
            "permutations": settings.n_permutations, "bootstrap": settings.n_bootstrap, "seed": seed,
            "verdict_codes": codes, **(record or {})}


def select_conditions(families: list[str] | None = None, only: list[str] | None = None) -> list[Condition]:
    """Conditions of the named families, or the named FAMILY/CONDITION rows; every name checked."""
    known = sorted({c.family for c in CONDITIONS})
    for family in families or []:
        if family not in known:
            raise choices_error("calibration family", family, known)
    keys = [c.key for c in CONDITIONS]
    for key in only or []:
        if key not in keys:
            raise choices_error("calibration row (FAMILY/CONDITION)", key, keys)
    return [c for c in CONDITIONS if (not families or c.family in families) and (not only or c.key in only)]


def calibrate(*, n_datasets: int = 1000, seed: int = 0, settings: Settings | None = None,
              families: list[str] | None = None, only: list[str] | None = None, progress: bool = True) -> list[dict]:
    """One row per (family, condition): the false-positive rate at the boundary, or the power."""
    settings = settings or Settings()
    if n_datasets < 1:
        raise ConfigError(f"n_datasets must be >= 1; got {n_datasets}")
    chosen = select_conditions(families, only)
    record = provenance()
    bar = tqdm(total=n_datasets * len(chosen), desc="calibration datasets", disable=not progress)
    rows = [run_condition(c, n_datasets=n_datasets, seed=seed, settings=settings, progress_bar=bar, record=record)
            for c in chosen]
    bar.close()
    return rows


def merge_rows(stored: list[dict], new: list[dict]) -> list[dict]:
    """The stored rows with `new` replacing those of the same FAMILY/CONDITION, in CONDITIONS order;
    rows of conditions that no longer exist are dropped."""
    by_key = {f"{r['family']}/{r['condition']}": r for r in stored}
    by_key.update({f"{r['family']}/{r['condition']}": r for r in new})
    return [by_key[c.key] for c in CONDITIONS if c.key in by_key]


def format_table(rows: list[dict]) -> str:
    sizes = sorted({r["n_datasets"] for r in rows})
    head = (f"{sizes[0]} datasets per condition" if len(sizes) == 1 else
            f"{', '.join(map(str, sizes))} datasets per condition (see each row)")
    return "\n".join([f"{head}; every verdict from harness.engine.claims_engine.evaluate", "", *table_lines(rows)])


def table_lines(rows: list[dict]) -> list[str]:
    """A markdown table of calibration rows (fpr, power and advice rows alike)."""
    lines = ["| family | condition | what is planted | wrong verdict | rate | limit / target | MC s.e. | datasets | ok |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "fpr" in r:
            rate, bar, wrong = f"{r['fpr']:.3f}", f"<= {r['limit']:.3f}", r["wrong_verdict"]
        elif "power" in r:
            rate, bar, wrong = f"power {r['power']:.3f}", f">= {r['target']}", "—"
        else:
            rate = f"decided {r['decided_at_advice']:.3f} of {r['advised']} advised"
            bar, wrong = f"{r['target']} +- {r['band']}", "undecided at the advice"
        shuffles = f" ({r['permutations']:,} shuffles)" if r.get("permutations", 199) != 199 else ""
        lines.append(f"| {r['family']} | {r['condition']} | {r['description']} | {wrong}{shuffles} | {rate} | {bar} | "
                     f"{r['mc_se']:.4f} | {r['n_datasets']} | {'yes' if r['ok'] else 'NO'} |")
    return lines


TABLE_START, TABLE_END = "<!-- calibration-table: ", "<!-- /calibration-table -->"


def render_tables(text: str, rows: list[dict]) -> str:
    """`text` with every marked table regenerated from `rows`. A table is marked by
    `<!-- calibration-table: SELECTION -->` ... `<!-- /calibration-table -->`, SELECTION a comma list
    of families or FAMILY/CONDITION rows (in the rows' order), or `all`."""
    import re

    def table(match) -> str:
        selection = [k.strip() for k in match.group(1).split(",") if k.strip()]
        chosen = [r for r in rows if selection == ["all"] or r["family"] in selection
                  or f"{r['family']}/{r['condition']}" in selection]
        if not chosen:
            raise ConfigError(f"calibration table {match.group(1)!r} selects no stored row")
        return f"{TABLE_START}{match.group(1)} -->\n" + "\n".join(table_lines(chosen)) + f"\n{TABLE_END}"

    return re.sub(re.escape(TABLE_START) + r"(.*?) -->\n.*?" + re.escape(TABLE_END), table, text, flags=re.S)
