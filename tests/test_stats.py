"""Unit and property tests of harness.statistics.stats: references, exact cases, invariants, calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.core.errors import ConfigError
from harness.statistics.stats import (
    auroc,
    clopper_pearson,
    decide,
    benjamini_hochberg,
    bootstrap_interval,
    correlation_permutation_test,
    cosine_matrix,
    paired_sign_flip_test,
    pearson,
    selectivity,
    two_sample_permutation_test,
)


def mc_tolerance(p: float, n: int) -> float:
    """Four Monte Carlo standard errors of a p-value estimated from n resamples, plus one step."""
    return 4 * np.sqrt(max(p * (1 - p), 1e-4) / n) + 2 / n


def test_two_sample_matches_scipy_permutation_test():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    labels = np.arange(60) < 30
    x[labels, 0] += 0.7
    x[labels, 1] += 0.2
    ours = two_sample_permutation_test(x, labels, n_resamples=20_000, seed=1)
    for j in range(4):
        ref = ss.permutation_test((x[labels, j], x[~labels, j]), lambda a, b, axis: a.mean(axis) - b.mean(axis),
                                  n_resamples=20_000, alternative="greater", vectorized=True, random_state=2)
        assert abs(ours.p_value[j] - ref.pvalue) < mc_tolerance(ref.pvalue, 20_000)
        assert ours.statistic[j] == pytest.approx(ref.statistic)


def test_correlation_matches_scipy_permutation_test():
    rng = np.random.default_rng(3)
    y = rng.normal(size=40)
    x = rng.normal(size=(40, 3))
    x[:, 0] += 0.5 * y
    ours = correlation_permutation_test(y, x, n_resamples=20_000, seed=4)
    for j in range(3):
        ref = ss.permutation_test((y, x[:, j]), lambda a, b: ss.pearsonr(a, b)[0], permutation_type="pairings",
                                  n_resamples=20_000, alternative="greater", random_state=5)
        assert abs(ours.p_value[j] - ref.pvalue) < mc_tolerance(ref.pvalue, 20_000)
        assert ours.statistic[j] == pytest.approx(ss.pearsonr(y, x[:, j])[0])


def test_exact_small_case_matches_full_enumeration():
    """Six prompts, three per group: all 20 relabelings give the exact p; ours converges to it."""
    x = np.array([5.0, 4.0, 3.0, 1.0, 0.5, 0.0])
    labels = np.array([True, True, True, False, False, False])
    observed = x[labels].mean() - x[~labels].mean()
    null = [x[list(c)].mean() - x[[i for i in range(6) if i not in c]].mean()
            for c in itertools.combinations(range(6), 3)]
    exact = np.mean(np.array(null) >= observed - 1e-12)
    assert exact == pytest.approx(1 / 20)
    ours = two_sample_permutation_test(x, labels, n_resamples=50_000, seed=0)
    assert abs(ours.p_value[0] - exact) < mc_tolerance(exact, 50_000)


def test_p_value_formula_counts_ties_and_adds_one():
    """All-equal data: every shuffle ties the observed statistic, so p = (1 + B) / (1 + B) = 1."""
    result = two_sample_permutation_test(np.ones((10, 2)), np.arange(10) < 5, n_resamples=99, seed=0)
    assert np.all(result.p_value == 1.0)
    separated = two_sample_permutation_test(np.r_[np.ones(20) * 9, np.zeros(20)], np.arange(40) < 20,
                                            n_resamples=99, seed=0)
    assert separated.p_value[0] == pytest.approx(1 / 100)


def test_batches_do_not_change_the_result():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=(50, 7))
    labels = np.arange(50) < 20
    whole = two_sample_permutation_test(x, labels, n_resamples=500, seed=9, statistic="selectivity")
    for batch in (1, 37, 499, 500):
        pieces = two_sample_permutation_test(x, labels, n_resamples=500, seed=9, statistic="selectivity", batch=batch)
        np.testing.assert_allclose(whole.p_value, pieces.p_value)
    strata = np.where(np.arange(50) < 25, "a", "b")
    y = rng.exponential(size=50)
    ref = correlation_permutation_test(y, x, strata=strata, n_resamples=300, seed=4)
    for batch in (1, 64):
        again = correlation_permutation_test(y, x, strata=strata, n_resamples=300, seed=4, batch=batch)
        np.testing.assert_allclose(ref.p_value, again.p_value)


def test_same_shuffles_for_every_feature():
    """Vectorised over features = each column gets the p it would get alone with the same seed."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))
    labels = np.arange(30) < 15
    together = two_sample_permutation_test(x, labels, n_resamples=300, seed=5)
    for j in range(5):
        alone = two_sample_permutation_test(x[:, j], labels, n_resamples=300, seed=5)
        assert alone.p_value[0] == together.p_value[j]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_resamples": 0}, "n_resamples must be >= 1"),
    ({"alternative": "bigger"}, "unknown alternative 'bigger'; valid choices: 'greater', 'less', 'two-sided'"),
    ({"statistic": "median"}, "unknown statistic 'median'; valid choices: 'mean_difference', 'selectivity'"),
    ({"seed": None}, "seed is required"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    args = {"n_resamples": 10, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        two_sample_permutation_test(np.zeros((4, 1)), np.array([1, 1, 0, 0], bool), **args)


def test_one_group_is_an_error():
    with pytest.raises(ConfigError, match="both groups need members; got 4 in group 1 and 0 in group 0"):
        two_sample_permutation_test(np.zeros((4, 1)), np.ones(4, bool), n_resamples=10, seed=0)


def test_nan_is_an_error():
    with pytest.raises(ConfigError, match="NaN or infinite"):
        two_sample_permutation_test(np.array([[np.nan], [1], [2], [3]]), np.array([1, 1, 0, 0], bool),
                                    n_resamples=10, seed=0)


def test_p_values_uniform_under_the_null():
    """Over many null datasets, p-values are uniform (KS test), and the rejection rate is alpha."""
    rng = np.random.default_rng(11)
    p_values = []
    for i in range(400):
        x = rng.normal(size=(24, 1))
        p_values.append(two_sample_permutation_test(x, np.arange(24) < 12, n_resamples=999, seed=i,
                                                    alternative="two-sided").p_value[0])
    p_values = np.array(p_values)
    # Discrete p on a grid of 1/1000: compare with a uniform on (0, 1] with the KS test.
    assert ss.kstest(p_values, "uniform").pvalue > 0.01
    assert abs((p_values <= 0.05).mean() - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 400)


def test_correlation_p_values_uniform_under_the_null():
    rng = np.random.default_rng(12)
    p_values = np.array([correlation_permutation_test(rng.normal(size=30), rng.normal(size=(30, 1)),
                                                      n_resamples=499, seed=i).p_value[0] for i in range(300)])
    assert ss.kstest(p_values, "uniform").pvalue > 0.01


def test_paired_sign_flip_against_scipy():
    rng = np.random.default_rng(4)
    d = rng.normal(0.3, 1, size=(40, 1))
    ours = paired_sign_flip_test(d, n_resamples=20_000, seed=0)
    ref = ss.permutation_test((d[:, 0],), np.mean, permutation_type="samples", n_resamples=20_000,
                              alternative="greater", random_state=1)
    assert abs(ours.p_value[0] - ref.pvalue) < mc_tolerance(ref.pvalue, 20_000)


def test_auroc_matches_mann_whitney():
    rng = np.random.default_rng(5)
    x = rng.poisson(2, size=(50, 3)).astype(float)  # ties on purpose
    labels = np.arange(50) < 20
    ours = auroc(x, labels)
    for j in range(3):
        u = ss.mannwhitneyu(x[labels, j], x[~labels, j]).statistic
        assert ours[j] == pytest.approx(u / (20 * 30))


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    rejected, q = benjamini_hochberg(p, 0.05)
    # sorted: 0.01, 0.03, 0.04, 0.20 -> q_(i) = min over k >= i of p_(k) * m / k
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert rejected.tolist() == [True, False, False, False]


def test_bootstrap_interval_covers_a_known_mean():
    rng = np.random.default_rng(6)
    values = rng.normal(2.0, 1.0, size=400)
    interval = bootstrap_interval(lambda idx: values[idx].mean(-1), [np.arange(400)], n_resamples=2000, seed=0)
    assert interval.low < 2.0 < interval.high
    assert interval.high - interval.low == pytest.approx(2 * 1.96 / 20, rel=0.25)


def test_selectivity_definition():
    assert selectivity(3.0, 1.0) == pytest.approx(0.75)
    assert selectivity(0.0, 0.0) == 0.5
    assert selectivity(2.0, 0.0) == 1.0


# ---------------------------------------------------------------- properties (hypothesis)
activations = arrays(np.float64, st.tuples(st.integers(6, 24), st.integers(1, 4)),
                     elements=st.floats(0, 10, allow_nan=False, allow_infinity=False))


@settings(max_examples=40, deadline=None)
@given(x=activations, seed=st.integers(0, 2**16))
def test_p_in_unit_interval_and_selectivity_bounded(x, seed):
    labels = np.arange(x.shape[0]) < x.shape[0] // 2
    result = two_sample_permutation_test(x, labels, statistic="selectivity", n_resamples=50, seed=seed)
    assert np.all((result.p_value > 0) & (result.p_value <= 1))
    assert np.all((result.statistic >= 0) & (result.statistic <= 1))


@settings(max_examples=30, deadline=None)
@given(x=activations, order_seed=st.integers(0, 2**16))
def test_statistic_invariant_to_prompt_order(x, order_seed):
    labels = np.arange(x.shape[0]) < x.shape[0] // 2
    order = np.random.default_rng(order_seed).permutation(x.shape[0])
    a = two_sample_permutation_test(x, labels, statistic="selectivity", n_resamples=400, seed=0)
    b = two_sample_permutation_test(x[order], labels[order], statistic="selectivity", n_resamples=400, seed=0)
    np.testing.assert_allclose(a.statistic, b.statistic)
    # Two independent Monte Carlo estimates of the same p: their difference has sqrt(2) times the
    # standard error of one (found by hypothesis: 0.589 vs 0.471 at p = 8/15, B = 400).
    tolerance = [np.sqrt(2) * mc_tolerance(p, 400) for p in (a.p_value + b.p_value) / 2]
    assert np.all(np.abs(a.p_value - b.p_value) <= tolerance)


@settings(max_examples=30, deadline=None)
@given(half=arrays(np.float64, st.tuples(st.integers(3, 12), st.integers(1, 3)),
                   elements=st.floats(0, 10, allow_nan=False)))
def test_selectivity_is_half_under_label_symmetry(half):
    """Identical concept and neutral samples: no preference, selectivity exactly 0.5."""
    x = np.vstack([half, half])
    labels = np.arange(x.shape[0]) < half.shape[0]
    result = two_sample_permutation_test(x, labels, statistic="selectivity", n_resamples=10, seed=0)
    np.testing.assert_allclose(result.statistic, 0.5)


@settings(max_examples=40, deadline=None)
@given(a=arrays(np.float64, st.tuples(st.integers(1, 5), st.just(8)), elements=st.floats(-5, 5)),
       b=arrays(np.float64, st.tuples(st.integers(1, 5), st.just(8)), elements=st.floats(-5, 5)))
def test_cosine_bounded_and_symmetric(a, b):
    c = cosine_matrix(a, b)
    assert np.all(np.abs(c) <= 1)
    np.testing.assert_allclose(c, cosine_matrix(b, a).T)


@settings(max_examples=40, deadline=None)
@given(y=arrays(np.float64, st.just(12), elements=st.floats(-5, 5)),
       x=arrays(np.float64, st.just(12), elements=st.floats(-5, 5)))
def test_correlation_bounded_and_symmetric(y, x):
    r_xy = pearson(y, x[:, None])[0]
    r_yx = pearson(x, y[:, None])[0]
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant vector has no correlation: not evaluable, never 0
        assert np.isnan(r_xy) and np.isnan(r_yx)
    else:
        assert -1 <= r_xy <= 1
        assert r_xy == pytest.approx(r_yx, abs=1e-9)


# ---------------------------------------------------------------- pinned examples and new statistics
def test_selectivity_never_leaves_the_unit_interval_pinned():
    """Found by hypothesis: sum(all) - sum(group) came out a few ulps below 0, giving 1.0000000000000002."""
    x = np.zeros((10, 1))
    x[:5, 0] = [3.3, 1e-05, 1e-05, 0.3333333333333333, 0.3]
    result = two_sample_permutation_test(x, np.arange(10) < 5, statistic="selectivity", n_resamples=50, seed=0)
    assert 0 <= result.statistic[0] <= 1
    assert selectivity(-1e-17, 0.0) == 0.5 and selectivity(1.0, -1e-17) == 1.0


def _set_confounded(rng, n=100):
    """Parent and child both prefer the concept set but are independent within each set."""
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    def feature():
        rate = np.where(labels, 0.6, 0.05)
        return np.where(rng.random(2 * n) < rate, rng.gamma(2.0, 1.5, 2 * n), 0.0)
    return feature(), feature(), np.where(labels, "concept", "neutral")


def test_within_set_shuffles_survive_the_set_label():
    """The seed's pooled test calls set-confounded features co-firing; the stratified test does not."""
    rng = np.random.default_rng(21)
    pooled_hits = strata_hits = 0
    n = 300
    for i in range(n):
        parent, child, strata = _set_confounded(rng)
        pooled_hits += correlation_permutation_test(parent, child[:, None], n_resamples=199, seed=i).p_value[0] < 0.05
        strata_hits += correlation_permutation_test(parent, child[:, None], strata=strata, n_resamples=199,
                                                    seed=i).p_value[0] < 0.05
    assert pooled_hits / n > 0.5  # the confound, reproduced
    assert strata_hits / n <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n)


def test_stratified_statistic_is_the_partial_correlation_given_the_set():
    rng = np.random.default_rng(22)
    parent, child, strata = _set_confounded(rng)
    dummies = np.c_[np.ones(strata.size), strata == "concept"]
    resid = lambda v: v - dummies @ np.linalg.lstsq(dummies, v, rcond=None)[0]  # noqa: E731
    expected = ss.pearsonr(resid(parent), resid(child)).statistic
    result = correlation_permutation_test(parent, child[:, None], strata=strata, n_resamples=99, seed=0)
    assert result.statistic[0] == pytest.approx(expected)
    assert pearson(parent, child[:, None], strata=strata)[0] == pytest.approx(expected)


def test_within_strata_shuffles_keep_each_prompt_in_its_set():
    from harness.statistics.stats import _within_strata_permutations

    strata = np.array(list("aaabbbbcc"))
    perms = _within_strata_permutations(np.random.default_rng(0), 50, strata.size, strata)
    assert (strata[perms] == strata).all()
    assert len({tuple(p) for p in perms}) > 10


def test_constant_columns_are_not_evaluable():
    y = np.r_[np.ones(10), np.zeros(10)]
    x = np.c_[np.zeros(20), np.arange(20.0), np.r_[np.ones(10) * 2, np.zeros(10)]]
    strata = np.r_[np.zeros(10), np.ones(10)]
    result = correlation_permutation_test(y, x, strata=strata, n_resamples=99, seed=0)
    assert np.isnan(result.statistic).all() and np.isnan(result.p_value).all()  # y is constant within each set
    plain = correlation_permutation_test(y, x, n_resamples=99, seed=0)
    assert np.isnan(plain.statistic[0]) and np.isnan(plain.p_value[0]) and np.isfinite(plain.p_value[1:]).all()


def test_bootstrap_interval_is_scipys_bca():
    rng = np.random.default_rng(6)
    values = rng.exponential(2.0, size=120)
    ours = bootstrap_interval(lambda idx: values[idx].mean(-1), [np.arange(120)], n_resamples=2000, seed=3)
    ref = ss.bootstrap((values,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(3))
    assert ours.method == "BCa"
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=0.02)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=0.02)


def test_degenerate_bootstrap_is_flagged_not_certain():
    zeros = np.zeros(100)
    interval = bootstrap_interval(lambda idx: zeros[idx].mean(-1), [np.arange(100)], n_resamples=200, seed=0)
    assert interval.note == "every resample gave the same value"


def test_selectivity_interval_bounds_a_set_that_never_fires():
    """0 firings in 100 neutral prompts is compatible with ~3.6% firing: the interval is not [1, 1]."""
    from harness.engine.analysis import selectivity_interval

    rng = np.random.default_rng(8)
    concept = np.where(rng.random(100) < 0.75, rng.gamma(2.0, 1.5, 100), 0.0)
    interval = selectivity_interval(concept, np.zeros(100), level=0.95, n_resamples=999, seed=0)
    assert interval.estimate == 1.0 and interval.high == 1.0
    assert 0.9 < interval.low < 0.99
    assert "Clopper-Pearson" in interval.method


def test_selectivity_lower_bound_coverage_at_the_threshold():
    """True selectivity exactly 0.9 (zero-heavy: concept fires on 50%, neutral on 20%): the 95% lower bound
    lies above the truth in 2.5% +- 2 s.e. of 400 datasets."""
    from harness.engine.analysis import selectivity_interval
    from harness.engine.calibration import by_set

    n, misses = 400, 0
    for child in np.random.SeedSequence(11).spawn(n):
        rng = np.random.default_rng(child)
        x = by_set(rng, (0.5, 3.0), (0.2, 1.5 / 9 / 0.2))
        interval = selectivity_interval(x[:100], x[100:], level=0.95, n_resamples=999,
                                        seed=int(child.generate_state(1)[0]))
        misses += interval.low > 0.9
    se = np.sqrt(0.025 * 0.975 / n)
    assert abs(misses / n - 0.025) <= 2 * se


def test_clopper_pearson_reference():
    low, high = clopper_pearson(0, 100)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 100), rel=1e-6)
    low, high = clopper_pearson(np.array([5, 50]), 100)
    ref = [ss.binomtest(k, 100).proportion_ci(method="exact") for k in (5, 50)]
    np.testing.assert_allclose(low, [r.low for r in ref], rtol=1e-6)
    np.testing.assert_allclose(high, [r.high for r in ref], rtol=1e-6)


@pytest.mark.parametrize(("low", "high", "threshold", "comparison", "verdict"), [
    (0.92, 0.99, 0.9, ">", "held"), (0.85, 0.95, 0.9, ">", "inconclusive"), (0.7, 0.89, 0.9, ">", "refuted"),
    (0.7, 0.9, 0.9, ">", "refuted"), (0.9, 0.95, 0.9, ">=", "held"), (0.01, 0.015, 0.02, "<", "held"),
    (0.01, 0.03, 0.02, "<", "inconclusive"), (0.02, 0.03, 0.02, "<", "refuted"), (np.nan, 1.0, 0.5, ">", "inconclusive"),
])
def test_decide_three_verdicts(low, high, threshold, comparison, verdict):
    assert decide(low, high, threshold, comparison) == verdict


def test_prompts_to_decide_shrinks_the_interval_enough():
    from harness.statistics.stats import Interval, prompts_to_decide

    interval = Interval(estimate=0.95, low=0.88, high=1.02, level=0.95)  # half-width 0.07 at n = 100
    n = prompts_to_decide(interval, 0.9, 100)
    # at n the half-width is 0.07 * sqrt(100 / n): the gap 0.05 is then (1.96 + 0.84) standard errors
    assert 0.05 == pytest.approx((1.96 + 0.8416) * 0.07 / 1.96 * np.sqrt(100 / n), rel=0.02)
    assert prompts_to_decide(Interval(0.9, 0.8, 1.0, 0.95), 0.9, 100) is None


def test_anisotropic_null_respects_the_decoders_crowding():
    """Rows crowded into a cone: an isotropic null would under-state how far chance reaches; ours does not."""
    from harness.engine.calibration import anisotropic_rows
    from harness.statistics.stats import anisotropic_null

    rows = anisotropic_rows(np.random.default_rng(0), 2048, d=256, decay=0.4)
    null = anisotropic_null(rows, n_null=300, cutoff=0.3, seed=1)
    iso = np.random.default_rng(2).standard_normal((300, 256))
    iso_max = cosine_matrix(iso, rows).max(1)
    assert np.median(null.max_cosine) > np.median(iso_max) + 0.03
    fresh = anisotropic_rows(np.random.default_rng(3), 300, d=256, decay=0.4)
    fresh_max = cosine_matrix(fresh, rows).max(1)
    assert abs(np.median(null.max_cosine) - np.median(fresh_max)) < 0.03  # like rows of the same decoder


def test_pearson_over_many_columns_is_computed_in_blocks_without_changing_it():
    """Wide inputs (the 262K co-firing scan) are standardised a block of columns at a time; every column
    still gets numpy's own correlation, constant columns stay NaN, strata still partial out the set."""
    from harness.statistics.stats import MEMORY_FLOATS, pearson

    rng = np.random.default_rng(7)
    n = 1000
    columns = 3 * MEMORY_FLOATS // (4 * n) + 5  # more than two blocks
    y = rng.normal(size=n)
    x = rng.normal(size=(n, columns)).astype(np.float32)
    x[:, 3] = 0.0
    r = pearson(y, x)
    expected = [np.corrcoef(y, x[:, j].astype(np.float64))[0, 1] for j in (0, 1, columns // 2, columns - 1)]
    assert r[[0, 1, columns // 2, columns - 1]] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(r[3]) and np.isfinite(np.delete(r, 3)).all()
    strata = np.arange(n) % 2
    blocked = pearson(y, x[:, -10:], strata=strata)
    assert pearson(y, x, strata=strata)[-10:] == pytest.approx(blocked, abs=1e-12)


@pytest.mark.parametrize("spending", ["pocock", "obrien-fleming", "even"])
@pytest.mark.parametrize("looks", [2, 3, 5])
def test_alpha_spent_across_declared_looks_adds_up_to_alpha(spending, looks):
    from harness.statistics.sequential import look_alpha, spent

    shares = [look_alpha(0.05, k, looks, spending) for k in range(1, looks + 1)]
    assert all(share > 0 for share in shares)
    assert sum(shares) == pytest.approx(0.05, abs=1e-12) and spent(0.05, 1.0, spending) == pytest.approx(0.05)
    assert look_alpha(0.05, 1, 1, spending) == 0.05  # one look: the whole alpha
    if spending == "obrien-fleming":
        assert shares[0] < shares[-1] / 5  # keeps most of it for the last look


def test_the_profile_offers_exactly_the_spending_functions_there_are():
    from typing import get_args

    from harness.core.config import Spending
    from harness.statistics.sequential import SPENDING

    assert get_args(Spending) == SPENDING


def test_a_look_outside_the_declared_ones_is_named():
    from harness.core.config import AnalysisConfig
    from harness.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"look 4 is not one of the 3 declared looks; valid: 1..3"):
        AnalysisConfig(looks=3, look=4)
    with pytest.raises(ConfigError, match=r"look 2 is not one of the 1 declared looks.*declare \[analysis\] looks"):
        AnalysisConfig(look=2)
    with pytest.raises(ConfigError, match=r"analysis.spending 'pocok'.*'pocock'"):
        AnalysisConfig(spending="pocok")
