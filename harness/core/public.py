"""The names of the public claims API (`from harness import ...`), listed once: harness/__init__.py
resolves them lazily from harness.engine.api, which defines them."""

PUBLIC_NAMES = [
    "Analysis", "ClaimRecord", "ClaimSpec", "ConfigError", "Effect", "Interval", "Param",
    "REQUIRED", "Section", "SteeringResult", "Table", "assert_held", "benjamini_hochberg", "bootstrap_interval", "check_gate_spec", "choices_error",
    "claim_family", "combine", "control_gate", "correlation_permutation_test", "decide", "describe_anchor",
    "difference_interval", "draw", "effect_of", "evaluate", "facet_permutation_test", "facet_preferences",
    "feature_index", "gate_decision", "interval_text", "make_record", "mean_interval", "paired_shift",
    "paired_sign_flip_test", "quantile_interval", "rank_against_controls", "record_interval", "sae_role",
    "selectivity", "shift_with_p", "significant", "two_sample_permutation_test",
]
