"""The public claims API: what a module in claims/ needs, and nothing else. `from harness import ...`.

- Families: `claim_family` registers a family on its test function (name, typed `Param`s with
  defaults, gating or exploratory); the profile parametrizes it like a built-in one.
- Data (the `analysis` fixture, an `Analysis`): `acts(role)` pooled activations [prompts, features];
  `rows(set, split=None, facet=None)` boolean masks ("concept" / "neutral" / "near_miss"; halves
  "discovery" / "confirmation" / "all"); `facet_names()`; `anchors`, `top_anchor`;
  `sub_features(anchor)` / `sub_feature_ids(anchor)`; `decoder(role)`; `on_split(half)`; `alpha`,
  `level`, `seed`, `n_permutations`, `n_bootstrap`.
- Statistics: permutation tests (two-sample, paired sign-flip, correlation, max-facet), BCa
  bootstrap intervals, Benjamini-Hochberg, exact rank against controls, `decide` on an interval,
  `significant(p, alpha)` (the one rule for a p or q: p <= alpha), `paired_shift` (a paired mean > 0).
- Records: `record_interval` decides a claim on an interval against its threshold and builds the
  ledger record; `make_record` builds one from any verdict; `assert_held` fails the test with the
  record's reason (refuted, inconclusive and not evaluated read differently).
- Report: `claim_family(report=...)` gives a family its own section of the HTML report, a `Section`
  of figures and `Table`s drawn with `draw` from the ledger; `tables=` stores the data it draws.
- `evaluate(claim, analysis)`: a registered family's decision, behind the size floor; what
  `python -m harness calibrate` and discovery call. The built-in decisions are written in the claim
  modules (claims/test_<family>.py) on this API, and use the gate's machinery (`gate_decision`, ...).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError, choices_error
from harness.core.families import REQUIRED, Param, get_family, register_family
from harness.core.steering_result import SteeringResult  # noqa: F401 - re-exported: what steering claims read
from harness.engine.analysis import Analysis
from harness.engine.claims_engine import (  # noqa: F401 - re-exported
    difference_interval,
    effect_of,
    evaluate,
    feature_index,
    interval_text,
    make_record,
    mean_interval,
    paired_shift,
    rank_against_controls,
    sae_role,
    shift_with_p,
)
from harness.engine.facets import facet_preferences
from harness.engine.gate import check_gate_spec, control_gate, describe_anchor, gate_decision
from harness.outputs import draw  # noqa: F401 - re-exported: what a family's report section is drawn with
from harness.outputs.ledger import ClaimRecord, Effect
from harness.outputs.sections import Section, Table  # noqa: F401 - re-exported
from harness.statistics.stats import (
    Interval,
    benjamini_hochberg,
    bootstrap_interval,
    combine,
    correlation_permutation_test,
    decide,
    facet_permutation_test,
    paired_sign_flip_test,
    quantile_interval,
    selectivity,
    significant,
    two_sample_permutation_test,
)

# The public names are listed once, in harness/core/public.py (harness/__init__.py loads this module on
# first use of one of them).
from harness.core.public import PUBLIC_NAMES  # noqa: E402

__all__ = list(PUBLIC_NAMES)

FAMILY_ATTRIBUTE = "_claims_family"
FAMILY_ERROR = "_claims_family_error"


def claim_family(name: str, params: dict[str, Param] | None = None, *, decision: Callable | None = None,
                 gating: bool = False, groups: tuple[str, ...] | Callable = ("concept", "neutral"),
                 needs_anchors: bool = False, needs_steering: bool = False, needs_control: bool = False,
                 order: int = 100, go_rule: bool = False, phase: str = "phase 1", pair_rule: Callable | None = None,
                 tables: Callable | None = None, report: Callable | None = None,
                 doc: str | None = None) -> Callable:
    """Register a claim family on its test function; the test is then parametrized with the profile's
    `[[claims]]` of that family (`claim` argument), exactly like a built-in family.

    params: the family's parameters (`Param(int, default, low=, high=, choices=)`; no default:
    required). With no params, `name` must be a registered family (its test reuses that decision).
    decision: `decision(claim, analysis) -> ClaimRecord`, the family's verdict as a function, so that
    `harness.evaluate`, `python -m harness calibrate` and discovery run the very function the test
    runs (the built-in families all give one). With needs_steering / needs_control it also gets the
    steering study / the random-SAE control analysis as a third argument.
    gating: claims are findings, reported beside the gate; gating=True makes GO also require them (a
    profile can set `gating = true/false` per claim).
    groups: prompt sets whose size floor (`analysis.min_group_size`) the claims need; a claim on a set
    below it is "not evaluated" before the test runs. A tuple, or a function of the claim.
    needs_anchors: the claims are about the profile's anchors (re-validation follows them).
    order: where the family's claims and report section come (built-in families use 0-90).
    go_rule: the family's claim is the GO rule itself (built in: go_gate); phase: "phase 1", or "phase 2"
    for a study that GO starts (steering): phase 2 claims never gate.
    pair_rule: `pair_rule(pair, claim, alpha) -> {"category", "sub_feature"}`, what a sub-feature is, for
    the analysis's pair table (built in: sub_features; claim is that family's claim on the pair's anchor).
    tables: `tables(claims, analysis) -> dict`, data the family's report section draws, stored in the ledger.
    report: `report(claims, ledger) -> Section`, the family's section of the HTML report (default: each
    claim's verdict, reason and details).

    A bad registration is reported by the plugin as one usage error, not an import traceback.
    """
    def decorate(test: Callable) -> Callable:
        try:
            if params is None:
                if get_family(name) is None:
                    raise ConfigError(f"family {name!r} is not built in; register it with params={{...}} "
                                      "(e.g. {\"feature\": Param(int, low=0, feature_of=\"fine\")})")
            else:
                origin = f"{Path(inspect.getsourcefile(test) or test.__module__).name}::{test.__qualname__}"
                register_family(name, params, gating=gating, groups=groups if callable(groups) else tuple(groups),
                                evaluate=decision, needs_anchors=needs_anchors, needs_steering=needs_steering,
                                needs_control=needs_control, order=order, go_rule=go_rule, phase=phase,
                                pair_rule=pair_rule, tables=tables, report=report, origin=origin,
                                doc=doc or (test.__doc__ or "").strip())
        except ConfigError as exc:
            setattr(test, FAMILY_ERROR, f"{test.__module__}: {exc}")
        setattr(test, FAMILY_ATTRIBUTE, name)
        return test
    return decorate


def record_interval(claim: ClaimSpec, interval: Interval, *, threshold: float, comparison: str, statistic_name: str,
                    reason: str = "", p_value: float | None = None, q_value: float | None = None,
                    details: dict[str, Any] | None = None, n_per_group: int | None = None) -> ClaimRecord:
    """Decide a claim on its interval: held when the interval clears `threshold` in the direction of
    `comparison` (">", ">=", "<", "<="), refuted when it lies wholly on the wrong side, else
    inconclusive (with the prompts per group that would decide it, given `n_per_group`)."""
    verdict = decide(interval.low, interval.high, threshold, comparison)
    text = f"{statistic_name} {interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}] {comparison} {threshold:g}?"
    return make_record(
        claim, verdict=verdict, statistic_name=statistic_name, statistic=interval.estimate, threshold=threshold,
        comparison=comparison, p_value=p_value, q_value=q_value,
        effect=Effect(name=statistic_name, value=interval.estimate, ci_low=interval.low, ci_high=interval.high,
                      ci_level=interval.level),
        reason=(f"{reason}; {text}" if reason else text) + (f" ({interval.note})" if interval.note else ""),
        details=details, decide_from=(interval, threshold, n_per_group) if n_per_group else None)


def assert_held(record: ClaimRecord) -> None:
    """Fail the test unless the claim held; the message says refuted / inconclusive / not evaluated, and why."""
    __tracebackhide__ = True
    if record.verdict != "held":
        raise AssertionError(record.message)
