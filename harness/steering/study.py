"""Phase 2: does steering along the SAE's directions change what the model writes?

The seed's question: does multi-resolution steering (the coarse anchor plus its fine
sub-features) give better, more targeted output than single-resolution steering? Answered
judge-free, against controls and baselines, every method at the same fluency cost.

- Intervention: coefficient x unit(direction) x R added after the hook's block (R: mean residual
  norm at the hook over neutral prompts), at the reply's positions (`positions = "reply"`:
  from the prompt's last token on, as in contrastive activation addition) or at every position
  (`"all"`). Prompts go in through the model's chat template when it has one.
- Scores, on neutral prompts (which contain no concept word):
  - concept score: log-probability that the next word is a concept word, each word summed over
    all its tokens, over its spelling variants (with / without a leading space, capitalised at the
    reply's start);
    reported as the shift from the unsteered model (nats);
  - concept share: the share of words in a sampled continuation that are concept words;
  - fluency cost: KL(steered || unsteered) of the next-token distribution at the prompt's last
    token.
- Matching: one procedure for every compared method (named directions, controls, the anchor at
  prompting's KL): secant steps on the coefficient until the mean KL on the prompts it is scored on
  is within `kl_precision` of its target (`match_kl`), starting from a grid interpolated on discovery
  prompts; the KL reached is reported and checked by the claims.
- Controls: random directions and random decoder rows (p from the anchor's rank), the anchor
  mixed with random fine rows (and with aligned rows that are not sub-features) at the
  sub-features' weights, another concept's direction and words (a 2 x 2 design), DiffMean and
  prompting baselines.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from harness.core.errors import ConfigError
from harness.core.config import WORD_PATTERN, SteeringConfig
from harness.core.steering_result import SteeringResult
from harness.steering.engine import SteeringEngine, causal_lm, hook_layer

STUDY_VERSION = 7  # 7: the named methods matched on the control prompts too, where they are ranked
# 6: screened controls, one matching procedure, report extras on demand, content-word lexicons
# 5: the anchor at prompting's KL, per-word scores, cosine-matched mixtures (4: "coefficient")
AT_PROMPTING_KL = SteeringResult.AT_PROMPTING_KL  # the anchor rescaled to the instruction's KL
# 3: lexicon words scored as whole words (2 scored their tokens alone, i.e. prefixes)


# ---- lexicons -----------------------------------------------------------------------------------
def word_variants(word: str) -> list[str]:
    """The spellings scored for a word: as written, with and without a leading space (mid-sentence and
    at the reply's start), and capitalised at the reply's start."""
    word = word.strip()
    return sorted({word, f" {word}", word[:1].upper() + word[1:]})


@dataclass
class Lexicon:
    words: tuple[str, ...]
    variants: list[str]  # the scored units as text
    units: list[tuple[int, ...]]  # their token ids
    unit_words: list[str] = field(default_factory=list)  # the lexicon word each unit spells

    @classmethod
    def build(cls, tokenizer, words: Sequence[str]) -> Lexicon:
        variants, units, unit_words = [], [], []
        for word in words:
            for variant in word_variants(word):
                ids = tuple(tokenizer(variant, add_special_tokens=False)["input_ids"])
                if ids and ids not in units:
                    variants.append(variant)
                    units.append(ids)
                    unit_words.append(word)
        # Units are scored as whole words (the token after them must end the word), so " Paris" and
        # " Parisian" are different events and both are kept.
        return cls(words=tuple(words), variants=variants, units=units, unit_words=unit_words)

    def per_word(self, base_units: np.ndarray, steered_units: np.ndarray,
                 discovery_units: np.ndarray | None = None) -> list[dict]:
        """Per word (all its spellings): its mean unsteered probability as the next word, and the mean
        per-prompt shift of its log-probability under a steered run ([prompts, units] log-probs); with
        `discovery_units`, also its unsteered probability on the discovery prompts (where a lexicon is
        vetted, so the confirmation prompts stay unseen)."""
        out = []
        for word in self.words:
            idx = [i for i, w in enumerate(self.unit_words) if w == word]
            if not idx:
                continue
            base, steered = log_mass(base_units[:, idx]), log_mass(steered_units[:, idx])
            row = {"word": word, "base_probability": float(np.mean(np.exp(base))),
                   "anchor_shift": float(np.mean(steered - base))}
            if discovery_units is not None:
                row["discovery_base_probability"] = float(np.mean(np.exp(log_mass(discovery_units[:, idx]))))
            out.append(row)
        return out


def check_units_apart(concept: Lexicon, other: Lexicon) -> None:
    """No spelling may be scored for both lexicons: its mass would count for both."""
    for i, u in enumerate(concept.units):
        for j, v in enumerate(other.units):
            if u == v:
                raise ConfigError(f"steering.concept_words spelling {concept.variants[i]!r} and "
                                  f"steering.other_concept_words spelling {other.variants[j]!r} are the same tokens; "
                                  f"the two lexicons must not share probability mass")


def word_end_mask(tokenizer, vocab_size: int | None = None) -> np.ndarray:
    """[vocab] True for tokens that end a word when they follow it: text starting with whitespace or a
    character that is not a letter or digit (punctuation, newline), and special tokens (end of text)."""
    size = int(vocab_size or len(tokenizer))
    known = min(size, len(tokenizer))  # ids past the tokenizer (padded embeddings) are never words' ends
    texts = tokenizer.batch_decode([[i] for i in range(known)])
    mask = np.zeros(size, dtype=bool)
    for token_id, text in enumerate(texts):
        # A lone piece of a multi-byte character decodes to U+FFFD: it continues a word.
        mask[token_id] = not text or ("\ufffd" not in text and not (text[0].isalnum() or text[0] == "_"))
    for token_id in getattr(tokenizer, "all_special_ids", []) or []:
        if 0 <= token_id < size:
            mask[token_id] = True
    return mask


def log_mass(unit_logprob: np.ndarray) -> np.ndarray:
    """log P(next word is any unit of the lexicon) from per-unit log-probs (last axis)."""
    top = unit_logprob.max(-1, keepdims=True)
    return (top + np.log(np.exp(unit_logprob - top).sum(-1, keepdims=True)))[..., 0]




def word_share(text: str, words: Sequence[str]) -> float:
    """Share of the words in `text` that belong to a lexicon entry; an entry of several words (or a
    hyphenated one) matches as a phrase, and each word of the text counts at most once."""
    tokens = [t.casefold() for t in WORD_PATTERN.findall(text)]
    if not tokens:
        return 0.0
    entries = sorted({tuple(p.casefold() for p in WORD_PATTERN.findall(w)) for w in words if WORD_PATTERN.findall(w)},
                     key=len, reverse=True)  # longest first, so a phrase wins over its first word
    matched = [False] * len(tokens)
    for entry in entries:
        n = len(entry)
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i:i + n]) == entry and not any(matched[i:i + n]):
                matched[i:i + n] = [True] * n
    return sum(matched) / len(tokens)


def contains_word(text: str, words: Sequence[str]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<![\w]){re.escape(w.lower())}(?![\w])", lowered) for w in words)


# ---- prompts ------------------------------------------------------------------------------------
def encode_prompts(tokenizer, texts: Sequence[str], *, chat_template: bool, max_tokens: int) -> tuple[list, bool]:
    """Token ids per prompt, through the chat template when asked for and the tokenizer has one."""
    use_template = bool(chat_template and getattr(tokenizer, "chat_template", None))
    out = []
    for text in texts:
        if use_template:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                add_generation_prompt=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        else:
            bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
            ids = bos + list(tokenizer(text, add_special_tokens=False)["input_ids"])[: max_tokens - 1]
        out.append([int(t) for t in ids])
    return out, use_template


# ---- directions ---------------------------------------------------------------------------------
@dataclass
class Direction:
    name: str
    kind: str  # anchor, fine, multi, aligned_mixture, control_mixture, diffmean, other, other_diffmean,
    #            random, random_row
    vector: np.ndarray  # unit vector [d_model]
    components: list = field(default_factory=list)


NAMED_KINDS = ("anchor", "fine", "multi", "aligned_mixture", "diffmean", "other", "other_diffmean")
CONTROL_KINDS = ("random", "random_row", "control_mixture")
RANKED_KINDS = ("anchor", "multi")  # the named directions the claims rank among the controls
REPORT_ONLY_KINDS = ("fine", "other_diffmean")  # named directions no claim reads: scored with report_extras


def unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) / max(float(np.linalg.norm(v)), 1e-12)


def mixture(dirs: dict, anchor: int, fine: Sequence[int], weight: float) -> np.ndarray:
    """weight x anchor's decoder row + (1 - weight) x the mean of the fine rows (the multi-resolution direction)."""
    combo = weight * dirs["coarse"][anchor]
    for f in fine:
        combo = combo + (1 - weight) / len(fine) * dirs["fine"][f]
    return unit(combo)


def mean_residual(tables, rows: np.ndarray) -> np.ndarray:
    """Mean over prompts of each prompt's mean residual at the hook (kept tokens)."""
    return (tables.resid_sum[rows] / np.maximum(tables.n_tokens[rows], 1)[:, None]).mean(0)


def _selective_feature(tables, rows_concept: np.ndarray, rows_other: np.ndarray, min_fire_rate: float,
                       role: str = "coarse") -> int:
    from harness.statistics.stats import selectivity
    x = tables.pooled[role]
    fires = (x[rows_concept] > 0).mean(0)
    sel = selectivity(x[rows_concept].mean(0), x[rows_other].mean(0))
    sel[fires < min_fire_rate] = 0
    return int(np.argmax(sel))


def discovery_sub_features(run, anchor: int) -> list[int]:
    """The anchor's sub-features chosen on the discovery half only (the confirmation half stays fresh).
    Chosen, like the split itself, with the split's seed: the multi-resolution direction is part of the
    design, so it must not move with `--claims-seed` (its permutation tests would move borderline rows)."""
    import dataclasses
    from harness.engine.analysis import Analysis
    profile = run.profile
    profile = dataclasses.replace(profile, analysis=dataclasses.replace(profile.analysis,
                                                                         seed=profile.prompts.split_seed))
    discovery = Analysis.build(profile, run.tables, run.prompt_sets, run.directions, split="discovery",
                               decoder_norms=run.decoder_norms, sae_info=run.sae_info)
    return [p["fine"] for p in discovery.sub_features(anchor)]


def cosine_matched_rows(cos: np.ndarray, subs: Sequence[int], candidates: np.ndarray, n_mixtures: int,
                        rng: np.random.Generator, pool: int = 8) -> list[list[int]]:
    """`n_mixtures` sets of fine rows that are not sub-features, each matched on decoder cosine to the
    anchor, sub-feature by sub-feature: in a random order of the sub-features, a row drawn from the
    `pool` unused candidates nearest its cosine (no row twice in one set). Random rows are nearly
    orthogonal to the anchor while sub-features are aligned by construction; a control that differs in
    geometry would let alignment alone pass for "the sub-features help"."""
    candidates = np.asarray(candidates)
    order_by_sub = {s: candidates[np.argsort(np.abs(cos[candidates] - cos[s]), kind="stable")] for s in subs}
    out = []
    for _ in range(n_mixtures):
        chosen: dict[int, int] = {}
        for k in rng.permutation(len(subs)):
            s = subs[int(k)]
            taken = set(chosen.values())
            options = [int(r) for r in order_by_sub[s] if int(r) not in taken][:pool]
            chosen[s] = options[int(rng.integers(len(options)))]
        out.append([chosen[s] for s in subs])
    return out


def cosine_gap(cos: np.ndarray, subs: Sequence[int], mixtures: Sequence[Sequence[int]]) -> float:
    """How well the mixtures are matched: mean |cosine of a row - cosine of its sub-feature|."""
    return float(np.mean([np.abs(cos[list(rows)] - cos[list(subs)]).mean() for rows in mixtures])) if mixtures else 0.0


def build_directions(run, cfg: SteeringConfig, rng: np.random.Generator) -> tuple[list[Direction], dict]:
    a, dirs, tables = run.analysis, run.directions, run.tables
    if not run.profile.anchors.coarse:
        raise ConfigError("steering needs a coarse anchor; run `python -m harness discover` first")
    anchor = int(run.profile.anchors.coarse[0])
    cos = a.anchor_cosines(anchor)
    fine = int(np.argmax(cos))
    subs = discovery_sub_features(run, anchor)
    masks = a.masks
    out = [Direction(f"coarse-{anchor}", "anchor", unit(dirs["coarse"][anchor]), [anchor]),
           Direction(f"fine-{fine}", "fine", unit(dirs["fine"][fine]), [fine])]
    w = cfg.multi_coarse_weight
    if subs:
        out.append(Direction(f"multi: coarse-{anchor} + {len(subs)} sub-features", "multi",
                             mixture(dirs, anchor, subs, w), [anchor, *subs]))
        not_subs = np.setdiff1d(np.arange(dirs["fine"].shape[0]), subs)
        aligned = not_subs[np.argsort(-cos[not_subs])[: len(subs)]]
        out.append(Direction(f"anchor + {len(subs)} aligned non-sub-features", "aligned_mixture",
                             mixture(dirs, anchor, aligned.tolist(), w), [anchor, *aligned.tolist()]))
        matched = cosine_matched_rows(cos, subs, not_subs, cfg.control_mixtures, rng)
        for i, rows in enumerate(matched):
            out.append(Direction(f"anchor + {len(subs)} cosine-matched fine rows #{i}", "control_mixture",
                                 mixture(dirs, anchor, rows, w), [anchor, *rows]))
    diffmean = mean_residual(tables, masks["concept_discovery"]) - mean_residual(tables, masks["neutral_discovery"])
    out.append(Direction("DiffMean", "diffmean", unit(diffmean)))
    meta = {"anchor": anchor, "fine": fine, "sub_features": subs, "sub_features_from": "discovery half",
            "multi_coarse_weight": w}
    if subs:
        meta["control_mixture_cosine_gap"] = cosine_gap(cos, subs, matched)
        # the aligned mixture pairs by rank of cosine (its rows are the most aligned, not matched one to one)
        meta["aligned_mixture_cosine_gap"] = float(np.mean(np.abs(np.sort(cos[aligned]) - np.sort(cos[subs]))))
    if cfg.other_concept:
        near = [p for p in run.prompt_sets.near_miss if p.country == cfg.other_concept]
        if len(near) < cfg.other_concept_min_prompts:  # preflight says this first (check_steering_inputs)
            raise ConfigError(f"steering.other_concept {cfg.other_concept!r} has {len(near)} near-miss prompts; "
                              f"need {cfg.other_concept_min_prompts}+ (steering.other_concept_min_prompts)")
        ids = {p.id for p in near}
        rows_other = np.array([pid in ids for pid in tables.prompt_ids])
        other = _selective_feature(tables, rows_other & masks["near_miss_discovery"], masks["neutral_discovery"],
                                   cfg.other_feature_min_fire_rate)
        out.append(Direction(f"coarse-{other} ({cfg.other_concept})", "other", unit(dirs["coarse"][other]), [other]))
        other_mean = mean_residual(tables, rows_other & masks["near_miss_discovery"])
        out.append(Direction(f"DiffMean ({cfg.other_concept})", "other_diffmean",
                             unit(other_mean - mean_residual(tables, masks["neutral_discovery"]))))
        meta["other_feature"] = other
    d = dirs["coarse"].shape[1]
    for i in range(cfg.random_directions):
        out.append(Direction(f"random-{i}", "random", unit(rng.standard_normal(d))))
    rows = rng.choice(np.setdiff1d(np.arange(dirs["coarse"].shape[0]), [anchor]), size=cfg.random_rows,
                      replace=cfg.random_rows > dirs["coarse"].shape[0] - 1)
    for i, row in enumerate(rows):
        out.append(Direction(f"coarse row {int(row)}", "random_row", unit(dirs["coarse"][row]), [int(row)]))
    return out, meta


# ---- coefficients -------------------------------------------------------------------------------
def matched_coefficient(coefficients: Sequence[float], kl_by_coefficient: Sequence[float], target_kl: float) -> float:
    """Coefficient at which the (monotone-ised) KL curve reaches target_kl, by log-log interpolation;
    the end of the grid when the target lies outside it."""
    kls = np.maximum.accumulate(np.maximum(np.asarray(kl_by_coefficient, dtype=float), 1e-12))
    log_coefficients = np.log(np.asarray(coefficients, dtype=float))
    if target_kl <= kls[0]:
        return float(coefficients[0])
    if target_kl >= kls[-1]:
        return float(coefficients[-1])
    return float(np.exp(np.interp(np.log(target_kl), np.log(kls), log_coefficients)))


def secant_coefficient(coef0: float, kl0: float, coef1: float, kl1: float, target: float, bounds: tuple) -> float:
    """Coefficient reaching `target` on the power law through two probes (KL ~ c coefficient^p), within bounds."""
    kl0, kl1 = max(kl0, 1e-12), max(kl1, 1e-12)
    if abs(np.log(coef1 / coef0)) < 1e-9 or abs(np.log(kl1 / kl0)) < 1e-9:
        power = 2.0  # KL grows quadratically in a small push
    else:
        power = float(np.clip(np.log(kl1 / kl0) / np.log(coef1 / coef0), 0.5, 4.0))
    coefficient = coef1 * (target / kl1) ** (1 / power)
    return float(np.clip(coefficient, *bounds))


SCREEN_DEPTH = 2  # tokens of each word read by the controls' screen
SCREEN_SLACK = 1e-4  # nats: a bound this close below the floor is scored in full anyway


def screen_units(units: Sequence[Sequence[int]], depth: int = SCREEN_DEPTH) -> list[tuple[int, ...]]:
    """Each unit cut to its first `depth` tokens, one per unit (repeats kept). Scored as prefixes (an
    engine without a word-end mask), P(first tokens) >= P(the whole word) unit by unit, so the log of
    their sum bounds the lexicon's log-probability from above, with a trie of a few positions."""
    return [tuple(u[:depth]) for u in units]


def screened_shifts(engine: SteeringEngine, prepared_words, vectors_KD: np.ndarray, bound_log_mass: np.ndarray,
                    base_log_mass: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's mean shift of the lexicon's log-mass over the prompts, exact wherever it could reach
    `floor`: (shift, exact). `bound_log_mass` [K, prompts] bounds the lexicon's log-mass from above
    (`screen_units`). A vector whose bound on the mean shift is below `floor` keeps that bound (exact
    False); the others are scored in full with their word positions. Anything ranked at or above
    `floor` ranks the same as with every vector exact."""
    shift = (np.asarray(bound_log_mass) - base_log_mass[None]).mean(1)
    # the bound and the exact score come from forwards of different shapes: float noise (~1e-6) must not
    # screen a control that ties the floor
    full = np.flatnonzero(shift >= floor - SCREEN_SLACK)
    if len(full):
        scored = engine.score(prepared_words, vectors_KD[full])
        shift[full] = (log_mass(scored["unit_logprob"]) - base_log_mass[None]).mean(1)
    exact = np.zeros(len(shift), dtype=bool)
    exact[full] = True
    return shift, exact


@dataclass
class Matched:
    """Directions matched to a fluency cost on the prompts they are scored on."""
    coefficient: np.ndarray  # [K]
    kl: np.ndarray  # [K, prompts] KL at the matched coefficient
    passes: int  # forward passes over the last prompt token, all directions together


def match_kl(engine: SteeringEngine, prepared_last, unit_vectors_KD: np.ndarray, radius: float, start: np.ndarray,
             target, *, precision: float, bounds: tuple[float, float], max_passes: int = 8) -> Matched:
    """Each direction's coefficient such that its mean KL over these prompts is within `precision` of its
    target: secant steps on the log-log curve (`secant_coefficient`: KL ~ c x coefficient^p, p from the
    last two passes, 2 at first), each pass over the last prompt token only and only for the directions not
    yet within `precision`. One procedure for every compared direction, on the very prompts it is scored
    on, so no direction carries another prompt sample's matching noise. A direction held at a bound (or
    out of passes) keeps the KL it reached; the claims check every reached KL."""
    unit_vectors = np.asarray(unit_vectors_KD, dtype=np.float64)
    K = len(unit_vectors)
    target = np.broadcast_to(np.asarray(target, dtype=float), (K,)).copy()
    trial = np.clip(np.asarray(start, dtype=float), *bounds)
    coefficient = trial.copy()  # the coefficient of each direction's last scored pass
    kl = np.zeros((K, prepared_last.n_prompts))
    previous = np.full(K, np.nan), np.full(K, np.nan)  # (coefficient, mean KL) of the pass before
    todo, passes = np.arange(K), 0
    while len(todo) and passes < max_passes:
        vectors = (unit_vectors[todo] * (trial[todo] * radius)[:, None]).astype(np.float32)
        out = engine.score(prepared_last, vectors)
        passes += 1
        coefficient[todo] = trial[todo]
        kl[todo] = out["kl"]
        reached = np.maximum(kl[todo].mean(1), 1e-12)
        done = np.abs(reached - target[todo]) <= precision
        nxt = coefficient[todo].copy()
        for j, k in enumerate(todo):
            if done[j]:
                continue
            c0, k0 = (previous[0][k], previous[1][k]) if np.isfinite(previous[0][k]) else (coefficient[k], reached[j])
            nxt[j] = secant_coefficient(c0, k0, coefficient[k], reached[j], target[k], bounds)
        previous[0][todo], previous[1][todo] = coefficient[todo], reached
        stuck = np.isclose(nxt, coefficient[todo], rtol=1e-9, atol=0)  # held at a bound
        trial[todo] = nxt
        todo = todo[~done & ~stuck]
    return Matched(coefficient=coefficient, kl=kl, passes=passes)


def steering_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def unsteered_units(prepared) -> np.ndarray:
    """[prompts, units] unsteered word log-probs, back in the prompts' order (batches are length-sorted)."""
    out = np.empty((prepared.n_prompts, len(prepared.units)))
    for batch in prepared.batches:
        out[batch.index] = batch.base_units_BU.numpy()
    return out


def _subset(index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(index, size=min(n, len(index)), replace=False))


# ---- the study ----------------------------------------------------------------------------------
def steering_study(run, cfg: SteeringConfig, *, progress: bool = True) -> SteeringResult:
    """Calibrate, score, rank against controls, compare with baselines, sample. See module docstring."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        clock = now

    profile, tables = run.profile, run.tables
    neutral = list(run.prompt_sets.neutral)
    for p in neutral:
        if contains_word(p.text, cfg.concept_words) or contains_word(p.text, cfg.other_concept_words):
            raise ConfigError(f"neutral prompt {p.id!r} contains a steering lexicon word; the scored words must "
                              f"be absent from the prompts")
    rows = np.flatnonzero(tables.rows("neutral"))
    discovery_rows = run.analysis.masks["neutral_discovery"][rows]
    seeds = np.random.SeedSequence([profile.analysis.seed, 0x5354454552])  # "STEER"
    rng_dirs, rng_prompts = (np.random.default_rng(s) for s in seeds.spawn(2))
    discovery, confirmation = np.flatnonzero(discovery_rows), np.flatnonzero(~discovery_rows)
    if cfg.confirmation_prompts:
        confirmation = confirmation[:cfg.confirmation_prompts]
    calibration = _subset(discovery, cfg.calibration_prompts, rng_prompts)
    control = _subset(confirmation, cfg.control_prompts, rng_prompts)
    generation = _subset(confirmation, cfg.generation_prompts, rng_prompts)
    radius = tables.mean_resid_norm(tables.rows("neutral"))
    directions, meta = build_directions(run, cfg, rng_dirs)
    model = run.model
    tokenizer = model.tokenizer
    texts = [p.text for p in neutral]
    encoded, used_template = encode_prompts(tokenizer, texts, chat_template=cfg.chat_template,
                                            max_tokens=profile.model.max_tokens)
    concept_name = profile.prompts.concept_name
    instruction = cfg.instruction.format(concept=concept_name)
    instructed, _ = encode_prompts(tokenizer, [f"{instruction}\n{t}" for t in texts], chat_template=cfg.chat_template,
                                   max_tokens=profile.model.max_tokens + 16)
    concept_lex = Lexicon.build(tokenizer, cfg.concept_words)
    other_lex = Lexicon.build(tokenizer, cfg.other_concept_words) if cfg.other_concept_words else None
    if other_lex:
        check_units_apart(concept_lex, other_lex)
    units = concept_lex.units + (other_lex.units if other_lex else [])
    n_concept = len(concept_lex.units)
    vocab = causal_lm(model).lm_head.weight.shape[0]
    engine = SteeringEngine(model, hook_layer(profile.model.hook), positions=cfg.positions,
                            word_end=word_end_mask(tokenizer, vocab))
    by_kind: dict[str, list[Direction]] = {}
    for d in directions:
        by_kind.setdefault(d.kind, []).append(d)
    named = [d for d in directions if d.kind in NAMED_KINDS and (cfg.report_extras or d.kind not in REPORT_ONLY_KINDS)]
    controls = [d for d in directions if d.kind in CONTROL_KINDS]
    coefficients = np.asarray(cfg.coefficients, dtype=float)
    bar = tqdm(total=6, desc="steering study", disable=not progress)

    def vectors(dirs: Sequence[Direction], coefs) -> np.ndarray:
        coefs = np.broadcast_to(np.asarray(coefs, dtype=float), (len(dirs),))
        return np.stack([d.vector * c * radius for d, c in zip(dirs, coefs, strict=True)]).astype(np.float32)

    def pick(index: np.ndarray) -> list:
        return [encoded[i] for i in index]

    lap("setup")
    # 1. Prepare: layers up to the hook, once per prompt set.
    prep_cal = engine.prepare(pick(calibration))
    prep_conf = engine.prepare(pick(confirmation), units)
    prep_ctrl = engine.prepare(pick(control), concept_lex.units)
    # The same prompts without word positions: the passes that match coefficients and screen controls.
    prep_conf_last = engine.prepare(pick(confirmation))
    prep_ctrl_last = engine.prepare(pick(control))
    prefix_engine = SteeringEngine(model, hook_layer(profile.model.hook), positions=cfg.positions)  # prefixes
    prep_ctrl_screen = prefix_engine.prepare(pick(control), screen_units(concept_lex.units))
    prep_prompting = engine.prepare([instructed[i] for i in confirmation], units)
    bar.update()
    lap("prepare")

    # 2. Named directions: KL at every coefficient on the calibration prompts -> matched coefficient.
    grid = [(d, a) for d in named for a in coefficients]
    kl_grid = engine.score(prep_cal, vectors([d for d, _ in grid], [a for _, a in grid]))["kl"].mean(1)
    kl_grid = kl_grid.reshape(len(named), len(coefficients))
    start = {d.name: matched_coefficient(coefficients, kl_grid[i], cfg.kl_budget) for i, d in enumerate(named)}
    calibration_curves = {d.name: kl_grid[i].tolist() for i, d in enumerate(named)}
    bar.update()
    lap("calibrate named")

    # 3. Named directions matched to the budget on the confirmation prompts' own KL (from the grid's
    #    coefficient), then scored there.
    bounds = (coefficients[0] / 4, coefficients[-1] * 4)
    named_match = match_kl(engine, prep_conf_last, np.stack([d.vector for d in named]), radius,
                           np.array([start[d.name] for d in named]), cfg.kl_budget, precision=cfg.kl_precision,
                           bounds=bounds)
    chosen = {d.name: float(c) for d, c in zip(named, named_match.coefficient, strict=True)}
    base_units = unsteered_units(prep_conf)
    base_concept = log_mass(base_units[:, :n_concept])
    base_other = log_mass(base_units[:, n_concept:]) if other_lex else np.zeros(len(confirmation))
    scored = engine.score(prep_conf, vectors(named, [chosen[d.name] for d in named]))
    anchor_units = scored["unit_logprob"][next(i for i, d in enumerate(named) if d.kind == "anchor")]
    disc_units = unsteered_units(engine.prepare(pick(calibration), units))
    per_word = {"concept": concept_lex.per_word(base_units[:, :n_concept], anchor_units[:, :n_concept],
                                                disc_units[:, :n_concept]),
                "other": other_lex.per_word(base_units[:, n_concept:], anchor_units[:, n_concept:],
                                            disc_units[:, n_concept:]) if other_lex else []}
    per_prompt: dict[str, dict] = {}
    for i, d in enumerate(named):
        u = scored["unit_logprob"][i]
        per_prompt[d.name] = {
            "concept": (log_mass(u[:, :n_concept]) - base_concept).tolist(),
            "other": ((log_mass(u[:, n_concept:]) - base_other) if other_lex else np.zeros(len(confirmation))).tolist(),
            "kl": scored["kl"][i].tolist()}
    # Prompting: the instruction in the user's turn, unsteered; its "KL" is from the plain prompt.
    p_units = unsteered_units(prep_prompting)
    p_last = []
    plain_last = {int(i): b.base_last_BV[j] for b in prep_conf.batches for j, i in enumerate(b.index)}
    for b in prep_prompting.batches:
        for j, i in enumerate(b.index):
            lp = b.base_last_BV[j]
            p_last.append((int(i), float((lp.exp() * (lp - plain_last[int(i)])).sum())))
    prompting_kl = np.array([kl for _, kl in sorted(p_last)])
    per_prompt["prompting"] = {
        "concept": (log_mass(p_units[:, :n_concept]) - base_concept).tolist(),
        "other": ((log_mass(p_units[:, n_concept:]) - base_other) if other_lex else np.zeros(len(confirmation))).tolist(),
        "kl": prompting_kl.tolist()}
    # An instruction has no coefficient: compare it with the anchor pushed to the instruction's own KL
    # (its coefficient read off the anchor's calibration curve), on the same confirmation prompts.
    anchor_named = next(d for d in named if d.kind == "anchor")
    at_prompting = Direction(f"{anchor_named.name} at prompting's KL", AT_PROMPTING_KL, anchor_named.vector,
                             anchor_named.components)
    prompting_match = match_kl(engine, prep_conf_last, anchor_named.vector[None], radius,
                               [matched_coefficient(coefficients, kl_grid[named.index(anchor_named)],
                                                    float(prompting_kl.mean()))],
                               float(prompting_kl.mean()), precision=cfg.kl_precision, bounds=bounds)
    chosen[at_prompting.name] = float(prompting_match.coefficient[0])
    u = engine.score(prep_conf, vectors([at_prompting], chosen[at_prompting.name]))
    per_prompt[at_prompting.name] = {
        "concept": (log_mass(u["unit_logprob"][0][:, :n_concept]) - base_concept).tolist(),
        "other": ((log_mass(u["unit_logprob"][0][:, n_concept:]) - base_other) if other_lex
                  else np.zeros(len(confirmation))).tolist(),
        "kl": u["kl"][0].tolist()}
    meta["instruction_names"] = [w for w in (*cfg.concept_words, *cfg.other_concept_words)
                                 if contains_word(instruction, [w])]
    bar.update()
    lap("score named")

    # 4. Controls: matched to the budget on the control prompts' own KL by the same procedure (from the
    #    anchor's coefficient), screened by a bound from each word's first two tokens, and scored in full
    #    where they could reach a ranked direction (`screened_shifts`). The anchor and multi are ranked
    #    among them.
    anchor = by_kind["anchor"][0]
    control_match = match_kl(engine, prep_ctrl_last, np.stack([d.vector for d in controls]), radius,
                             np.full(len(controls), chosen[anchor.name]), cfg.kl_budget, precision=cfg.kl_precision,
                             bounds=bounds)
    control_coefficient = control_match.coefficient
    ctrl_base = log_mass(unsteered_units(prep_ctrl))
    # The named methods are ranked on the control prompts, so they are matched there too, by the same
    # procedure as the controls (their confirmation-half coefficient reaches another KL on 12 prompts).
    named_on_control = match_kl(engine, prep_ctrl_last, np.stack([d.vector for d in named]), radius,
                                np.array([chosen[d.name] for d in named]), cfg.kl_budget,
                                precision=cfg.kl_precision, bounds=bounds)
    named_ctrl = engine.score(prep_ctrl, vectors(named, named_on_control.coefficient))
    on_control = {d.name: float((log_mass(named_ctrl["unit_logprob"][i]) - ctrl_base).mean())
                  for i, d in enumerate(named)}
    on_control_kl = {d.name: float(k) for d, k in zip(named, named_on_control.kl.mean(1), strict=True)}
    floor = min(on_control[d.name] for d in named if d.kind in RANKED_KINDS)
    ctrl_vectors = vectors(controls, control_coefficient)
    bound = log_mass(prefix_engine.score(prep_ctrl_screen, ctrl_vectors)["unit_logprob"])
    ctrl_shift, exact_mask = screened_shifts(engine, prep_ctrl, ctrl_vectors, bound, ctrl_base, floor)
    ctrl_kl = control_match.kl.mean(1)
    meta["matching"] = {"precision": cfg.kl_precision, "passes": {"named": named_match.passes,
                                                                  "at prompting's KL": prompting_match.passes,
                                                                  "controls": control_match.passes,
                                                                  "named on the control prompts":
                                                                      named_on_control.passes}}
    control_summary = {
        "prompts": int(len(control)),
        "on_control_prompts": on_control,
        "on_control_kl": on_control_kl,
        "screened_below": floor,
        "by_kind": {kind: {"names": [d.name for d in controls if d.kind == kind],
                           "concept_shift": [float(s) for d, s in zip(controls, ctrl_shift, strict=True) if d.kind == kind],
                           "exact": [bool(e) for d, e in zip(controls, exact_mask, strict=True) if d.kind == kind],
                           "kl": [float(k) for d, k in zip(controls, ctrl_kl, strict=True) if d.kind == kind],
                           "coefficient": [float(a) for d, a in zip(controls, control_coefficient, strict=True) if d.kind == kind]}
                    for kind in CONTROL_KINDS if any(d.kind == kind for d in controls)},
    }
    bar.update()
    lap("controls")

    # 5. Dose-response on the control prompts: named directions and a band of random directions (report only).
    curves, band = {}, {}
    if cfg.report_extras:
        band_dirs = by_kind.get("random", [])[: cfg.band_directions]
        dose_dirs = [d for d in named] + band_dirs
        grid = [(d, a) for d in dose_dirs for a in coefficients]
        dose = engine.score(prep_ctrl, vectors([d for d, _ in grid], [a for _, a in grid]))
        dose_shift = (log_mass(dose["unit_logprob"]) - ctrl_base[None]).mean(1).reshape(len(dose_dirs), -1)
        dose_kl = dose["kl"].mean(1).reshape(len(dose_dirs), -1)
        curves = {d.name: {"kind": d.kind, "coefficient": coefficients.tolist(), "concept_shift": dose_shift[i].tolist(),
                           "kl": dose_kl[i].tolist()} for i, d in enumerate(named)}
        if band_dirs:
            shifts, kls = dose_shift[len(named):], dose_kl[len(named):]
            band = {"coefficient": coefficients.tolist(), "low": np.quantile(shifts, 0.05, axis=0).tolist(),
                    "high": np.quantile(shifts, 0.95, axis=0).tolist(), "median": np.median(shifts, 0).tolist(),
                    "kl": np.median(kls, 0).tolist(), "n": len(band_dirs)}
        lap("dose-response")
    bar.update()

    # 6. Samples: unsteered, prompting and the main directions at their matched coefficient.
    gen_prompts = [encoded[i] for i in generation]
    stop = [t for t in (tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)) if t is not None]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if used_template else None
    if isinstance(im_end, int) and im_end >= 0:
        stop.append(im_end)
    # The claims need the anchor's and the unsteered continuations; the other methods' are for the report.
    sample_kinds = ["anchor", "multi", "diffmean", "other", "control_mixture"] if cfg.report_extras else ["anchor"]
    conditions: dict[str, tuple] = {"unsteered": (gen_prompts, None)}
    if cfg.report_extras:
        conditions["prompting"] = ([instructed[i] for i in generation], None)
    for kind in sample_kinds:
        for d in by_kind.get(kind, [])[:1]:
            coefficient = chosen.get(d.name)
            if coefficient is None:  # a control mixture: its own interpolated coefficient
                coefficient = float(control_coefficient[controls.index(d)])
            conditions[d.name] = (gen_prompts, d.vector * coefficient * radius)
    texts_out: dict[str, list[str]] = {}
    for name, (prompts, vector) in tqdm(conditions.items(), desc="steering samples", disable=not progress):
        ids = engine.sample(prompts, vector, seed=profile.analysis.seed, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, stop_ids=stop)
        texts_out[name] = [tokenizer.decode(x, skip_special_tokens=True) for x in ids]
    concept_share = {k: [word_share(t, cfg.concept_words) for t in v] for k, v in texts_out.items()}
    other_share = {k: [word_share(t, cfg.other_concept_words) for t in v] for k, v in texts_out.items()}
    examples = [{"prompt": texts[generation[i]], **{k: v[i] for k, v in texts_out.items()}}
                for i in range(min(cfg.examples, len(generation)))]
    bar.update()
    bar.close()
    lap("samples")

    steerability = {name: {"wrong_way": float(np.mean(np.asarray(v["concept"]) < 0)),
                           "n": len(v["concept"])} for name, v in per_prompt.items()}
    kl_reached = {name: float(np.mean(v["kl"])) for name, v in per_prompt.items()}
    kinds = {d.name: d.kind for d in named} | {"prompting": "prompting", at_prompting.name: AT_PROMPTING_KL}
    summary = {name: {"kind": kinds[name], "coefficient": chosen.get(name), "kl": kl_reached[name],
                      "concept_shift": float(np.mean(v["concept"])), "other_shift": float(np.mean(v["other"])),
                      "wrong_way": steerability[name]["wrong_way"],
                      "concept_share": float(np.mean(concept_share[name])) if name in concept_share else None,
                      "other_share": float(np.mean(other_share[name])) if name in other_share else None}
               for name, v in per_prompt.items()}
    summary["unsteered"] = {"kind": "unsteered", "coefficient": 0.0, "kl": 0.0, "concept_shift": 0.0, "other_shift": 0.0,
                            "wrong_way": None, "concept_share": float(np.mean(concept_share["unsteered"])),
                            "other_share": float(np.mean(other_share["unsteered"]))}
    where = "the reply's positions (from the prompt's last token on)" if cfg.positions == "reply" else "every position"
    return SteeringResult.model_validate({
        "version": STUDY_VERSION,
        "scoring": "whole words: P(tokens) x P(the next token ends the word)",
        "description": (
            f"coefficient x unit(direction) x {radius:.1f} (mean residual norm at {profile.model.hook} on neutral prompts), "
            f"added at {where}; prompts {'in the chat template' if used_template else 'as plain text'}. "
            f"Every method's coefficient is matched to KL {cfg.kl_budget} ± {cfg.kl_precision} nats (next-token "
            f"distribution at the prompt's last token) on the prompts it is scored on, starting from a grid on "
            f"{len(calibration)} discovery prompts; scores on the {len(confirmation)} confirmation prompts; "
            f"controls ranked on {len(control)} of them."),
        "radius": radius, "coefficients": coefficients.tolist(), "kl_budget": cfg.kl_budget, "positions": cfg.positions,
        "chat_template": used_template, "meta": meta,
        "lexicons": {"concept": {"name": concept_name, "words": list(cfg.concept_words), "units": concept_lex.variants,
                                 "base_log_mass": float(np.mean(base_concept)), "per_word": per_word["concept"]},
                     "other": {"name": cfg.other_concept, "words": list(cfg.other_concept_words),
                               "units": other_lex.variants if other_lex else [],
                               "base_log_mass": float(np.mean(base_other)) if other_lex else None,
                               "per_word": per_word["other"]}},
        "directions": [{"name": d.name, "kind": d.kind, "components": d.components,
                        "coefficient": chosen.get(d.name), "kl_reached": kl_reached.get(d.name)}
                       for d in (*named, at_prompting)],
        "instruction": instruction,
        "chosen_coefficient": chosen, "calibration_kl": calibration_curves, "per_prompt": per_prompt,
        "kl_reached": kl_reached, "controls": control_summary, "dose_response": curves, "random_band": band,
        "steerability": steerability, "summary": summary,
        "samples": {"prompts": len(generation), "max_new_tokens": cfg.max_new_tokens,
                    "concept_share": concept_share, "other_share": other_share},
        "examples": examples, "timings": timings,
        "n_prompts": {"calibration": len(calibration), "confirmation": len(confirmation), "control": len(control),
                      "generation": len(generation)},
    })

