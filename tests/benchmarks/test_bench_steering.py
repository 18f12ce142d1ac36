"""Benchmark (pytest-benchmark): the old steering study against the same measurements on the new
engine, in one run, so the table shows the ratio.

Workload (the old study's settings): its 7 directions (anchor, best fine match, multi, 3 random,
Germany feature) x 5 alphas over all 200 neutral prompts as plain text, scoring the old
first-token concept and other-concept sets and the next-token KL, then 16 prompts x 12 sampled
tokens for 6 directions plus unsteered. The old code (tests/benchmarks/legacy_steering.py, kept
verbatim) reruns all 30 layers per direction and coefficient and recomputes the whole sequence
per sampled token; it also scores KL at every prompt position and the samples' perplexity, which
the new study replaced by KL at the reply's first token (a few percent of its time).

The new engine runs it twice: steering every position (the old semantics: only the layers after
the hook rerun) and steering the reply (the new study's default: the prompt's keys and values are
shared by every direction). The full new study at its own, larger settings is timed in docs/findings.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.core.config import load_profile
from harness.entry.session import ClaimsRun
from harness.steering.engine import SteeringEngine, hook_layer
from tests.benchmarks import legacy_steering

pytestmark = pytest.mark.integration

OLD_CONCEPT = ("France", "French", "Paris", "Parisian", "Lyon", "Marseille", "Bordeaux", "Toulouse", "Normandy",
               "Provence", "Brittany", "Eiffel", "Louvre", "baguette", "croissant", "Bonjour", "merci")
OLD_OTHER = ("Germany", "German", "Berlin", "Munich", "Hamburg", "Bavaria", "Rhine", "Bundestag", "Frankfurt",
             "Cologne")
OLD_CFG = legacy_steering.SteeringConfig(concept_words=OLD_CONCEPT, other_concept="Germany",
                                         other_concept_words=OLD_OTHER)


@pytest.fixture(scope="module")
def run():
    run = ClaimsRun(load_profile("smollm2-135m"), progress=False)
    run.analysis, run.model  # tables, SAEs and model loaded outside the timed calls
    return run


def old_measurements_on_new_engine(run, positions: str) -> dict:
    profile, model = run.profile, run.model
    tokenizer = model.tokenizer
    directions, _ = legacy_steering.build_directions(run, OLD_CFG)
    texts = [p.text for p in run.prompt_sets.neutral]
    prompts = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    concept = legacy_steering.word_token_ids(tokenizer, OLD_CONCEPT)
    other = legacy_steering.word_token_ids(tokenizer, OLD_OTHER)
    radius = run.tables.mean_resid_norm(run.tables.rows("neutral"))
    engine = SteeringEngine(model, hook_layer(profile.model.hook), positions=positions)
    prepared = engine.prepare(prompts, [(i,) for i in concept + other])
    vectors = np.stack([d.vector * a * radius for d in directions for a in OLD_CFG.alphas]).astype(np.float32)
    scores = engine.score(prepared, vectors)
    samples = {}
    for d in [None, *directions[:6]]:
        vector = None if d is None else torch.tensor(d.vector * OLD_CFG.alphas[2] * radius, dtype=torch.float32)
        samples[getattr(d, "name", "unsteered")] = engine.sample(prompts[:OLD_CFG.generation_prompts], vector, seed=0,
                                                                 max_new_tokens=OLD_CFG.max_new_tokens)
    return {"kl": scores["kl"], "unit_logprob": scores["unit_logprob"], "samples": samples}


@pytest.mark.benchmark(group="steering: the old study's workload")
def test_new_engine_steering_every_position(benchmark, run):
    out = benchmark.pedantic(old_measurements_on_new_engine, args=(run, "all"), rounds=1, iterations=1)
    assert out["kl"].shape == (35, 200) and len(out["samples"]) == 7


@pytest.mark.benchmark(group="steering: the old study's workload")
def test_new_engine_steering_the_reply(benchmark, run):
    out = benchmark.pedantic(old_measurements_on_new_engine, args=(run, "reply"), rounds=1, iterations=1)
    assert out["kl"].shape == (35, 200) and np.isfinite(out["unit_logprob"]).all()


@pytest.mark.benchmark(group="steering: the old study's workload")
def test_old_study_baseline(benchmark, run):
    study = benchmark.pedantic(legacy_steering.steering_study, args=(run, OLD_CFG), kwargs={"progress": False},
                               rounds=1, iterations=1)
    assert len(study["per_prompt"]) == 7
