"""Benchmarks (pytest-benchmark): the vectorised permutation test against a per-feature loop,
in one run, so the table shows the ratio. Sizes: the embedded profile's coarse family
(2,048 features, 200 prompts) at 1,000 shuffles."""

from __future__ import annotations

import numpy as np
import pytest

from harness.statistics.stats import two_sample_permutation_test

N_PROMPTS, N_FEATURES, N_PERMUTATIONS = 200, 2048, 1000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = np.where(rng.random((N_PROMPTS, N_FEATURES)) < 0.05, rng.exponential(1.0, (N_PROMPTS, N_FEATURES)), 0.0)
    return x, np.arange(N_PROMPTS) < N_PROMPTS // 2


@pytest.mark.benchmark(group="permutation-test")
def test_vectorised_over_features(benchmark, data):
    x, labels = data
    result = benchmark(two_sample_permutation_test, x, labels, statistic="selectivity",
                       n_resamples=N_PERMUTATIONS, seed=0)
    assert result.p_value.shape == (N_FEATURES,)


@pytest.mark.benchmark(group="permutation-test")
def test_baseline_one_feature_at_a_time(benchmark, data):
    x, labels = data
    subset = x[:, :64]  # a loop over all 2,048 would take minutes; the table scales it by 32

    def loop():
        return [two_sample_permutation_test(subset[:, j], labels, statistic="selectivity",
                                            n_resamples=N_PERMUTATIONS, seed=0).p_value[0]
                for j in range(subset.shape[1])]

    p_values = benchmark.pedantic(loop, rounds=3, iterations=1)
    vectorised = two_sample_permutation_test(subset, labels, statistic="selectivity",
                                             n_resamples=N_PERMUTATIONS, seed=0)
    np.testing.assert_allclose(p_values, vectorised.p_value)  # same answer, same shuffles
