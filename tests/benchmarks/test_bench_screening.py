"""Benchmark (pytest-benchmark): the steering study's control stage scored in full (study version 5)
against the screen that replaced it (version 6), in one run, so the table shows the ratio.

Workload: the embedded profile's 12 control prompts in the chat template, its concept lexicon as whole
words, 48 random directions at coefficient 0.2 (about the study's matched coefficients), the anchor at
0.2 giving the floor. In full, every direction runs the layers after the hook over every word position
(the whole trie); screened, every direction runs over the words' first two tokens only (a bound), and
only those whose bound reaches the floor are scored in full. Both give the same rank of the anchor
(tests/test_steering.py checks that on a small model, control by control). On the embedded study's
217 controls the screen kept 41 for full scoring (docs/findings.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.config import load_profile
from harness.entry.session import ClaimsRun
from harness.steering.engine import SteeringEngine, causal_lm, hook_layer
from harness.steering.study import (Lexicon, encode_prompts, log_mass, screen_units, screened_shifts, unit,
                                   unsteered_units, word_end_mask)

pytestmark = pytest.mark.integration

N_DIRECTIONS, N_PROMPTS = 48, 12


@pytest.fixture(scope="module")
def workload():
    run = ClaimsRun(load_profile("smollm2-135m"), progress=False)
    profile, model, cfg = run.profile, run.model, run.profile.steering
    tokenizer = model.tokenizer
    texts = [p.text for p in run.prompt_sets.neutral][:N_PROMPTS]
    prompts, _ = encode_prompts(tokenizer, texts, chat_template=True, max_tokens=profile.model.max_tokens)
    lexicon = Lexicon.build(tokenizer, cfg.concept_words)
    engine = SteeringEngine(model, hook_layer(profile.model.hook), positions=cfg.positions,
                            word_end=word_end_mask(tokenizer, causal_lm(model).lm_head.weight.shape[0]))
    prefix = SteeringEngine(model, hook_layer(profile.model.hook), positions=cfg.positions)
    words, cut = engine.prepare(prompts, lexicon.units), prefix.prepare(prompts, screen_units(lexicon.units))
    base = log_mass(unsteered_units(words))
    radius = run.tables.mean_resid_norm(run.tables.rows("neutral"))
    rng = np.random.default_rng(0)
    d_model = run.directions["coarse"].shape[1]
    vectors = np.stack([unit(rng.standard_normal(d_model)) * 0.2 * radius for _ in range(N_DIRECTIONS)]).astype(np.float32)
    anchor = unit(run.directions["coarse"][profile.anchors.coarse[0]]) * 0.2 * radius
    floor = float((log_mass(engine.score(words, anchor[None].astype(np.float32))["unit_logprob"]) - base[None]).mean())
    return engine, prefix, words, cut, vectors, base, floor


@pytest.mark.benchmark(group="steering: the control stage")
def test_controls_scored_in_full_version_5(benchmark, workload):
    engine, _, words, _, vectors, base, floor = workload
    scores = benchmark.pedantic(engine.score, args=(words, vectors), rounds=1, iterations=1)
    assert scores["unit_logprob"].shape == (N_DIRECTIONS, N_PROMPTS, len(words.units))


@pytest.mark.benchmark(group="steering: the control stage")
def test_controls_screened_version_6(benchmark, workload):
    engine, prefix, words, cut, vectors, base, floor = workload

    def screened():
        bound = log_mass(prefix.score(cut, vectors)["unit_logprob"])
        return screened_shifts(engine, words, vectors, bound, base, floor)

    shift, exact = benchmark.pedantic(screened, rounds=1, iterations=1)
    assert shift.shape == (N_DIRECTIONS,)
    assert (shift[~exact] < floor).all()
    benchmark.extra_info["scored_in_full"] = int(exact.sum())
