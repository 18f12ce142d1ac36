"""LEGACY, kept verbatim as the benchmark baseline: the steering study as it was before the
word-level rewrite (harness/steering/study.py). Not used by the suite; do not fix or extend.

Phase 2: steering along SAE decoder directions, judge-free.

The intervention adds alpha * unit(direction) * R at the profile's hook, where R is the
mean residual norm at the hook over the neutral prompts' kept tokens. By default it is
added at every position, generated tokens included; `prompt_only=True` limits it to the
prompt's positions.

Scores (all on neutral prompts, which contain no concept words):
- concept shift: change in the log of the next-token probability mass on the concept
  tokens at the prompt's last position (nats), steered minus unsteered;
- concept rate: share of sampled continuations (fixed seeds) containing a concept word;
- fluency cost: mean KL(steered || unsteered) of the next-token distributions over the
  prompt's positions, and the perplexity of the steered text under the unsteered model.

Each direction's coefficient is chosen on the discovery half (the largest alpha whose KL
stays within the profile's budget) and evaluated on the confirmation half.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.core.errors import ConfigError
from harness.world.residuals import tokenize_batch


@dataclass(frozen=True)
class SteeringConfig:
    alphas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
    kl_budget: float = 0.5
    random_seeds: int = 3
    concept_words: tuple[str, ...] = ()
    other_concept: str = ""
    other_concept_words: tuple[str, ...] = ()
    prompt_only: bool = False
    generation_prompts: int = 16
    max_new_tokens: int = 12
    examples: int = 3
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.alphas or any(a <= 0 for a in self.alphas) or list(self.alphas) != sorted(self.alphas):
            raise ConfigError(f"steering.alphas {list(self.alphas)} must be positive and increasing")
        if self.kl_budget <= 0:
            raise ConfigError(f"steering.kl_budget {self.kl_budget} must be > 0")
        if not self.concept_words:
            raise ConfigError("steering.concept_words is empty; list the concept's words to score")

    @classmethod
    def from_dict(cls, data: dict) -> SteeringConfig:
        from harness.core.config import check_type
        from harness.core.errors import choices_error

        known = set(cls.__dataclass_fields__)
        kinds = {"alphas": float, "concept_words": str, "other_concept_words": str}
        for key, value in data.items():
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


@contextmanager
def steering_hook(model, hook: str, vector_D: torch.Tensor, *, prompt_length: int | None = None) -> Iterator[None]:
    """Add `vector_D` to the residual stream at `hook` inside the block; removed on exit, always.

    prompt_length: when given, add only at the first `prompt_length` positions (prompt-only
    steering); otherwise at every position, generated tokens included.
    """
    def add(acts, hook=None):
        vector = vector_D.to(acts.dtype).to(acts.device)
        if prompt_length is None:
            return acts + vector
        acts = acts.clone()
        acts[:, :prompt_length] += vector
        return acts

    with model.hooks(fwd_hooks=[(hook, add)]):
        yield


def word_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """First token of each word, with and without a leading space and capitalised: the set scored."""
    ids = set()
    for word in words:
        for variant in {word, f" {word}", word.capitalize(), f" {word.capitalize()}"}:
            tokens = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if tokens:
                ids.add(int(tokens[0]))
    return sorted(ids)


def contains_word(text: str, words: Sequence[str]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<![\w]){re.escape(w.lower())}(?![\w])", lowered) for w in words)


@dataclass
class Direction:
    name: str
    kind: str  # anchor, fine, multi, random, other
    vector: np.ndarray  # unit vector [d_model]
    components: list = field(default_factory=list)


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@torch.no_grad()
def next_token_scores(model, texts: Sequence[str], hook: str, vector: torch.Tensor | None, concept_ids, other_ids,
                      max_tokens: int, batch_size: int = 16, reference: list | None = None):
    """Per prompt: log mass on concept and other-concept tokens at the last position, and the
    next-token log-probs over all real positions (kept when `reference` is None, for KL)."""
    out = {"concept": [], "other": [], "kl": []}
    kept_logprobs = []
    for start in range(0, len(texts), batch_size):
        batch = tokenize_batch(model.tokenizer, texts[start:start + batch_size], max_tokens)
        tokens = batch.tokens_BS.to(next(model.parameters()).device)
        if vector is None:
            logits = model(tokens)
        else:
            # Scoring reads the prompt's own positions, so prompt-only and every-position agree here.
            with steering_hook(model, hook, vector):
                logits = model(tokens)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for i, length in enumerate(batch.lengths_B.tolist()):
            lp = logprobs[i, :length]
            out["concept"].append(torch.logsumexp(lp[-1, concept_ids], 0).item())
            out["other"].append(torch.logsumexp(lp[-1, other_ids], 0).item() if other_ids else 0.0)
            if reference is None:
                kept_logprobs.append(lp)
            else:
                ref = reference[start + i]
                out["kl"].append((lp.exp() * (lp - ref)).sum(-1).mean().item())
    if reference is None:
        return out, kept_logprobs
    return out, None


@torch.no_grad()
def sample_continuations(model, texts: Sequence[str], hook: str, vector: torch.Tensor | None, *, seed: int,
                         max_new_tokens: int, temperature: float, prompt_only: bool) -> list[str]:
    """Seeded sampling, prompts of equal token length batched together (no padding, exact)."""
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    encoded = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    results: dict[int, str] = {}
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for length in sorted(by_length):
        members = by_length[length]
        tokens = torch.tensor([encoded[i] for i in members], device=device)
        for _ in range(max_new_tokens):
            if vector is None:
                logits = model(tokens)[:, -1].float()
            else:
                # The whole sequence is recomputed each step, so generated positions are steered too
                # unless prompt_only limits the vector to the prompt's positions.
                with steering_hook(model, hook, vector, prompt_length=length if prompt_only else None):
                    logits = model(tokens)[:, -1].float()
            probs = torch.softmax(logits / temperature, dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)
            tokens = torch.cat([tokens, nxt], dim=1)
        for row, i in enumerate(members):
            results[i] = tokenizer.decode(tokens[row, length:].tolist(), skip_special_tokens=True)
    return [results[i] for i in range(len(texts))]


@torch.no_grad()
def perplexity_under(model, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
    """Perplexity of each continuation given its prompt, under the (unsteered) model."""
    tokenizer = model.tokenizer
    device = next(model.parameters()).device
    out = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        p_ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        c_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not c_ids:
            out.append(float("nan"))
            continue
        tokens = torch.tensor([p_ids + c_ids], device=device)
        logprobs = torch.log_softmax(model(tokens)[0, :-1].float(), dim=-1)
        targets = tokens[0, 1:]
        nll = -logprobs[len(p_ids) - 1:, :].gather(-1, targets[len(p_ids) - 1:, None])[:, 0]
        out.append(float(torch.exp(nll.mean())))
    return out


def steering_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def choose_alpha(alphas: Sequence[float], kl_by_alpha: Sequence[float], budget: float) -> float:
    """The largest swept alpha whose mean KL (discovery half) is within the budget; else the smallest."""
    allowed = [a for a, kl in zip(alphas, kl_by_alpha, strict=True) if kl <= budget]
    return max(allowed) if allowed else min(alphas)


def matched_alpha(alphas: Sequence[float], kl_by_alpha: Sequence[float], target_kl: float) -> float:
    """Alpha at which the (monotone-ised) KL curve reaches target_kl, by log-linear interpolation."""
    kls = np.maximum.accumulate(np.asarray(kl_by_alpha, dtype=float))
    log_alphas = np.log(np.asarray(alphas, dtype=float))
    if target_kl <= kls[0]:
        return float(alphas[0])
    if target_kl >= kls[-1]:
        return float(alphas[-1])
    return float(np.exp(np.interp(target_kl, kls, log_alphas)))


def _selective_feature(tables, rows_concept: np.ndarray, rows_other: np.ndarray, role: str = "coarse") -> int:
    from harness.statistics.stats import selectivity
    x = tables.pooled[role]
    fires = (x[rows_concept] > 0).mean(0)
    sel = selectivity(x[rows_concept].mean(0), x[rows_other].mean(0))
    sel[fires < 0.2] = 0
    return int(np.argmax(sel))


def build_directions(run, cfg: SteeringConfig, multi_coarse_weight: float = 0.5) -> tuple[list[Direction], dict]:
    """Anchor, its best fine match, the multi-resolution combination, random controls, another concept."""
    a, dirs = run.analysis, run.directions
    if not run.profile.anchors.coarse:
        raise ConfigError("steering needs a coarse anchor; run `python -m harness discover` first")
    anchor = int(run.profile.anchors.coarse[0])
    fine = int(np.argmax(a.anchor_cosines(anchor)))
    subs = [p["fine"] for p in a.sub_features(anchor)]
    out = [Direction(f"coarse-{anchor}", "anchor", unit(dirs["coarse"][anchor]), [anchor]),
           Direction(f"fine-{fine}", "fine", unit(dirs["fine"][fine]), [fine])]
    if subs:
        combo = multi_coarse_weight * dirs["coarse"][anchor]
        for f in subs:
            combo = combo + (1 - multi_coarse_weight) / len(subs) * dirs["fine"][f]
        out.append(Direction(f"multi: coarse-{anchor} + {len(subs)} sub-features", "multi", unit(combo), [anchor, *subs]))
    rng = np.random.default_rng([run.profile.analysis.seed, 0x72616E64])
    for i in range(cfg.random_seeds):
        out.append(Direction(f"random-{i}", "random", unit(rng.standard_normal(dirs["coarse"].shape[1]))))
    meta = {"anchor": anchor, "fine": fine, "sub_features": subs, "multi_coarse_weight": multi_coarse_weight}
    if cfg.other_concept:
        near = [p for p in run.prompt_sets.near_miss if p.country == cfg.other_concept]
        if len(near) < 5:
            raise ConfigError(f"steering.other_concept {cfg.other_concept!r} has {len(near)} near-miss prompts; need 5+")
        ids = {p.id for p in near}
        rows_other_concept = np.array([pid in ids for pid in run.tables.prompt_ids])
        other = _selective_feature(run.tables, rows_other_concept, a.masks["neutral_discovery"])
        out.append(Direction(f"coarse-{other} ({cfg.other_concept})", "other", unit(dirs["coarse"][other]), [other]))
        meta["other_feature"] = other
    return out, meta


def steering_study(run, cfg: SteeringConfig, *, progress: bool = True) -> dict:
    """The whole sweep, choice of coefficients, matched comparison, sampling and examples."""
    profile, tables, model = run.profile, run.tables, None
    neutral = list(run.prompt_sets.neutral)
    texts = [p.text for p in neutral]
    for p in neutral:
        if contains_word(p.text, cfg.concept_words):
            raise ConfigError(f"neutral prompt {p.id!r} contains a concept word; concept tokens must be held apart")
    rows = np.flatnonzero(tables.rows("neutral"))
    discovery = run.analysis.masks["neutral_discovery"][rows]
    confirmation = ~discovery
    radius = tables.mean_resid_norm(tables.rows("neutral"))
    directions, meta = build_directions(run, cfg)
    model = run.model
    hook, max_tokens = profile.model.hook, profile.model.max_tokens
    concept_ids = word_token_ids(model.tokenizer, cfg.concept_words)
    other_ids = word_token_ids(model.tokenizer, cfg.other_concept_words) if cfg.other_concept_words else []
    base, reference = next_token_scores(model, texts, hook, None, concept_ids, other_ids, max_tokens)
    base_concept, base_other = np.array(base["concept"]), np.array(base["other"])

    def measure(direction: Direction, alpha: float) -> dict:
        vector = torch.tensor(direction.vector * alpha * radius, dtype=torch.float32)
        scores, _ = next_token_scores(model, texts, hook, vector, concept_ids, other_ids, max_tokens,
                                      reference=reference)
        return {"shift": np.array(scores["concept"]) - base_concept,
                "other_shift": np.array(scores["other"]) - base_other, "kl": np.array(scores["kl"])}

    bar = tqdm(total=len(directions) * len(cfg.alphas), desc="steering sweep", disable=not progress)
    sweep: dict[str, list[dict]] = {}
    for direction in directions:
        sweep[direction.name] = []
        for alpha in cfg.alphas:
            sweep[direction.name].append(measure(direction, alpha))
            bar.update()
    bar.close()
    chosen = {d.name: choose_alpha(cfg.alphas, [float(m["kl"][discovery].mean()) for m in sweep[d.name]],
                                   cfg.kl_budget) for d in directions}
    by_kind = {d.kind: d for d in directions}
    per_prompt: dict[str, dict] = {}
    for d in directions:
        m = sweep[d.name][list(cfg.alphas).index(chosen[d.name])]
        per_prompt[d.name] = {k: v[confirmation].tolist() for k, v in m.items()}
    anchor = by_kind["anchor"]
    anchor_alpha_index = list(cfg.alphas).index(chosen[anchor.name])
    random_same_alpha = np.mean([sweep[d.name][anchor_alpha_index]["shift"][confirmation]
                                 for d in directions if d.kind == "random"], axis=0)
    matched = {}
    if "multi" in by_kind:
        for kind in ("anchor", "multi"):
            d = by_kind[kind]
            alpha = matched_alpha(cfg.alphas, [float(m["kl"][discovery].mean()) for m in sweep[d.name]], cfg.kl_budget)
            m = measure(d, alpha)
            matched[kind] = {"alpha": alpha, "shift": m["shift"][confirmation].tolist(),
                             "kl": float(m["kl"][confirmation].mean())}
    curves = {d.name: {"alpha": list(cfg.alphas),
                       "concept_shift": [float(m["shift"][confirmation].mean()) for m in sweep[d.name]],
                       "other_shift": [float(m["other_shift"][confirmation].mean()) for m in sweep[d.name]],
                       "kl": [float(m["kl"][confirmation].mean()) for m in sweep[d.name]]}
              for d in directions if d.kind != "random"}
    random_curves = np.array([[float(m["shift"][confirmation].mean()) for m in sweep[d.name]]
                              for d in directions if d.kind == "random"])
    band = {"alpha": list(cfg.alphas), "low": random_curves.min(0).tolist(), "high": random_curves.max(0).tolist()}
    curves["random (mean of seeds)"] = {
        "alpha": list(cfg.alphas), "concept_shift": random_curves.mean(0).tolist(),
        "other_shift": [float(np.mean([sweep[d.name][i]["other_shift"][confirmation].mean()
                                       for d in directions if d.kind == "random"])) for i in range(len(cfg.alphas))],
        "kl": [float(np.mean([sweep[d.name][i]["kl"][confirmation].mean() for d in directions if d.kind == "random"]))
               for i in range(len(cfg.alphas))]}

    # Sampling: a fixed set of confirmation prompts, fixed seeds.
    gen_texts = [t for t, keep in zip(texts, confirmation, strict=True) if keep][: cfg.generation_prompts]
    sampled = {"unsteered": sample_continuations(model, gen_texts, hook, None, seed=profile.analysis.seed,
                                                 max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                                 prompt_only=cfg.prompt_only)}
    sample_dirs = [d for d in directions if d.kind != "random"] + [d for d in directions if d.kind == "random"][:1]
    for d in tqdm(sample_dirs, desc="steering samples", disable=not progress):
        alpha = chosen[anchor.name] if d.kind == "random" else chosen[d.name]
        vector = torch.tensor(d.vector * alpha * radius, dtype=torch.float32)
        sampled[d.name] = sample_continuations(model, gen_texts, hook, vector, seed=profile.analysis.seed,
                                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                               prompt_only=cfg.prompt_only)
    rates = {name: [int(contains_word(t, cfg.concept_words)) for t in outs] for name, outs in sampled.items()}
    ppl = {name: perplexity_under(model, gen_texts, outs) for name, outs in sampled.items()}
    examples = {name: [{"prompt": gen_texts[i], "unsteered": sampled["unsteered"][i], "steered": outs[i]}
                       for i in range(min(cfg.examples, len(gen_texts)))]
                for name, outs in sampled.items() if name != "unsteered"}
    return {
        "description": (f"alpha x unit(direction) x {radius:.1f} (mean residual norm at {hook} on neutral prompts), "
                        f"added at {'prompt positions only' if cfg.prompt_only else 'every position, generated tokens included'}. "
                        f"Coefficients chosen on the discovery half of the neutral prompts (largest alpha with mean KL "
                        f"<= {cfg.kl_budget} nats), scores on the confirmation half ({int(confirmation.sum())} prompts)."),
        "radius": radius, "alphas": list(cfg.alphas), "kl_budget": cfg.kl_budget, "meta": meta,
        "concept_token_ids": concept_ids, "other_token_ids": other_ids,
        "directions": [{"name": d.name, "kind": d.kind, "components": d.components} for d in directions],
        "chosen_alpha": chosen, "per_prompt": per_prompt, "random_same_alpha_shift": random_same_alpha.tolist(),
        "matched": matched, "dose_response": curves, "random_band": band,
        "concept_rate": {k: float(np.mean(v)) for k, v in rates.items()}, "concept_hits": rates,
        "perplexity": {k: float(np.nanmedian(v)) for k, v in ppl.items()}, "examples": examples,
        "sample_alpha": {d.name: (chosen[anchor.name] if d.kind == "random" else chosen[d.name]) for d in sample_dirs},
    }
