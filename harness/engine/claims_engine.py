"""The pieces every claim family's decision is built from, and `evaluate`, which runs one.

Each family's decision is written in its claim module (claims/test_<family>.py for the built-in
ones) and registered with `harness.claim_family(..., decision=...)`. `evaluate` looks the decision
up in the registry, so `pytest claims/`, `python -m harness calibrate` and discovery all call the
same function. Every decision rests on an interval, never on a point estimate: held (the interval
clears the threshold), refuted (it lies wholly on the wrong side), inconclusive (it straddles; the
record says how many prompts would decide it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.engine.analysis import Analysis
from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError, choices_error
from harness.core.families import require_family
from harness.outputs.ledger import ClaimRecord, Effect
from harness.statistics.planning import PromptPlan
from harness.statistics.stats import (
    Interval,
    bootstrap_interval,
    decide,
    paired_sign_flip_test,
    prompts_to_decide,
    significant,
)


def feature_index(analysis: Analysis, role: str, feature) -> int:
    """`feature` as an index of the `role` SAE ("coarse" / "fine"), or one error naming the valid range."""
    sae_role(role)
    d_sae = analysis.acts(role).shape[1]
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < d_sae:
        raise ConfigError(f"feature {feature!r} is not an index of the {role} SAE; valid: 0..{d_sae - 1}")
    return feature


def sae_role(value) -> str:
    """"coarse" or "fine", or one error naming the valid choices."""
    if value not in ("coarse", "fine"):
        raise choices_error("sae", value, ("coarse", "fine"))
    return value


def effect_of(name: str, interval: Interval) -> Effect:
    """The ledger's effect entry for an interval."""
    return Effect(name=name, value=interval.estimate, ci_low=interval.low, ci_high=interval.high,
                  ci_level=interval.level)


def mean_interval(values, analysis: Analysis) -> Interval:
    """BCa interval of a mean over prompts, at the analysis's level and seed."""
    return analysis.mean_interval(values)


def difference_interval(group, other, analysis: Analysis) -> Interval:
    """BCa interval of mean(group) - mean(other), each resampled within itself."""
    x, y = np.asarray(group, dtype=np.float64), np.asarray(other, dtype=np.float64)
    return bootstrap_interval(lambda i, j: x[i].mean(-1) - y[j].mean(-1), [np.arange(x.size), np.arange(y.size)],
                              n_resamples=analysis.n_bootstrap, seed=analysis.seed, level=analysis.level)


def interval_text(interval: Interval) -> str:
    """"estimate [low, high]", as every reason prints an interval."""
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def make_record(spec: ClaimSpec, *, verdict: str, statistic_name: str, statistic, threshold, comparison: str,
                reason: str, effect: Effect | None = None, p_value=None, q_value=None, details: dict | None = None,
                decide_from: tuple[Interval, float, int] | None = None, by_construction: bool = False,
                plan: Callable[[], PromptPlan | None] | None = None) -> ClaimRecord:
    """A ledger record. For an inconclusive claim, `plan` (simulated through the claim's own interval)
    or else `decide_from` = (interval, threshold, prompts per set) estimates the prompts that would decide it."""
    needed, by_set, now = None, None, None
    if verdict == "inconclusive" and plan is not None:
        planned = plan()
        if planned is not None:
            by_set, now, needed = planned.needed, {k: planned.now[k] for k in planned.needed}, max(planned.needed.values())
    elif verdict == "inconclusive" and decide_from is not None:
        needed = prompts_to_decide(*decide_from)
    return ClaimRecord(
        id=spec.claim_id, family=spec.family, statement=spec.statement, statistic_name=statistic_name,
        statistic=None if statistic is None else float(statistic), threshold=None if threshold is None else float(threshold),
        comparison=comparison, p_value=p_value, q_value=q_value, effect=effect, passed=verdict == "held",
        verdict=verdict, prompts_to_decide=needed, prompts_needed=by_set, prompts_now=now,
        by_construction=by_construction, reason=reason,
        gating=spec.is_gating, role=spec.role, details=details or {},
    )



def rank_against_controls(value: float, controls, alpha: float) -> tuple[str, float, int]:
    """Exact rank test of one direction among exchangeable controls: p = (1 + #controls >= value) / (N + 1).
    held when p <= alpha; refuted when at least half the controls do as well (for an odd N: the value is
    no better than their median); else inconclusive (also when N is too small for any p <= alpha).
    Decided on counts alone, so a control known only to lie below the value (a screened bound) counts
    exactly as its true shift would."""
    controls = np.asarray(controls, dtype=float)
    if not np.isfinite(value) or not np.isfinite(controls).all():
        return "inconclusive", 1.0, int(np.sum(controls >= value))  # a NaN would count as beaten by none
    beaten_by = int(np.sum(controls >= value))
    p = (1 + beaten_by) / (len(controls) + 1)
    if significant(p, alpha):
        return "held", p, beaten_by
    if len(controls) and 2 * beaten_by >= len(controls):
        return "refuted", p, beaten_by
    return "inconclusive", p, beaten_by


def shift_with_p(values: np.ndarray, a: Analysis) -> tuple[Interval, float]:
    """BCa interval of a per-prompt mean and its exact sign-flip p (greater than 0)."""
    values = np.asarray(values, dtype=np.float64)
    p = float(paired_sign_flip_test(values, n_resamples=a.n_permutations, seed=a.seed).p_value[0])
    return mean_interval(values, a), p


def paired_shift(values, a: Analysis) -> tuple[str, Interval, float]:
    """"The per-prompt paired mean is > 0", as every steering claim decides it: the BCa interval decides,
    and "held" also needs the exact sign-flip test (significant: p <= alpha): a bootstrap of a few non-zero pairs among
    many zeros puts its lower bound above 0 too easily. Returns (verdict, interval, sign-flip p)."""
    interval, p = shift_with_p(values, a)
    verdict = decide(interval.low, interval.high, 0.0, ">")
    if verdict == "held" and not significant(p, a.alpha):
        verdict = "inconclusive"
    return verdict, interval, p


def too_little_data(spec: ClaimSpec, a: Analysis) -> ClaimRecord | None:
    """Too few prompts is not evidence: below `analysis.min_group_size` a claim is not evaluated."""
    floor = a.profile.analysis.min_group_size
    groups = require_family(spec.family).groups(spec)
    small = {g: int(a.group(g).sum()) for g in groups if int(a.group(g).sum()) < floor}
    if not small:
        return None
    sizes = ", ".join(f"{n} {g.replace('_', '-')}" for g, n in small.items())
    return make_record(spec, verdict="not evaluated", statistic_name="too few prompts", statistic=None,
                       threshold=None, comparison=">=",
                       reason=f"too few prompts to test: {sizes} (floor {floor} per set, analysis.min_group_size)",
                       details={"group_sizes": small, "min_group_size": floor})


def evaluate(spec: ClaimSpec, analysis: Analysis, *, steering: dict | None = None,
             control: Analysis | None = None) -> ClaimRecord:
    """The engine's verdict on one claim of a registered family (the function calibration calls too).
    `control`: the same data through a random SAE of the same shape (the gate's negative control)."""
    family = require_family(spec.family)
    if family.evaluate is None:
        raise ConfigError(f"family {spec.family!r} (from {family.origin}) has no engine function: its test "
                          "computes the record itself")
    small = too_little_data(spec, analysis)
    if small is not None:
        return small
    if family.needs_steering:
        if steering is None:
            raise ConfigError(f"claim {spec.claim_id!r} needs the steering study; pass steering=")
        return family.evaluate(spec, analysis, steering)
    if family.needs_control:
        return family.evaluate(spec, analysis, control)
    return family.evaluate(spec, analysis)
