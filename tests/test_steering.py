"""Steering: the fast engine computes exactly what a plain forward with the vector added computes;
KV-cached sampling draws the same tokens as full recomputation; lexicons score whole words; the
coefficient and rank helpers do what their claims rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.engine.claims_engine import rank_against_controls
from harness.core.errors import ConfigError
from harness.core.config import MIN_UNIT_CHARS, SteeringConfig, check_lexicons
from harness.core.steering_result import ControlKind, DirectionInfo, PromptScores
from harness.steering.study import (
    Lexicon,
    cosine_matched_rows,
    log_mass,
    matched_coefficient,
    secant_coefficient,
    unsteered_units,
    word_share,
    word_variants,
)
from harness.steering.engine import SteeringEngine, hook_layer, word_trie

LAYER = 1


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


PROMPTS = [[1, 5, 7, 3, 9, 2], [1, 4, 4], [1, 8, 2, 6, 3, 3, 7, 11, 12], [1, 30]]
UNITS = [(5,), (7, 8), (7, 9, 10), (20, 21), (7, 8, 33)]


def steered_logprobs(model, tokens, vector, n_prompt, positions):
    """[T, V] log-probs of one sequence with the vector added after layer LAYER (from the last prompt
    token on, or everywhere)."""
    start = n_prompt - 1 if positions == "reply" else 0

    def add(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        gate = (torch.arange(hidden.shape[1]) >= start).float()
        hidden = hidden + vector[None, None] * gate[None, :, None]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = model.model.layers[LAYER].register_forward_hook(add)
    try:
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([tokens])).logits.float(), -1)[0]
    finally:
        handle.remove()


def plain_scores(model, prompt, unit, vector, positions):
    """Reference: one ordinary forward of prompt + unit with the vector added after layer LAYER."""
    n = len(prompt)
    with torch.no_grad():
        base = torch.log_softmax(model(torch.tensor([prompt + list(unit)])).logits.float(), -1)[0]
    steered = steered_logprobs(model, prompt + list(unit), vector, n, positions)
    kl = float((steered[n - 1].exp() * (steered[n - 1] - base[n - 1])).sum())
    logprob = float(sum(steered[n - 1 + k, unit[k]] for k in range(len(unit))))
    return kl, logprob


@pytest.mark.parametrize("positions", ["reply", "all"])
def test_prefix_reuse_equals_a_full_forward(tiny, positions):
    engine = SteeringEngine(tiny, LAYER, positions=positions, batch_prompts=3, batch_rows=4)
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(1)) * 2
    result = engine.score(engine.prepare(PROMPTS, UNITS), vectors)
    expected_kl = np.zeros((3, len(PROMPTS)))
    expected_lp = np.zeros((3, len(PROMPTS), len(UNITS)))
    for k in range(3):
        for i, prompt in enumerate(PROMPTS):
            for u, unit in enumerate(UNITS):
                expected_kl[k, i], expected_lp[k, i, u] = plain_scores(tiny, prompt, unit, vectors[k], positions)
    np.testing.assert_allclose(result["kl"], expected_kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result["unit_logprob"], expected_lp, rtol=1e-5, atol=1e-5)


def test_zero_vector_is_the_unsteered_model_and_layers_are_restored(tiny):
    engine = SteeringEngine(tiny, LAYER)
    prepared = engine.prepare(PROMPTS, UNITS)
    result = engine.score(prepared, np.zeros((1, 32), np.float32))
    np.testing.assert_allclose(result["kl"], 0.0, atol=1e-5)
    base = np.zeros((len(PROMPTS), len(UNITS)))
    for batch in prepared.batches:
        base[batch.index] = batch.base_units_BU.numpy()
    np.testing.assert_allclose(result["unit_logprob"][0], base, atol=1e-5)
    assert not any("forward" in layer.__dict__ for layer in tiny.model.layers)  # the replay is gone
    assert not any(layer._forward_hooks for layer in tiny.model.layers)


@pytest.mark.parametrize("positions", ["reply", "all"])
def test_kv_cache_sampling_equals_full_recompute_token_for_token(tiny, positions):
    engine = SteeringEngine(tiny, LAYER, positions=positions, sample_batch=3)
    vector = torch.randn(32, generator=torch.Generator().manual_seed(2)) * 3
    for v in (None, vector):
        cached = engine.sample(PROMPTS, v, seed=7, max_new_tokens=10, use_cache=True)
        recomputed = engine.sample(PROMPTS, v, seed=7, max_new_tokens=10, use_cache=False)
        assert cached == recomputed
        assert all(len(row) == 10 for row in cached)
    assert engine.sample(PROMPTS, vector, seed=7, max_new_tokens=10) != engine.sample(PROMPTS, None, seed=7,
                                                                                       max_new_tokens=10)


def test_sampling_stops_at_a_stop_token(tiny):
    engine = SteeringEngine(tiny, LAYER)
    free = engine.sample(PROMPTS, None, seed=3, max_new_tokens=12)
    stop = free[0][4]
    cut = engine.sample(PROMPTS, None, seed=3, max_new_tokens=12, stop_ids=[stop])
    assert cut[0] == free[0][: free[0].index(stop)]


def test_word_trie_lists_every_proper_prefix_once():
    assert word_trie([(1,), (2, 3), (2, 3, 4), (2, 5)]) == [(2,), (2, 3)]
    # whole words: the units themselves too (where the next token must end the word)
    assert word_trie([(1,), (2, 3), (2, 3, 4)], whole_words=True) == [(1,), (2,), (2, 3), (2, 3, 4)]


WORD_END = np.zeros(64, dtype=bool)
WORD_END[[0, 2, 3, 33, 40, 41]] = True  # the tiny vocabulary's "spaces, punctuation and end of text"


@pytest.mark.parametrize("positions", ["reply", "all"])
def test_whole_word_scores_equal_a_full_forward_with_the_word_end(tiny, positions):
    """P(tokens) x P(next token ends the word), from the engine, equals a plain steered forward of
    prompt + unit with the word-end mass read after the unit."""
    engine = SteeringEngine(tiny, LAYER, positions=positions, batch_prompts=3, batch_rows=4, word_end=WORD_END)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(3)) * 2
    result = engine.score(engine.prepare(PROMPTS, UNITS), vectors)
    for k in range(2):
        for i, prompt in enumerate(PROMPTS):
            for u, unit in enumerate(UNITS):
                _, tokens_lp = plain_scores(tiny, prompt, unit, vectors[k], positions)
                after = steered_logprobs(tiny, prompt + list(unit), vectors[k], len(prompt), positions)[-1]
                expected = tokens_lp + float(torch.logsumexp(after[torch.as_tensor(WORD_END)], -1))
                assert result["unit_logprob"][k, i, u] == pytest.approx(expected, abs=1e-4)


def test_a_whole_word_never_counts_a_longer_word(tiny):
    """(7, 8) and (7, 8, 33): the shorter word's probability excludes every continuation that does not
    end it, so it is at most P(7, 8) - P(7, 8, t) for each non-ending t, and adding the mass of all
    words that extend it (word-ending or not) gives back the prefix probability."""
    whole = SteeringEngine(tiny, LAYER, word_end=WORD_END)
    prefix = SteeringEngine(tiny, LAYER)
    prompts = PROMPTS[:2]
    w = np.exp(whole.score(whole.prepare(prompts, [(7, 8)]), np.zeros((1, 32)))["unit_logprob"][0, :, 0])
    p = np.exp(prefix.score(prefix.prepare(prompts, [(7, 8)]), np.zeros((1, 32)))["unit_logprob"][0, :, 0])
    longer = [(7, 8, t) for t in range(64) if not WORD_END[t]]
    q = np.exp(prefix.score(prefix.prepare(prompts, longer), np.zeros((1, 32)))["unit_logprob"][0])
    assert (w < p).all()
    np.testing.assert_allclose(w + q.sum(-1), p, rtol=1e-4)


@pytest.mark.parametrize("positions", ["reply", "all"])
def test_the_screening_bound_caps_the_whole_word_mass(tiny, positions):
    """The controls' screen: each word cut to its first two tokens and scored as a prefix bounds its
    whole-word probability, so the log of their sum is at least the lexicon's whole-word log-mass, for
    every vector and prompt (a screened control is truly below the floor). Units that share a prefix
    each count it: (7, 8) and (7, 8, 33) both read P(7, 8)."""
    from harness.steering.study import screen_units
    whole = SteeringEngine(tiny, LAYER, positions=positions, batch_prompts=3, batch_rows=4, word_end=WORD_END)
    prefix = SteeringEngine(tiny, LAYER, positions=positions, batch_prompts=3, batch_rows=4)
    vectors = torch.randn(6, 32, generator=torch.Generator().manual_seed(5)) * torch.tensor([0, 1, 2, 4, 8, 16])[:, None]
    exact = log_mass(whole.score(whole.prepare(PROMPTS, UNITS), vectors)["unit_logprob"])
    cut = screen_units(UNITS)
    assert cut == [(5,), (7, 8), (7, 9), (20, 21), (7, 8)]
    bound = log_mass(prefix.score(prefix.prepare(PROMPTS, cut), vectors)["unit_logprob"])
    assert (bound >= exact - 1e-6).all() and (bound > exact + 1e-3).any()


def test_screened_controls_rank_exactly_as_fully_scored_ones(tiny):
    """The study's screen: the vectors it scores in full get their exact shift, the others a bound that
    is at least their exact shift and below the floor, so counting controls at or above any value at or
    above the floor gives the same count as scoring every control in full."""
    from harness.steering.study import screen_units, screened_shifts
    engine = SteeringEngine(tiny, LAYER, batch_prompts=3, batch_rows=4, word_end=WORD_END)
    vectors = (torch.randn(40, 32, generator=torch.Generator().manual_seed(7))
               * torch.linspace(0, 12, 40)[:, None]).numpy()
    words = engine.prepare(PROMPTS, UNITS)
    base = log_mass(unsteered_units(words))
    truth = (log_mass(engine.score(words, vectors)["unit_logprob"]) - base[None]).mean(1)
    prefix = SteeringEngine(tiny, LAYER, batch_prompts=3, batch_rows=4)
    bound = log_mass(prefix.score(prefix.prepare(PROMPTS, screen_units(UNITS)), vectors)["unit_logprob"])
    floor = float(np.median((bound - base[None]).mean(1)))  # a floor that splits them
    shift, exact = screened_shifts(engine, words, vectors, bound, base, floor)
    assert 0 < exact.sum() < len(exact)  # the screen both skipped and kept some here
    np.testing.assert_allclose(shift[exact], truth[exact], atol=1e-5)
    assert (shift[~exact] < floor).all() and (shift[~exact] >= truth[~exact] - 1e-6).all()
    for value in (floor, *truth[truth >= floor]):
        assert (shift >= value).sum() == (truth >= value).sum()


def test_every_direction_is_matched_to_its_target_kl_on_the_prompts_it_is_scored_on(tiny):
    """`match_kl`: directions of very different strength (so very different coefficients) all land within
    the precision of the target, and the KL it reports is what a full scoring at that coefficient gives;
    a target out of reach stops at the coefficient bound with the KL it reached."""
    from harness.steering.study import match_kl
    engine = SteeringEngine(tiny, LAYER, batch_prompts=3, batch_rows=8, word_end=WORD_END)
    rng = np.random.default_rng(11)
    units = rng.standard_normal((12, 32)) * np.geomspace(0.3, 3, 12)[:, None]  # not unit: strengths vary 10x
    last, words = engine.prepare(PROMPTS), engine.prepare(PROMPTS, UNITS)
    # this random model's KL saturates near 0.011: a target on its rising part
    matched = match_kl(engine, last, units, 1.0, np.full(12, 0.05), 0.004, precision=1e-4, bounds=(1e-4, 100.0))
    reached = matched.kl.mean(1)
    assert np.abs(reached - 0.004).max() <= 1e-4 and matched.passes <= 8
    assert matched.coefficient.max() / matched.coefficient.min() > 5  # each its own coefficient
    full = engine.score(words, (units * matched.coefficient[:, None]).astype(np.float32))
    np.testing.assert_allclose(full["kl"].mean(1), reached, atol=1e-5)
    capped = match_kl(engine, last, units[:2], 1.0, np.full(2, 0.05), 0.004, precision=1e-4, bounds=(1e-4, 2e-4))
    assert (capped.coefficient == 2e-4).all() and (capped.kl.mean(1) < 0.004).all() and capped.passes == 1


def test_word_end_mask_reads_the_tokenizer():
    from harness.steering.study import word_end_mask

    class Tok:
        all_special_ids = [3]
        pieces = ["Par", "is", " Paris", ",", "\n", "ian", "\ufffd", "", "é", "_x"]

        def __len__(self):
            return len(self.pieces)

        def batch_decode(self, ids):
            return [self.pieces[i[0]] for i in ids]

    mask = word_end_mask(Tok(), 12)
    assert mask.tolist() == [False, False, True, True, True, False, False, True, False, False, False, False]


def test_hook_layer_names_the_block_and_refuses_other_hooks():
    assert hook_layer("blocks.14.hook_resid_post") == 14
    with pytest.raises(ConfigError, match="blocks.L.hook_resid_post"):
        hook_layer("blocks.14.hook_mlp_out")


# ---- lexicons ------------------------------------------------------------------------------------
class SpaceTokenizer:
    """Splits into 2-character pieces so that words are multi-token."""

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, text, add_special_tokens=False):
        pieces = [text[i:i + 2] for i in range(0, len(text), 2)]
        return {"input_ids": [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]}


def test_lexicon_scores_whole_words_with_their_variants():
    assert word_variants("merci") == [" merci", "Merci", "merci"]
    assert word_variants("France") == [" France", "France"]
    lexicon = Lexicon.build(SpaceTokenizer(), ["France", "merci"])
    assert lexicon.variants == [" France", "France", " merci", "Merci", "merci"]
    assert all(len(u) > 1 for u in lexicon.units)  # whole words, not their first token


def test_per_word_scores_sum_each_words_spellings():
    """The ledger's per-word record: a word's probability is the sum over its spellings, its shift the
    mean per-prompt change of that sum's log."""
    lexicon = Lexicon.build(SpaceTokenizer(), ["France", "merci"])
    assert lexicon.unit_words == ["France", "France", "merci", "merci", "merci"]
    base = np.log(np.array([[0.01, 0.03, 0.001, 0.001, 0.002], [0.02, 0.02, 0.002, 0.0, 0.002]]) + 1e-30)
    steered = base + np.log(np.array([[2.0] * 2 + [1.0] * 3, [4.0] * 2 + [1.0] * 3]))
    words = {w["word"]: w for w in lexicon.per_word(base, steered)}
    assert words["France"]["base_probability"] == pytest.approx(0.04)
    assert words["France"]["anchor_shift"] == pytest.approx(np.mean(np.log([2.0, 4.0])))
    assert words["merci"]["base_probability"] == pytest.approx(0.004) and words["merci"]["anchor_shift"] == \
        pytest.approx(0.0)


def test_control_mixtures_are_matched_to_the_sub_features_on_cosine():
    """Each mixture draws, per sub-feature, a non-sub-feature row of about its cosine to the anchor (random
    rows are nearly orthogonal; sub-features are aligned by construction), with no row twice in a set."""
    rng = np.random.default_rng(0)
    cos = np.concatenate([rng.normal(0.0, 0.05, 4000), rng.uniform(0.3, 0.8, 60)])
    subs = [4000, 4010, 4020, 4030, 4040]
    candidates = np.setdiff1d(np.arange(cos.size), subs)
    mixtures = cosine_matched_rows(cos, subs, candidates, 19, np.random.default_rng(1))
    assert len(mixtures) == 19 and len({tuple(m) for m in mixtures}) > 1  # drawn, not one fixed set
    for rows in mixtures:
        assert len(set(rows)) == len(rows) == len(subs) and not set(rows) & set(subs)
        assert np.max(np.abs(cos[rows] - cos[subs])) < 0.2  # each row near its sub-feature's cosine
    random_rows = rng.choice(candidates, size=len(subs), replace=False)
    assert np.mean(cos[np.array(mixtures)]) > np.mean(cos[random_rows]) + 0.3


def test_log_mass_is_the_log_of_summed_probabilities():
    lp = np.log(np.array([[0.1, 0.2, 0.05]]))
    assert log_mass(lp)[0] == pytest.approx(np.log(0.35))


def test_profile_lexicons_score_no_unit_under_three_characters_and_share_nothing():
    from harness.core.config import load_profile

    for name in ("smollm2-135m", "gemma-2-2b"):
        cfg = load_profile(name).steering
        concept = {v.strip().casefold() for w in cfg.concept_words for v in word_variants(w)}
        other = {v.strip().casefold() for w in cfg.other_concept_words for v in word_variants(w)}
        assert min(len(u) for u in concept | other) >= MIN_UNIT_CHARS
        assert not concept & other


def test_lexicon_errors_name_the_word():
    with pytest.raises(ConfigError, match="'B'.*shorter than 3"):
        check_lexicons(["France", "B"], [])
    with pytest.raises(ConfigError, match="share.*'paris'"):
        check_lexicons(["Paris"], ["paris", "Berlin"])
    with pytest.raises(ConfigError, match="random_seeds is gone; use steering.random_directions"):
        SteeringConfig.from_dict({"concept_words": ["France"], "random_seeds": 3})
    with pytest.raises(ConfigError, match="steering.positions"):
        SteeringConfig.from_dict({"concept_words": ["France"], "positions": "prompt"})
    with pytest.raises(ConfigError, match="without surrounding spaces"):
        check_lexicons([" Paris"], [])
    with pytest.raises(ConfigError, match="other_concept and steering.other_concept_words go together"):
        SteeringConfig.from_dict({"concept_words": ["France"], "other_concept": "Germany"})


def test_word_share_counts_whole_words_only_and_each_word_once():
    words = ["France", "Paris", "vous"]
    assert word_share("Allez, vous aimez Paris et la France.", words) == pytest.approx(3 / 7)
    assert word_share("Parisian frances", words) == 0.0
    assert word_share("", words) == 0.0
    assert word_share("la Côte d'Azur", ["Côte d'Azur"]) == pytest.approx(2 / 3)
    # a phrase and its first word: the words are counted once, never a share above 1
    assert word_share("Paris Saint-Germain won", ["Paris", "Paris Saint-Germain"]) == pytest.approx(2 / 3)
    assert word_share("Île-de-France et Paris", ["Île-de-France", "Paris"]) == pytest.approx(2 / 3)


def test_words_that_extend_others_are_different_words():
    """Scored as whole words, " Paris" and " Parisian" are disjoint events: both are kept. Only the very
    same spelling in both lexicons would count one mass twice."""
    tokenizer = SpaceTokenizer()
    lexicon = Lexicon.build(tokenizer, ["Paris", "Parisian"])
    assert " Parisian" in lexicon.variants and " Paris" in lexicon.variants
    from harness.steering.study import check_units_apart
    check_units_apart(Lexicon.build(tokenizer, ["Paris"]), Lexicon.build(tokenizer, ["Parisienne"]))
    with pytest.raises(ConfigError, match="are the same tokens"):
        check_units_apart(Lexicon.build(tokenizer, ["Paris"]), Lexicon.build(tokenizer, ["Paris"]))


# ---- coefficients and ranks ----------------------------------------------------------------------
def test_matched_alpha_interpolates_in_log_log_and_clips_to_the_grid():
    coefficients = [0.1, 0.2, 0.4]
    kls = [0.02, 0.08, 0.32]  # KL = 2 alpha^2
    assert matched_coefficient(coefficients, kls, 0.08) == pytest.approx(0.2)
    assert matched_coefficient(coefficients, kls, 0.045) == pytest.approx(0.15, rel=1e-6)  # exact on a power law
    assert matched_coefficient(coefficients, kls, 0.001) == 0.1
    assert matched_coefficient(coefficients, kls, 5.0) == 0.4


def test_secant_alpha_is_exact_on_a_power_law():
    def kl(a):
        return 3 * a ** 2.5

    a1 = secant_coefficient(0.1, kl(0.1), 0.1, kl(0.1), 0.5, (1e-3, 10))
    a2 = secant_coefficient(0.1, kl(0.1), a1, kl(a1), 0.5, (1e-3, 10))
    assert kl(a2) == pytest.approx(0.5, rel=1e-6)


def test_rank_test_holds_at_its_level_when_the_anchor_is_one_more_control():
    rng = np.random.default_rng(0)
    held = 0
    for _ in range(4000):
        draws = rng.normal(size=100)
        verdict, p, _ = rank_against_controls(draws[0], draws[1:], 0.05)
        held += verdict == "held"
        assert 0.01 <= p <= 1
    assert held / 4000 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)
    assert rank_against_controls(10.0, rng.normal(size=99), 0.05)[0] == "held"
    assert rank_against_controls(-1.0, rng.normal(size=99), 0.05)[0] == "refuted"
    assert rank_against_controls(10.0, rng.normal(size=9), 0.05)[0] == "inconclusive"  # p >= 0.1 at best
    assert rank_against_controls(float("nan"), rng.normal(size=99), 0.05)[0] == "inconclusive"
    assert rank_against_controls(10.0, [*rng.normal(size=98), float("nan")], 0.05)[0] == "inconclusive"
    # refuted on counts: for an odd N exactly "no better than the median"; a control replaced by any
    # value still below the direction's (a screened bound) never changes the verdict
    for n in (19, 20, 98, 99):
        controls = rng.normal(size=n)
        for value in np.linspace(-2, 2, 41):
            verdict, p, beaten = rank_against_controls(value, controls, 0.05)
            if n % 2:
                assert (verdict == "refuted") == (value <= np.median(controls))
            below = controls < value
            raised = np.where(below, (controls + value) / 2, controls)  # bounds between truth and value
            assert rank_against_controls(value, raised, 0.05) == (verdict, p, beaten)


# ---- steering claims on a planted study ----------------------------------------------------------
@pytest.fixture(scope="module")
def planted_analysis():
    from tests import planted
    return planted.analysis(effect=True)


def steering_spec(**params):
    from harness.core.config import ClaimSpec
    return ClaimSpec(family="steering", name="t", statement="planted", params=params)


def verdict(analysis, study, **params):
    from harness.engine.claims_engine import evaluate
    return evaluate(steering_spec(**params), analysis, steering=study)


def test_planted_steering_claims_decide_for_the_planted_reason(planted_analysis):
    from tests.planted import steering_study

    study = steering_study()
    record = verdict(planted_analysis, study, kind="beats_random")
    ranked = record.details["ranks"]["random"]
    assert record.verdict == "held" and ranked["beaten_by"] == 0 and ranked["n"] + ranked["off_budget"] == 99
    assert f"0 of {ranked['n']} random directions at the budget do as well" in record.reason
    assert verdict(planted_analysis, study, kind="specificity").verdict == "held"
    diffmean = verdict(planted_analysis, study, kind="versus_baseline", baseline="diffmean")
    assert diffmean.verdict == "refuted" and "DiffMean" in diffmean.reason  # DiffMean is planted 0.3 ahead
    assert verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting").verdict == "refuted"
    assert verdict(planted_analysis, study, kind="multi_vs_single").verdict == "not evaluated"  # no multi planted


def test_prompting_is_compared_with_the_anchor_at_the_instructions_kl(planted_analysis):
    """An instruction has no coefficient: the study pushes the anchor to prompting's own KL, and the claim
    compares the two there, checks that they sit at one KL, and says when the instruction names a word."""
    from tests.planted import steering_study

    study = steering_study()
    record = verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting")
    assert record.details["compared"] == "coarse-5 at prompting's KL" and record.details["coefficient"] == 0.4
    assert record.verdict == "refuted" and "the instruction itself names France" in record.reason  # planted -0.2
    at = study.per_prompt["coarse-5 at prompting's KL"]
    at.concept = (np.asarray(study.per_prompt["prompting"].concept) + 0.3).tolist()
    assert verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting").verdict == "held"
    # Off prompting's KL (0.6 vs 1.2 nats): a weaker push is no comparison, whatever the shift says.
    study.kl_reached["coarse-5 at prompting's KL"] = 0.6
    off = verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting")
    assert off.verdict == "inconclusive" and "vs prompting's 1.20" in off.reason
    # The anchor's own KL is not part of this comparison: off the budget, the verdict stands.
    study = steering_study()
    study.kl_reached["coarse-5"] = 2.0
    record = verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting")
    assert record.verdict == "refuted" and "not at" not in record.reason
    # A study from before the anchor was scored at prompting's KL: not evaluated, never an unmatched verdict.
    study.directions = [d for d in study.directions if d.kind != "anchor_at_prompting_kl"]
    old = verdict(planted_analysis, study, kind="versus_baseline", baseline="prompting")
    assert old.verdict == "not evaluated"


def test_specificity_tests_both_parts_and_needs_a_working_contrast(planted_analysis):
    """The statement has two parts: under the anchor, concept words move more than the other words; and
    more so than under the other concept's direction. And that direction must raise its own words."""
    from tests.planted import steering_study

    study = steering_study()
    record = verdict(planted_analysis, study, kind="specificity")
    assert record.details["anchor_prefers_concept_words"]["verdict"] == "held"
    assert record.details["other_raises_own_words"]["ci_low"] > 0
    # The anchor moves Germany words more than France words: the first part fails, whatever the 2 x 2 says.
    france = np.asarray(study.per_prompt["coarse-5"].concept)
    study.per_prompt["coarse-5"].other = (france + 0.3).tolist()
    study.per_prompt["coarse-7 (Germany)"].other = np.full(france.size, 2.0).tolist()
    first = verdict(planted_analysis, study, kind="specificity")
    assert first.verdict == "refuted" and first.details["anchor_prefers_concept_words"]["verdict"] == "refuted"
    # A Germany direction that lowers Germany words is no contrast: not evaluated, and the reason says so.
    study = steering_study()
    germany = study.per_prompt["coarse-7 (Germany)"]
    germany.other = (-np.abs(np.asarray(germany.other))).tolist()
    inert = verdict(planted_analysis, study, kind="specificity")
    assert inert.verdict == "not evaluated" and "does not raise Germany words" in inert.reason


def test_an_anchor_no_better_than_its_controls_does_not_hold(planted_analysis):
    from tests.planted import steering_study

    study = steering_study()
    study.controls.on_control_prompts["coarse-5"] = -0.5  # below the controls' median
    record = verdict(planted_analysis, study, kind="beats_random")
    assert record.verdict == "refuted" and "rank p = 1" in record.reason


def test_multi_ranks_among_cosine_matched_mixtures_and_must_match_kl(planted_analysis):
    from tests.planted import steering_study

    study = steering_study()
    anchor = np.asarray(study.per_prompt["coarse-5"].concept)
    n = len(anchor)
    study.directions += [DirectionInfo(kind="multi", name="multi"), DirectionInfo(kind="aligned_mixture", name="aligned")]
    study.per_prompt["multi"] = PromptScores(concept=(anchor + 0.2).tolist(), other=[0.0] * n, kl=[0.5] * n)
    study.per_prompt["aligned"] = PromptScores(concept=(anchor + 0.2).tolist(), other=[0.0] * n, kl=[0.5] * n)
    study.kl_reached.update(multi=0.5, aligned=0.5)
    study.controls.by_kind["control_mixture"] = ControlKind(concept_shift=[0.0] * 19, kl=[0.5] * 19)
    study.controls.on_control_prompts["multi"] = 1.0
    record = verdict(planted_analysis, study, kind="multi_vs_single")
    # The aligned mixture (one fixed set, no distribution) is described, never required.
    assert record.verdict == "held" and "descriptive: multi minus (aligned)" in record.reason
    assert record.details["rank"] == {"p": 0.05, "beaten_by": 0, "n": 19, "off_budget": 0}
    # Mixtures off the KL budget leave the rank; with fewer than 19 left it cannot reach p <= 0.05.
    study.controls.by_kind["control_mixture"].kl = [0.5] * 18 + [0.9]
    record = verdict(planted_analysis, study, kind="multi_vs_single")
    assert record.verdict == "inconclusive" and "1 off the budget left out" in record.reason
    study.controls.by_kind["control_mixture"].kl = [0.5] * 19
    study.kl_reached["multi"] = 0.9  # not matched: never held
    record = verdict(planted_analysis, study, kind="multi_vs_single")
    assert record.verdict == "inconclusive" and "not matched" in record.reason


def test_each_controls_own_kl_is_checked_not_their_median(planted_analysis):
    from tests.planted import steering_study

    study = steering_study()
    assert verdict(planted_analysis, study, kind="beats_random").verdict == "held"
    # 90 of the 99 random directions far off the budget: their median is off too, but the point is that
    # each one is checked; 9 at the budget cannot rank the anchor at p <= 0.05 among 19+.
    study.controls.by_kind["random"].kl = [2.0] * 90 + [0.5] * 9
    record = verdict(planted_analysis, study, kind="beats_random")
    assert record.verdict == "inconclusive" and record.details["ranks"]["random"]["off_budget"] == 90
    assert "0 of 9 random directions at the budget do as well" in record.reason
    assert "90 off the budget left out; fewer than min_controls = 19" in record.reason


def test_a_ranked_method_off_the_budget_on_the_control_prompts_is_not_ranked(planted_analysis):
    """The anchor is ranked by its shift on the control prompts: its KL there must sit at the budget like
    every control's, or the rank compares different fluency costs."""
    from harness.outputs.figures import steering_figures
    from tests.planted import steering_study

    study = steering_study()
    anchor = study.first_of_kind("anchor")
    study.controls.on_control_kl = {anchor: 0.5}
    assert verdict(planted_analysis, study, kind="beats_random").verdict == "held"
    study.controls.on_control_kl = {anchor: 0.9}
    record = verdict(planted_analysis, study, kind="beats_random")
    assert record.verdict == "inconclusive" and f"{anchor} on the control prompts at KL 0.90" in record.reason
    assert record.reason.count("on the control prompts at KL") == 1  # ranked among two kinds, named once
    # a study that recorded no KL for its controls still draws
    study.controls.by_kind["random"].kl = []
    assert {f["id"] for f in steering_figures(study.ledger_view())} >= {"controls", "pareto"}


def test_screened_controls_rank_as_below_and_their_median_is_reported_as_a_bound(planted_analysis):
    """A screened control holds a bound below the anchor: the rank and verdict are those of its (lower)
    true shift, and the reason says the median is only bounded."""
    from tests.planted import steering_study

    study = steering_study()
    block = study.controls.by_kind["random"]
    block.kl = [study.kl_budget] * len(block.concept_shift)  # every control at the budget
    exact = verdict(planted_analysis, study, kind="beats_random")
    mine = study.controls.on_control_prompts[study.first_of_kind("anchor")]
    below = [i for i, x in enumerate(block.concept_shift) if x < mine]
    # replace half the controls below the anchor by bounds between their shift and the anchor's
    block.exact = [i not in below[::2] for i in range(len(block.concept_shift))]
    block.concept_shift = [(x + mine) / 2 if i in below[::2] else x for i, x in enumerate(block.concept_shift)]
    record = verdict(planted_analysis, study, kind="beats_random")
    assert record.verdict == exact.verdict and record.details["ranks"]["random"]["p"] == exact.details["ranks"]["random"]["p"]
    assert record.details["ranks"]["random"]["screened"] == len(below[::2]) > 0
    assert f"{len(below[::2])} bounded by the screen" in record.reason and "their median <=" in record.reason
    assert "bounded by the screen" not in exact.reason


def test_more_targeted_compares_the_concept_minus_other_gap_at_matched_kl(planted_analysis):
    from tests.planted import steering_study

    study = steering_study()
    assert verdict(planted_analysis, study, kind="more_targeted").verdict == "not evaluated"  # no multi
    anchor = study.per_prompt["coarse-5"]
    n = len(anchor.concept)
    gap = np.asarray(anchor.concept) - np.asarray(anchor.other)
    study.directions.append(DirectionInfo(kind="multi", name="multi"))
    study.per_prompt["multi"] = PromptScores(concept=(np.asarray(anchor.concept) + 0.5).tolist(),
                                             other=(np.asarray(anchor.other) + 0.2).tolist(), kl=[0.5] * n)
    study.kl_reached["multi"] = 0.5
    record = verdict(planted_analysis, study, kind="more_targeted")
    assert record.verdict == "held" and record.effect.value == pytest.approx(0.3)
    # Multi raises both lexicons alike: no more targeted, whatever it does to concept words alone.
    study.per_prompt["multi"].other = (np.asarray(anchor.other) + 0.5 + 0.05 * np.sin(np.arange(n))).tolist()
    assert verdict(planted_analysis, study, kind="more_targeted").verdict != "held"
    study.kl_reached["multi"] = 0.9
    assert verdict(planted_analysis, study, kind="more_targeted").verdict == "inconclusive"
    assert gap.size == n


def test_unknown_baseline_is_a_usage_error_naming_the_choices(tmp_path):
    from harness.core.config import load_profile
    from harness.core.paths import PROFILES_DIR

    text = (PROFILES_DIR / "smollm2-135m.toml").read_text().replace('baseline = "diffmean"', 'baseline = "diffmeen"')
    path = tmp_path / "p.toml"
    path.write_text(text)
    (tmp_path / "p.anchors.toml").write_text((PROFILES_DIR / "smollm2-135m.anchors.toml").read_text())
    with pytest.raises(ConfigError, match="'diffmeen'.*'diffmean', 'prompting'"):
        load_profile(path)


def test_a_few_rare_events_need_the_exact_test_to_hold(planted_analysis):
    """Concept words in 3 of 64 steered samples, none unsteered: the bootstrap alone would say > 0."""
    from tests.planted import steering_study

    study = steering_study()
    steered = [0.0] * 61 + [0.05, 0.03, 0.1]
    study.samples.concept_share = {"coarse-5": steered, "unsteered": [0.0] * 64}
    record = verdict(planted_analysis, study, kind="concept_rate")
    assert record.verdict == "inconclusive" and "sign-flip test does not confirm" in record.reason
    study.samples.concept_share["coarse-5"] = [0.02] * 40 + [0.0] * 24
    assert verdict(planted_analysis, study, kind="concept_rate").verdict == "held"


def test_report_draws_every_steering_figure_with_one_colour_per_method():
    from harness.outputs.figures import METHOD_COLOURS, steering_figures as figure_steering
    from tests.planted import steering_study

    view = steering_study().ledger_view()
    assert "per_prompt" not in view and "concept_share" not in view["samples"]  # arrays stay in the cache
    figures = {f["id"]: f for f in figure_steering(view)}
    assert set(figures) == {"dose", "pareto", "controls", "twobytwo", "steerability", "shares"}
    anchor_colours = {trace["line"]["color"] for f in ("dose", "pareto") for trace in figures[f]["data"]
                      if trace.get("name") == "coarse-5"}
    assert anchor_colours == {METHOD_COLOURS["anchor"]}
    assert any("prompting" in (t.get("name") or "") for t in figures["dose"]["data"])
    assert any("random directions" in (t.get("name") or "") for t in figures["dose"]["data"])
