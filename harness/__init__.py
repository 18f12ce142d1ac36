"""Interpretability-claims harness: the library behind `pytest claims/`.

Importable without pytest. Never imports `claims` or `fixtures` (they import it). The public
claims API (`from harness import claim_family, Param, record_interval, ...`) is documented in
`harness.engine.api`; it loads on first use, so `import harness.entry.cli` stays light.
"""

__version__ = "0.1.0"

__all__ = [
    "REQUIRED", "Analysis", "ClaimRecord", "ClaimSpec", "Effect", "Interval", "Param", "assert_held",
    "benjamini_hochberg", "bootstrap_interval", "claim_family", "combine", "correlation_permutation_test",
    "decide", "difference_interval", "evaluate", "facet_claim", "facet_permutation_test", "facet_preferences",
    "make_record", "mean_interval", "paired_sign_flip_test", "rank_against_controls", "record_interval",
    "selectivity", "two_sample_permutation_test",
]


def __getattr__(name: str):
    if name in __all__:
        from harness.engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
