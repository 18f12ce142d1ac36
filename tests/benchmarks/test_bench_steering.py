"""Benchmark (pytest-benchmark): the steering study against the implementation it replaced, in one
run, at the old study's settings (5 alphas, 3 random directions, all 200 neutral prompts, plain
prompts, steering at every position, 16 samples x 12 tokens), so the table shows the ratio.

The old study (tests/benchmarks/legacy_steering.py, kept verbatim from before the rewrite) reruns
all 30 layers for every direction and coefficient and recomputes the whole sequence for every
sampled token. The new one runs the layers up to the hook once, batches directions, and samples
with a KV cache; it also scores whole words and runs its extra controls and baselines.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.config import load_profile
from harness.session import ClaimsRun
from harness.steering import SteeringConfig, steering_study
from tests.benchmarks import legacy_steering

pytestmark = pytest.mark.integration

OLD_CONCEPT = ("France", "French", "Paris", "Parisian", "Lyon", "Marseille", "Bordeaux", "Toulouse", "Normandy",
               "Provence", "Brittany", "Eiffel", "Louvre", "baguette", "croissant", "Bonjour", "merci")
OLD_OTHER = ("Germany", "German", "Berlin", "Munich", "Hamburg", "Bavaria", "Rhine", "Bundestag", "Frankfurt",
             "Cologne")


@pytest.fixture(scope="module")
def run():
    run = ClaimsRun(load_profile("smollm2-135m"), progress=False)
    run.analysis, run.model  # tables, SAEs and model loaded outside the timed calls
    return run


def today_settings() -> SteeringConfig:
    """The new study configured like the old one: same alphas, 3 random directions, every discovery prompt
    for coefficients, every confirmation prompt for the random comparison, 16 x 12 samples."""
    cfg = SteeringConfig.from_dict(load_profile("smollm2-135m").steering)
    return dataclasses.replace(cfg, alphas=(0.05, 0.1, 0.2, 0.4, 0.8), positions="all", chat_template=False,
                               concept_words=OLD_CONCEPT, other_concept_words=OLD_OTHER, random_directions=3,
                               random_rows=1, control_mixtures=1, band_directions=3, calibration_prompts=100,
                               control_prompts=100, generation_prompts=16, max_new_tokens=12, examples=3)


@pytest.mark.benchmark(group="steering-study")
def test_new_study_at_the_old_settings(benchmark, run):
    study = benchmark.pedantic(steering_study, args=(run, today_settings()), kwargs={"progress": False},
                               rounds=1, iterations=1)
    assert study["n_prompts"]["confirmation"] == 100 and len(study["controls"]["by_kind"]["random"]["names"]) == 3


@pytest.mark.benchmark(group="steering-study")
def test_old_study_baseline(benchmark, run):
    cfg = legacy_steering.SteeringConfig(concept_words=OLD_CONCEPT, other_concept="Germany",
                                         other_concept_words=OLD_OTHER)
    study = benchmark.pedantic(legacy_steering.steering_study, args=(run, cfg), kwargs={"progress": False},
                               rounds=1, iterations=1)
    assert len(study["per_prompt"]) >= 5
