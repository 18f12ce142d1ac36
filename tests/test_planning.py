"""Prompts that would decide an inconclusive claim, simulated through the claim's own interval."""

from __future__ import annotations

import numpy as np

from harness.engine.analysis import selectivity_interval
from harness.engine.calibration import Settings, _claim, synthetic_world, zero_heavy
from harness.engine.claims_engine import evaluate
from harness.statistics.planning import decided_rate, plan_prompts
from harness.statistics.stats import Interval, prompts_to_decide


def guarded(concept, other):
    return selectivity_interval(concept, other, level=0.95, n_resamples=499, seed=0, ceiling=6.0)


def test_a_silent_other_set_is_the_set_that_needs_prompts():
    """Selectivity capped at 1 with a silent other set: only that set's size moves the guard, so the
    advice grows it alone, and at the advised size the guard clears the bar (deterministic here)."""
    rng = np.random.default_rng(0)
    concept, other = zero_heavy(rng, 100, 0.9, 3.0), np.zeros(100)
    assert guarded(concept, other).low < 0.9 < guarded(concept, other).high
    plan = plan_prompts({"concept": concept, "neutral": other}, guarded, 0.9, ">", seed=0)
    assert list(plan.needed) == ["neutral"] and plan.needed["neutral"] > 100 and plan.now["neutral"] == 100
    assert guarded(concept, np.zeros(plan.needed["neutral"])).low > 0.9
    # the advice is the smallest size that decides, to the bisection's resolution (< 10%)
    assert guarded(concept, np.zeros(int(plan.needed["neutral"] / 1.1))).low <= 0.9
    assert "neutral prompts (now 100)" in plan.text()


def test_the_advised_size_decides_at_least_as_often_as_asked():
    rng = np.random.default_rng(1)
    values = rng.normal(0.15, 1.0, 60)
    interval = lambda v: Interval(v.mean(), v.mean() - 1.96 * v.std() / np.sqrt(v.size),  # noqa: E731
                                  v.mean() + 1.96 * v.std() / np.sqrt(v.size), 0.95)
    plan = plan_prompts({"prompts": values}, interval, 0.0, ">", seed=3)
    size = plan.needed["prompts"]
    assert decided_rate({"prompts": values}, {"prompts": size}, interval, 0.0, ">", seed=3, simulations=24) >= 0.8
    assert plan.decided >= 0.8


def test_no_plan_when_no_size_on_the_grid_decides():
    values = np.r_[np.full(30, -1.0), np.full(30, 1.0)]  # mean exactly at the threshold
    interval = lambda v: Interval(v.mean(), v.mean() - 0.5, v.mean() + 0.5, 0.95)  # noqa: E731
    assert plan_prompts({"prompts": values}, interval, 0.0, ">", seed=0) is None


def test_the_normal_approximation_uses_the_side_that_must_move():
    """Capped at 1 above a bar the estimate clears: the lower side (the whole width) sets the spread,
    not half the width, so the advice is four times larger than the half-width reading."""
    capped = Interval(1.0, 0.8, 1.0, 0.95)
    half_width_reading = Interval(1.0, 0.9, 1.1, 0.95)  # same width, centred: what the old formula assumed
    assert prompts_to_decide(capped, 0.9, 100) >= 3.9 * prompts_to_decide(half_width_reading, 0.9, 100)


def test_an_inconclusive_selectivity_claim_says_which_set_needs_prompts():
    rng = np.random.default_rng(5)
    concept, other = zero_heavy(rng, 100, 0.9, 3.0), np.zeros(100)
    spec = _claim("selectivity", sae="coarse", feature=0, against="neutral", min_selectivity=0.9)
    world = synthetic_world(spec, coarse=np.r_[concept, other], seed=5, settings=Settings(n_bootstrap=499),
                            ceilings={"coarse": np.array([6.0])}, plan_prompts=True)
    record = evaluate(spec, world)
    assert record.verdict == "inconclusive"
    assert list(record.prompts_needed) == ["neutral"] and record.prompts_now == {"neutral": 100}
    assert record.prompts_to_decide == record.prompts_needed["neutral"]
    assert f"about {record.prompts_needed['neutral']} neutral prompts (now 100) would decide it" in record.message
