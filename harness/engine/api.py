"""The public claims API: what a module in claims/ needs, and nothing else. `from harness import ...`.

- Families: `claim_family` registers a family on its test function (name, typed `Param`s with
  defaults, gating or exploratory); the profile parametrizes it like a built-in one.
- Data (the `analysis` fixture, an `Analysis`): `acts(role)` pooled activations [prompts, features];
  `rows(set, split=None, facet=None)` boolean masks ("concept" / "neutral" / "near_miss"; halves
  "discovery" / "confirmation" / "all"); `facet_names()`; `anchors`, `top_anchor`;
  `sub_features(anchor)` / `sub_feature_ids(anchor)`; `decoder(role)`; `on_split(half)`; `alpha`,
  `level`, `seed`, `n_permutations`, `n_bootstrap`.
- Statistics: permutation tests (two-sample, paired sign-flip, correlation, max-facet), BCa
  bootstrap intervals, Benjamini-Hochberg, exact rank against controls, `decide` on an interval.
- Records: `record_interval` decides a claim on an interval against its threshold and builds the
  ledger record; `make_record` builds one from any verdict; `assert_held` fails the test with the
  record's reason (refuted, inconclusive and not evaluated read differently).
- The built-in families' engine functions (`evaluate`, `facet_preferences`, ...): the same ones
  `python -m harness calibrate` and `discover` call.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.engine.analysis import Analysis
from harness.engine.claims_engine import (  # noqa: F401 - re-exported
    combine,
    difference_interval,
    evaluate,
    make_record,
    mean_interval,
    rank_against_controls,
)
from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError
from harness.engine.facets import facet_claim, facet_preferences
from harness.core.families import REQUIRED, Param, get_family, register_family
from harness.outputs.ledger import ClaimRecord, Effect
from harness.statistics.stats import (
    Interval,
    benjamini_hochberg,
    bootstrap_interval,
    correlation_permutation_test,
    decide,
    facet_permutation_test,
    paired_sign_flip_test,
    selectivity,
    two_sample_permutation_test,
)

# The public names are listed once, in harness/__init__.py (which loads this module on first use).
from harness import __all__ as _PUBLIC  # noqa: E402

__all__ = list(_PUBLIC)

FAMILY_ATTRIBUTE = "_claims_family"
FAMILY_ERROR = "_claims_family_error"


def claim_family(name: str, params: dict[str, Param] | None = None, *, gating: bool = False,
                 groups: tuple[str, ...] = ("concept", "neutral"), doc: str | None = None) -> Callable:
    """Register a claim family on its test function; the test is then parametrized with the profile's
    `[[claims]]` of that family (`claim` argument), exactly like a built-in family.

    params: the family's parameters (`Param(int, default, low=, high=, choices=)`; no default:
    required). With no params, `name` must be a built-in family. Claims are findings, reported beside
    the gate; gating=True makes GO also require them (a profile can set `gating = true/false` per claim).
    groups: prompt sets whose size floor (`analysis.min_group_size`) the claims need.

    A bad registration is reported by the plugin as one usage error, not an import traceback.
    """
    def decorate(test: Callable) -> Callable:
        try:
            if params is None:
                if get_family(name) is None:
                    raise ConfigError(f"family {name!r} is not built in; register it with params={{...}} "
                                      "(e.g. {\"feature\": Param(int, low=0, feature_of=\"fine\")})")
            else:
                register_family(name, params, gating=gating, groups=tuple(groups), origin=test.__module__,
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
