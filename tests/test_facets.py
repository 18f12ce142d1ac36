"""The facet family: its statistic, its decision on planted truth, and how it says it cannot decide."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError
from harness.engine.calibration import (
    CHILD_COSINES,
    FACET_NAMES,
    N_CONCEPT,
    N_FINE,
    N_NEUTRAL,
    Settings,
    _fine_dictionary,
    by_set,
    synthetic_world,
    unit_rows,
)
from harness.engine.claims_engine import evaluate
from harness.engine.facets import facet_preferences
from harness.statistics.stats import facet_permutation_test, parent_bands, parent_residuals

SETTINGS = Settings(n_permutations=499)


def world(seed: int, *, preference: float | None, facets=True):
    """A parent with three nested children; with `preference`, child 0 fires only on cuisine prompts
    (at that rate of the parent's firings) and never elsewhere."""
    rng = np.random.default_rng(seed)
    anchor = unit_rows(rng.standard_normal(128))
    n_concept = 2 * N_CONCEPT
    labels = np.array([FACET_NAMES[i % len(FACET_NAMES)] for i in range(n_concept)])
    parent = by_set(rng, (0.8, 3.0), (0.05, 1.0), n_concept)
    fine = np.stack([by_set(rng, (0.05, 1.0), (0.05, 1.0), n_concept) for _ in range(N_FINE)], axis=1)
    for row in range(len(CHILD_COSINES)):
        fine[:, row] = (rng.random(parent.size) < 0.6) * parent * rng.uniform(0.4, 0.8, parent.size)
    if preference is not None:
        cuisine = np.r_[labels == "cuisine", np.zeros(N_NEUTRAL, bool)]
        fine[:, 0] = (rng.random(parent.size) < preference * cuisine) * parent
    spec = ClaimSpec(family="facet", name="t", statement="planted", params={"anchor": 0})
    analysis = synthetic_world(spec, coarse=parent, fine=fine, coarse_dirs=anchor[None],
                               fine_dirs=_fine_dictionary(rng, anchor), seed=seed, settings=SETTINGS,
                               concept_facets=labels if facets else np.full(n_concept, ""))
    return spec, analysis


def test_a_facet_feature_is_found_and_named():
    spec, analysis = world(1, preference=0.9)
    record = evaluate(spec, analysis)
    assert record.verdict == "held" and record.gating is False  # exploratory by default
    confirmed = [r for r in record.details["sub_features"] if r["confirmed"]]
    assert [(r["fine"], r["chosen_facet"]) for r in confirmed] == [(0, "cuisine")]
    assert record.details["anchor_facet_means_confirmation"].keys() == set(FACET_NAMES)


@pytest.mark.parametrize("condition", ["parent-facet", "parent-threshold", "parent-squared", "two-facets", "boundary"])
def test_harder_nulls_are_not_held(condition):
    """A parent that prefers a facet (its nested children inherit it, proportionally, above a level or
    as its square), a child with two facets, and no facet at all: none is a sub-feature encoding one
    facet (the audit's cases; rates in calibration)."""
    from harness.engine.calibration import facet_trial

    verdicts = [facet_trial(np.random.default_rng(seed), seed, SETTINGS, condition=condition).verdict()
                for seed in range(20)]
    assert verdicts.count("held") <= 3 and "refuted" not in verdicts  # never refuted: no margin to refute with


def test_a_constant_column_prefers_nothing():
    labels = np.array(list("abcd") * 10)
    for value in (0.1, 0.7, 3.3):
        result = facet_permutation_test(np.full((40, 1), value), labels, n_resamples=99, seed=0)
        assert result.p_value[0] == 1.0


def test_no_facet_preference_is_not_held():
    spec, analysis = world(2, preference=None)
    record = evaluate(spec, analysis)
    assert record.verdict != "held"
    assert not any(r["confirmed"] for r in record.details["sub_features"])


def test_prompts_without_facets_are_not_evaluated_with_a_note():
    spec, analysis = world(3, preference=0.9, facets=False)
    record = evaluate(spec, analysis)
    assert record.verdict == "not evaluated" and 'give each concept prompt a "facet" field' in record.reason


def test_preferences_use_the_two_halves_apart():
    spec, analysis = world(4, preference=0.9)
    prefs = facet_preferences(analysis, 0)
    parent_fires = (analysis.acts("coarse")[:, 0] > 0) & analysis.masks["concept_all"]
    assert prefs["n_discovery"] + prefs["n_confirmation"] == parent_fires.sum()  # shares need the parent firing
    assert not (analysis.masks["concept_discovery"] & analysis.masks["concept_confirmation"]).any()


def test_rows_name_a_bad_facet_and_the_valid_ones():
    _, analysis = world(5, preference=None)
    with pytest.raises(ConfigError, match=r"unknown facet of the concept prompts 'cusine'; valid choices: 'cuisine'"):
        analysis.rows("concept", facet="cusine")
    assert analysis.rows("concept", facet="cuisine").sum() == 2 * N_CONCEPT // len(FACET_NAMES)  # split "all"
    assert analysis.rows("concept", split="discovery", facet="cuisine").sum() == N_CONCEPT // len(FACET_NAMES)
    assert analysis.facet_names() == sorted(FACET_NAMES)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(0.0, 5.0))
def test_max_facet_statistic_is_invariant_to_relabelling_and_shift(seed, shift):
    """The statistic depends on which rows share a facet, not on the facets' names or a constant shift."""
    rng = np.random.default_rng(seed)
    x = rng.exponential(size=(40, 3))
    labels = np.array(list("abcd") * 10)
    renamed = np.array([{"a": "w", "b": "x", "c": "y", "d": "z"}[v] for v in labels])
    first = facet_permutation_test(x, labels, n_resamples=99, seed=seed)
    second = facet_permutation_test(x + shift, renamed, n_resamples=99, seed=seed)
    np.testing.assert_allclose(first.statistic, second.statistic, atol=1e-9)
    np.testing.assert_array_equal(first.p_value, second.p_value)
    assert ((first.p_value > 0) & (first.p_value <= 1)).all()


def test_max_facet_p_is_uniform_under_exchangeable_labels():
    """Under the null (labels independent of x) P(p <= 0.05) is 0.05 up to Monte Carlo error."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 12)
    ps = np.array([facet_permutation_test(rng.exponential(size=60), labels, n_resamples=199, seed=s).p_value[0]
                   for s in range(400)])
    assert abs((ps <= 0.05).mean() - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / 400)


def test_facet_test_needs_two_facets():
    with pytest.raises(ConfigError, match="at least 2 facets"):
        facet_permutation_test(np.ones((5, 1)), np.array(["a"] * 5), n_resamples=9, seed=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), power=st.floats(0.2, 3.0), level=st.floats(0.0, 4.0))
def test_any_increasing_function_of_the_parent_leaves_no_excess(seed, power, level):
    """The excess over the parent removes every non-decreasing dependence (proportional, thresholded,
    powers), with ties in the parent pooled to one fitted value; it keeps the mean at zero."""
    rng = np.random.default_rng(seed)
    parent = np.round(rng.gamma(2.0, 1.5, 120), 1)  # rounded: ties
    child = np.c_[parent**power, parent * (parent > level), 2.0 * parent]
    np.testing.assert_allclose(parent_residuals(child, parent), 0.0, atol=1e-9)
    noisy = child + rng.standard_normal(child.shape)
    excess = parent_residuals(noisy, parent)
    np.testing.assert_allclose(excess.sum(0), 0.0, atol=1e-8)
    fitted = noisy - excess
    for value in np.unique(parent):
        tied = parent == value
        assert np.ptp(fitted[tied], axis=0).max() <= 1e-9


def test_bands_are_equal_count_ranks_of_the_parent():
    parent = np.r_[np.arange(100.0), np.full(20, 50.0)]
    bands = parent_bands(parent, 5)
    assert set(bands) == set(range(5))
    order = np.argsort(parent, kind="stable")
    assert (np.diff(bands[order]) >= 0).all()  # bands follow the parent's order
    assert len({bands[i] for i in np.flatnonzero(parent == 50.0)}) == 1  # ties share a band


def test_labels_never_leave_their_band():
    """When each facet lives in its own band, no within-band shuffle changes anything: p = 1."""
    x = np.random.default_rng(0).exponential(size=(40, 2))
    labels = np.array(["a"] * 20 + ["b"] * 20)
    strata = np.r_[np.zeros(20, int), np.ones(20, int)]
    x[:20] += 5.0  # facet a is far larger, yet fully confounded with its band
    assert (facet_permutation_test(x, labels, n_resamples=99, seed=0, strata=strata).p_value == 1.0).all()
    assert facet_permutation_test(x, labels, n_resamples=99, seed=0).p_value.max() < 0.05
