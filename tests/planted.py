"""A small world with planted ground truth, built without any model: prompts, feature
tables, decoder directions and a profile whose claims are known to be true (or, with
`effect=False`, known to be false)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from harness.engine.analysis import Analysis
from harness.core.steering_result import SteeringResult
from harness.core.config import Anchors, ClaimSpec, load_profile
from harness.features.tables import FeatureTables
from harness.world.prompts import Prompt, PromptSets
from harness.entry.session import ClaimsRun

D_MODEL, N_COARSE, N_FINE = 256, 64, 4096
ANCHOR, LOUD = 5, 7
CHILDREN = {10: 0.8, 11: 0.5, 12: 0.35}  # fine id -> planted decoder cosine with the anchor
CO_OCCURRING = 20  # fires with the anchor, orthogonal direction ("red")
SILENT_ALIGNED = 13  # aligned with the anchor (cosine 0.6) but never fires on these prompts
FACETS = ("cuisine", "geography", "history", "sport")


def prompt_sets(n_concept: int = 80, n_neutral: int = 80, n_near: int = 40) -> PromptSets:
    def make(prefix, set_name, n):
        return tuple(Prompt(id=f"{prefix}-{i}", text=f"{set_name} prompt {i}", set=set_name,
                            facet=FACETS[i % len(FACETS)]) for i in range(n))
    return PromptSets(make("c", "concept", n_concept), make("n", "neutral", n_neutral), make("m", "near_miss", n_near))


BOUNDARY_ALIGNED = tuple(range(30, 40))  # boundary world: aligned rows that prefer the concept, never co-fire


def directions(seed: int = 0, *, boundary: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((N_COARSE, D_MODEL))
    coarse /= np.linalg.norm(coarse, axis=1, keepdims=True)
    fine = rng.standard_normal((N_FINE, D_MODEL))
    fine /= np.linalg.norm(fine, axis=1, keepdims=True)
    anchor = coarse[ANCHOR]
    # Keep the crowd below the cutoff: drop most of each random row's anchor component.
    for i in range(N_FINE):
        if i not in CHILDREN:
            v = fine[i] - (fine[i] @ anchor) * anchor * 0.9
            fine[i] = v / np.linalg.norm(v)
    for fid, cos in CHILDREN.items():
        noise = rng.standard_normal(D_MODEL)
        noise -= (noise @ anchor) * anchor
        fine[fid] = cos * anchor + math.sqrt(1 - cos**2) * noise / np.linalg.norm(noise)
    noise = rng.standard_normal(D_MODEL)
    noise -= (noise @ anchor) * anchor
    fine[CO_OCCURRING] = noise / np.linalg.norm(noise)
    noise = rng.standard_normal(D_MODEL)
    noise -= (noise @ anchor) * anchor
    fine[SILENT_ALIGNED] = 0.6 * anchor + 0.8 * noise / np.linalg.norm(noise)
    if boundary:
        extra = np.random.default_rng([seed, 0x62])
        for fid, cos in zip(BOUNDARY_ALIGNED, np.linspace(0.35, 0.6, len(BOUNDARY_ALIGNED)), strict=True):
            noise = extra.standard_normal(D_MODEL)
            noise -= (noise @ anchor) * anchor
            fine[fid] = cos * anchor + math.sqrt(1 - cos**2) * noise / np.linalg.norm(noise)
    return {"coarse": coarse, "fine": fine}


def tables(sets: PromptSets, *, effect: bool = True, seed: int = 0, boundary: bool = False) -> FeatureTables:
    """boundary: the gate's boundary, 2 true sub-features (children 10 and 11) and 11 aligned rows (12 and
    BOUNDARY_ALIGNED) that prefer the concept but fire independently of the anchor within each set."""
    rng = np.random.default_rng(seed)
    everything = sets.all()
    n = len(everything)
    is_concept = np.array([p.set == "concept" for p in everything])
    is_near = np.array([p.set == "near_miss" for p in everything])
    coarse = np.where(rng.random((n, N_COARSE)) < 0.05, rng.exponential(1.0, (n, N_COARSE)), 0.0)
    fine = np.where(rng.random((n, N_FINE)) < 0.03, rng.exponential(1.0, (n, N_FINE)), 0.0)
    if effect:
        fires = is_concept & (rng.random(n) < 0.9)
        coarse[:, ANCHOR] = np.where(fires, rng.normal(3.7, 0.5, n), 0.0)
        coarse[is_near, ANCHOR] = np.where(rng.random(is_near.sum()) < 0.1, 1.0, 0.0)
        coarse[:, LOUD] = np.where(is_concept, rng.normal(4.5, 0.5, n), np.where(rng.random(n) < 0.6, 1.5, 0.0))
        for fid in CHILDREN:
            fine[:, fid] = np.where(fires & (rng.random(n) < 0.6), rng.normal(2.0, 0.3, n), 0.0)
        fine[:, CO_OCCURRING] = np.where(fires & (rng.random(n) < 0.7), rng.normal(1.5, 0.3, n), 0.0)
    if boundary:
        apart = np.random.default_rng([seed, 0x62])
        for fid in (12, *BOUNDARY_ALIGNED):
            rate = np.where(is_concept, 0.5, 0.05)
            fine[:, fid] = np.where(apart.random(n) < rate, apart.normal(2.0, 0.3, n), 0.0)
    fine[:, SILENT_ALIGNED] = 0.0
    tokens = np.full(n, 10)
    resid_sum = rng.standard_normal((n, D_MODEL)) * 10
    resid_sq = (resid_sum**2).sum(1) / 10 + 100 * tokens
    return FeatureTables(
        prompt_ids=[p.id for p in everything], prompt_sets=[p.set for p in everything],
        pooled={"coarse": coarse.clip(0).astype(np.float32), "fine": fine.clip(0).astype(np.float32)},
        n_tokens=tokens, l0_sum={"coarse": tokens * 3.0, "fine": tokens * 2.0},
        sq_error={"coarse": resid_sq * rng.uniform(0.05, 0.15, n), "fine": resid_sq * rng.uniform(0.02, 0.08, n)},
        resid_sum=resid_sum, resid_sq=resid_sq, resid_norm_sum=np.full(n, 50.0), key="planted",
        meta={"ce_loss": {"coarse": {"ce_loss_score": 0.93}, "fine": {"ce_loss_score": 0.96}},
              "ce_per_prompt": ce_per_prompt(everything, rng)},
    )


def ce_per_prompt(prompts, rng) -> dict:
    """Per-prompt summed next-token losses: clean ~ 3 nats/token, zero-ablation ~ 8, SAEs in between."""
    kept = [p for p in prompts if p.set != "near_miss"]
    tokens = np.full(len(kept), 10.0)
    clean = tokens * rng.normal(3.0, 0.2, len(kept))
    zero = tokens * rng.normal(8.0, 0.3, len(kept))
    return {"ids": [p.id for p in kept], "tokens": tokens.tolist(), "clean": clean.tolist(), "zero": zero.tolist(),
            "coarse": (clean + 0.07 * (zero - clean) * rng.uniform(0.5, 1.5, len(kept))).tolist(),
            "fine": (clean + 0.04 * (zero - clean) * rng.uniform(0.5, 1.5, len(kept))).tolist()}


CLAIMS = [
    ("go_gate", "go", {"min_sub_features": 3}),
    ("selectivity", f"coarse-{ANCHOR}", {"sae": "coarse", "feature": ANCHOR, "min_selectivity": 0.9}),
    ("selectivity", f"coarse-{ANCHOR}-vs-near-miss", {"sae": "coarse", "feature": ANCHOR, "against": "near_miss",
                                                      "min_selectivity": 0.6}),
    ("loud_unselective", f"coarse-{LOUD}-vs-{ANCHOR}", {"sae": "coarse", "loud": LOUD, "anchor": ANCHOR}),
    ("sparsity", "coarse", {"sae": "coarse", "max_l0_fraction": 0.1}),
    ("reconstruction", "coarse", {"sae": "coarse", "min_explained_variance": 0.8, "min_ce_loss_score": 0.8}),
    ("geometry", f"coarse-{ANCHOR}", {"anchor": ANCHOR}),
    ("sub_features", f"coarse-{ANCHOR}", {"anchor": ANCHOR, "min_count": 3}),
    ("empty_top_left", "all", {}),
]


def profile(n_permutations: int = 999):
    base = load_profile("smollm2-135m")
    claims = tuple(ClaimSpec(family=f, name=n, statement=f"planted {f} {n}", params=p) for f, n, p in CLAIMS)
    return dataclasses.replace(
        base, name="planted", claims=claims,
        anchors=Anchors(coarse=(ANCHOR,), fine=(10,), source="planted", split="all"),
        analysis=dataclasses.replace(base.analysis, permutations=n_permutations, bootstrap=500),
        saes={role: dataclasses.replace(cfg, d_sae=N_COARSE if role == "coarse" else N_FINE)
              for role, cfg in base.saes.items()},
    )


def decoder_norms() -> dict[str, np.ndarray]:
    """Unit norms except the loud feature's, which writes a little more per unit of activation."""
    coarse = np.ones(N_COARSE)
    coarse[LOUD] = 1.2
    return {"coarse": coarse, "fine": np.ones(N_FINE)}


SAE_INFO = {"coarse": {"architecture": "jumprelu"}, "fine": {"architecture": "jumprelu"}}


def analysis(*, effect: bool = True, seed: int = 0) -> Analysis:
    sets = prompt_sets()
    return Analysis.build(profile(), tables(sets, effect=effect, seed=seed), sets, directions(seed),
                          decoder_norms=decoder_norms(), sae_info=SAE_INFO)


def control_analysis(sets: PromptSets, profile_, *, seed: int = 0, tokens: int = 6) -> Analysis:
    """The planted world's random-SAE control, built as the run builds one (harness.features.control):
    token residuals with a concept direction, tied random TopK SAEs with the planted decoders' moments
    and widths, max-pooled per prompt."""
    from harness.features.control import control_directions, tied_topk_encode

    rng = np.random.default_rng([seed, 0x6374])
    everything = sets.all()
    n = len(everything)
    is_concept = np.repeat([p.set == "concept" for p in everything], tokens)
    x = rng.standard_normal((n * tokens, D_MODEL)) * np.arange(1, D_MODEL + 1) ** -0.5 * 3.0
    concept = rng.standard_normal(D_MODEL)
    x[is_concept] += 2.0 * concept / np.linalg.norm(concept)
    centre = x.mean(0)
    real = directions(seed)
    rows = {role: control_directions(real[role], seed=seed) for role in real}
    pooled = {role: tied_topk_encode(x, rows[role], k=k, centre=centre).reshape(n, tokens, -1).max(1)
              .astype(np.float32) for role, k in (("coarse", 4), ("fine", 16))}
    base = tables(sets, seed=seed)
    control_tables = dataclasses.replace(base, pooled=pooled, key="planted-control")
    return Analysis.build(profile_, control_tables, sets, rows, decoder_norms=decoder_norms(),
                          sae_info={"coarse": {"architecture": "topk", "k": 4}, "fine": {"architecture": "topk", "k": 16}})


def claims_run(*, effect: bool = True, control: str = "random", boundary: bool = False) -> ClaimsRun:
    """A ClaimsRun whose lazy parts are filled with the planted world (no model, no SAE files).

    control: "random" (the random-SAE control, built like the run's), or "same" (a control that is the
    planted world itself, so the rule says GO on it too and GO must be refused)."""
    sets = prompt_sets()
    run = ClaimsRun(profile(), progress=False)
    run.__dict__.update(prompt_sets=sets, tables=tables(sets, effect=effect, boundary=boundary),
                        directions=directions(boundary=boundary), quality={}, device="cpu",
                        decoder_norms=decoder_norms(), sae_info=SAE_INFO, ceilings={})  # no ceilings: none measured
    run.__dict__["analysis"] = Analysis.build(run.profile, run.tables, sets, run.directions,
                                              decoder_norms=run.decoder_norms, sae_info=run.sae_info)
    run.__dict__["control"] = (control_analysis(sets, run.profile) if control == "random"
                               else Analysis.build(run.profile, run.tables, sets, run.directions,
                                                   decoder_norms=run.decoder_norms, sae_info=run.sae_info))
    return run


STEERING_CLAIMS = [("steering", "anchor-beats-random", {"kind": "beats_random"}),
                   ("steering", "anchor-specificity", {"kind": "specificity"})]


def steering_study(n: int = 40, seed: int = 0) -> SteeringResult:
    """A steering study's results in the shape `harness.steering.study.steering_study` returns, with a planted
    concept shift that beats 99 random directions and rows."""
    rng = np.random.default_rng(seed)
    anchor, other = f"coarse-{ANCHOR}", "coarse-7 (Germany)"
    shift = rng.normal(0.6, 0.3, n)
    per_prompt = {anchor: {"concept": shift.tolist(), "other": (shift - 0.4).tolist(), "kl": [0.5] * n},
                  other: {"concept": rng.normal(0.0, 0.2, n).tolist(), "other": rng.normal(0.5, 0.2, n).tolist(),
                          "kl": [0.5] * n},
                  "DiffMean": {"concept": (shift + 0.3 + rng.normal(0, 0.1, n)).tolist(), "other": [0.0] * n, "kl": [0.5] * n},
                  "prompting": {"concept": (shift + 1.0 + rng.normal(0, 0.1, n)).tolist(), "other": [0.0] * n, "kl": [1.2] * n},
                  f"{anchor} at prompting's KL": {"concept": (shift + 0.8 + rng.normal(0, 0.1, n)).tolist(),
                                                  "other": [0.0] * n, "kl": [1.2] * n}}
    kinds = {anchor: "anchor", other: "other", "DiffMean": "diffmean", "prompting": "prompting",
             f"{anchor} at prompting's KL": "anchor_at_prompting_kl"}
    controls = {kind: {"names": [f"{kind}-{i}" for i in range(99)], "concept_shift": rng.normal(0.0, 0.1, 99).tolist(),
                       "kl": rng.normal(0.5, 0.05, 99).tolist(), "coefficient": [0.2] * 99}
                for kind in ("random", "random_row")}
    shares = {"unsteered": [0.0] * 16, anchor: rng.uniform(0, 0.2, 16).tolist()}
    summary = {name: {"kind": kinds[name], "coefficient": 0.2, "kl": float(np.mean(v["kl"])),
                      "concept_shift": float(np.mean(v["concept"])), "other_shift": float(np.mean(v["other"])),
                      "wrong_way": float(np.mean(np.asarray(v["concept"]) < 0)),
                      "concept_share": float(np.mean(shares[name])) if name in shares else None,
                      "other_share": 0.0 if name in shares else None} for name, v in per_prompt.items()}
    return SteeringResult.model_validate({
        "version": 2, "description": "planted", "kl_budget": 0.5, "coefficients": [0.1, 0.2],
        "directions": [{"kind": kinds[k], "name": k} for k in per_prompt if k != "prompting"],
        "chosen_coefficient": {anchor: 0.2, other: 0.2, "DiffMean": 0.2, f"{anchor} at prompting's KL": 0.4},
        "meta": {"instruction_names": ["France"]},
        "kl_reached": {k: float(np.mean(v["kl"])) for k, v in per_prompt.items()},
        "per_prompt": per_prompt,
        "controls": {"prompts": 12, "on_control_prompts": {anchor: 0.6, other: 0.0, "DiffMean": 0.9},
                     "by_kind": controls},
        "lexicons": {"concept": {"name": "France", "words": ["France", "Paris"], "units": []},
                     "other": {"name": "Germany", "words": ["Germany", "Berlin"], "units": []}},
        "dose_response": {anchor: {"kind": "anchor", "coefficient": [0.1, 0.2], "concept_shift": [0.3, 0.6], "kl": [0.1, 0.5]}},
        "random_band": {"coefficient": [0.1, 0.2], "low": [-0.1, -0.2], "high": [0.1, 0.2], "median": [0, 0], "kl": [0.1, 0.5],
                        "n": 19},
        "steerability": {k: {"wrong_way": v["wrong_way"], "n": n} for k, v in summary.items()},
        "summary": summary,
        "samples": {"prompts": 16, "max_new_tokens": 32, "concept_share": shares, "other_share": shares},
        "examples": [{"prompt": "She folded the towels.", "unsteered": "Okay.", anchor: "Bonjour, Paris!"}],
        "timings": {"prepare": 1.0},
    })


def claims_run_with_steering(*, effect: bool = True) -> ClaimsRun:
    run = claims_run(effect=effect)
    extra = tuple(ClaimSpec(family=f, name=n, statement=f"planted {f} {n}", params=p) for f, n, p in STEERING_CLAIMS)
    run.profile = run.declared_profile = dataclasses.replace(run.profile, claims=run.profile.claims + extra)
    run.__dict__["steering_results"] = steering_study()
    run.__dict__["analysis"] = Analysis.build(run.profile, run.tables, run.prompt_sets, run.directions,
                                              decoder_norms=run.decoder_norms, sae_info=run.sae_info)
    return run
