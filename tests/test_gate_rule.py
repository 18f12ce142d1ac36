"""The GO gate's pieces: the step-down count (closed testing), the random-SAE control, and the rule's
declaration in a profile. The gate as a whole through the main job is in test_plugin.py; its size and
power are calibration rows (test_calibration.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError
from harness.engine.claims_engine import evaluate
from harness.features.control import control_directions, decoder_moments, tied_topk_encode
from harness.statistics.stats import step_down_min_p
from tests import planted


def closed_testing_bound(observed, null, alpha) -> int:
    """Goeman & Solari's lower bound on true discoveries, by brute force over every subset with min-P
    local tests: m minus the size of the largest subset its local test does not reject."""
    draws = np.vstack([observed[None], null])
    n = draws.shape[0]
    tol = np.abs(draws) * 100 * np.finfo(float).eps
    p = np.array([[(draws[:, j] >= draws[b, j] - tol[b, j]).sum() / n for j in range(draws.shape[1])]
                  for b in range(n)])
    largest_kept = 0
    for size in range(1, draws.shape[1] + 1):
        for subset in itertools.combinations(range(draws.shape[1]), size):
            cols = list(subset)
            if (p[:, cols].min(1) <= p[0, cols].min() * (1 + 1e-12)).mean() > alpha:
                largest_kept = size
    return draws.shape[1] - largest_kept


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_features=st.integers(1, 5), n_resamples=st.integers(5, 60),
       alpha=st.floats(0.02, 0.5), coarse=st.booleans())
def test_step_down_count_is_the_closed_testing_bound(seed, n_features, n_resamples, alpha, coarse):
    """The shortcut equals full closed testing, ties included (coarse values make many)."""
    rng = np.random.default_rng(seed)
    null = rng.standard_normal((n_resamples, n_features)) + rng.standard_normal((n_resamples, 1)) * rng.uniform(0, 2)
    observed = rng.standard_normal(n_features) + rng.uniform(0, 3, n_features) * (rng.random(n_features) < 0.5)
    if coarse:
        null, observed = np.round(null, 1), np.round(observed, 1)
    result = step_down_min_p(observed, null, alpha=alpha)
    assert result.true_discovery_bound == closed_testing_bound(observed, null, alpha)
    assert (result.adjusted_p >= result.p_value - 1e-12).all()  # adjustment never lowers a p


@pytest.mark.parametrize("shared", [0.0, 1.0], ids=["independent", "dependent"])
def test_step_down_decides_at_least_k_at_alpha_where_bh_counts_do_not(shared):
    """Twelve null features (independent, or sharing a factor) and two true ones: "at least 3 true" is
    wrongly decided at most at alpha (plus Monte Carlo slack); counting BH discoveries is not bounded so
    (with independent nulls it errs about twice as often)."""
    from harness.statistics.stats import benjamini_hochberg

    rng = np.random.default_rng(0)
    wrong_step, wrong_bh, n_sets = 0, 0, 400
    for _ in range(n_sets):
        draws = rng.standard_normal((501, 14)) + shared * rng.standard_normal((501, 1))
        draws[0, :2] += 6.0  # two true effects in the observed row
        result = step_down_min_p(draws[0], draws[1:], alpha=0.05)
        wrong_step += result.true_discovery_bound >= 3
        wrong_bh += int(benjamini_hochberg(result.p_value, 0.05)[0].sum()) >= 3
    assert wrong_step / n_sets <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n_sets)
    if not shared:
        assert wrong_bh > 1.5 * wrong_step


def test_step_down_refuses_bad_inputs():
    with pytest.raises(ConfigError, match=r"null_distribution must be \[resamples, 3\]; got shape \(10, 2\)"):
        step_down_min_p(np.zeros(3), np.zeros((10, 2)), alpha=0.05)
    with pytest.raises(ConfigError, match=r"alpha 1.5 must lie in \(0, 1\)"):
        step_down_min_p(np.zeros(2), np.zeros((10, 2)), alpha=1.5)
    with pytest.raises(ConfigError, match="must be finite"):
        step_down_min_p(np.array([np.nan, 1.0]), np.zeros((10, 2)), alpha=0.05)
    assert step_down_min_p(np.zeros(0), np.zeros((10, 0)), alpha=0.05).true_discovery_bound == 0


def test_control_rows_share_the_decoders_moments_and_are_reproducible():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((4000, 16)) * np.arange(1, 17) ** -1.0 + 0.3
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    control = control_directions(rows, seed=3)
    assert control.shape == rows.shape and np.allclose(np.linalg.norm(control, axis=1), 1, atol=1e-5)
    assert np.array_equal(control, control_directions(rows, seed=3))
    assert not np.array_equal(control, control_directions(rows, seed=4))
    # Drawn from the rows' mean and covariance, then normalised: the same cone, not the same rows.
    assert np.abs(control.mean(0) - rows.mean(0)).max() < 0.05
    mean, root = decoder_moments(rows)
    assert np.allclose(root @ root.T, np.cov(rows.T, bias=True), atol=1e-8)
    assert np.abs(control @ rows[:50].T).max() < 0.9999  # no trained row is copied


def test_tied_topk_keeps_k_non_negative_activations():
    rng = np.random.default_rng(1)
    rows = control_directions(rng.standard_normal((64, 8)), seed=0)
    acts = tied_topk_encode(rng.standard_normal((30, 8)), rows, k=5, centre=np.zeros(8))
    assert acts.shape == (30, 64) and (acts >= 0).all() and ((acts > 0).sum(1) <= 5).all()


def test_the_gate_on_the_planted_world_and_its_control():
    """Planted hierarchy: GO, with the control NO-GO. The same world as its own control: GO refused.
    No hierarchy: NO-GO. Every part of the rule is in the record."""
    run = planted.claims_run(effect=True)
    spec = run.profile.claims_of("go_gate")[0]
    record = evaluate(spec, run.analysis, control=run.control)
    assert record.verdict == "held", record.reason
    part = record.details["anchors"][0]
    assert part["selectivity"]["verdict"] == part["geometry"]["verdict"] == part["sub_features"]["verdict"] == "held"
    assert set(part["sub_features"]["confirmed"]) == set(planted.CHILDREN)
    assert record.details["control"]["verdict"] != "held"

    same = planted.claims_run(effect=True, control="same")
    refused = evaluate(spec, same.analysis, control=same.control)
    assert refused.verdict == "inconclusive" and "GO refused" in refused.reason

    null = planted.claims_run(effect=False)
    assert evaluate(spec, null.analysis, control=null.control).verdict != "held"
    with pytest.raises(ConfigError, match=r"requires the random-SAE control \(control = true\) and none was given"):
        evaluate(spec, run.analysis)


def test_the_gate_counts_true_sub_features_not_bh_discoveries():
    """Two planted children and a requirement of 3: the gate's count stays below it however many
    discoveries Benjamini-Hochberg makes."""
    run = planted.claims_run(effect=True)
    spec = ClaimSpec(family="go_gate", name="four", statement="s", params={"min_sub_features": 4, "control": False})
    record = evaluate(spec, run.analysis)
    assert record.verdict != "held" and record.statistic == 3.0


def test_steering_never_gates_and_the_gate_always_does():
    with pytest.raises(ConfigError, match="steering claims are Phase 2 and never gate the decision to start Phase 2"):
        ClaimSpec(family="steering", name="x", statement="s", params={"kind": "beats_random"}, gating=True)
    with pytest.raises(ConfigError, match="the go_gate claim is the gate"):
        ClaimSpec(family="go_gate", name="x", statement="s", gating=False)
    assert ClaimSpec(family="selectivity", name="x", statement="s",
                     params={"sae": "coarse", "feature": 1, "min_selectivity": 0.9}).is_gating is False
    assert ClaimSpec(family="go_gate", name="x", statement="s").is_gating is True


def test_the_gate_says_when_its_shuffles_cannot_resolve_the_rows_it_tests():
    """38 aligned rows at alpha / 3 need about 2,280 shuffles: with 199 the count cannot reach 3 however
    strong the rows are, and the record says how many shuffles would do, instead of a silent 0."""
    from harness.engine.calibration import Settings, gate_trial

    trial = gate_trial(np.random.default_rng(0), 5, Settings(n_permutations=199), children=2, aligned=36,
                       control=False)
    record = evaluate(trial.spec, trial.analysis)
    counted = record.details["anchors"][0]["sub_features"]
    assert counted["tested"] == 38 and counted["too_few_shuffles"] and counted["shuffles_needed"] == 2280
    assert "199 shuffles cannot resolve 38 rows at this level: use analysis.permutations >= 2280" in record.reason
