"""Calibration runs the engine: boundary nulls keep the wrong-verdict rate at or below alpha + 2 s.e.,
planted effects are found, and calibration's verdict is the engine's verdict on the same data.

The full table (1,000 datasets per condition) is `python -m harness calibrate --out calibration.json`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.engine.calibration import CONDITIONS, Settings, calibrate, format_table, run_condition
from harness.engine.claims_engine import evaluate

SETTINGS = Settings(n_permutations=199, n_bootstrap=499)
NULLS = [c for c in CONDITIONS if c.kind == "fpr"]
# Power rows that document a cost rather than a target: the selectivity bound with an activation ceiling
# cannot reach "> 0.9" on 100 prompts per set when the other set fires rarely (measured 0.1), and needs 400
# at a ceiling 3x the concept firing (0.46). Findings, reported in docs/findings.md; not asserted.
POWER_FINDINGS = {"ceiling-power-0.97-2x-n100", "ceiling-power-0.99-2x-n100", "ceiling-power-0.97-3x-n400"}
EFFECTS = [c for c in CONDITIONS if c.kind == "power" and "4x" not in c.condition
           and c.condition not in POWER_FINDINGS]


@pytest.mark.parametrize("condition", NULLS, ids=lambda c: f"{c.family}-{c.condition}")
def test_boundary_false_positive_rate_within_alpha_plus_two_se(condition):
    row = run_condition(condition, n_datasets=400, seed=1, settings=SETTINGS)
    limit = 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)
    assert row["fpr"] <= limit, row


@pytest.mark.parametrize("condition", EFFECTS, ids=lambda c: f"{c.family}-{c.condition}")
def test_planted_effects_are_found(condition):
    """Power at the planted effect, 100 datasets; the selectivity and loudness effects sit close to their
    bars on 100 prompts per set and are only required to be found more often than a boundary null, and
    the gate on 40 + 40 prompts has measured power 0.765 (1,000 datasets), so it is held to 0.6."""
    row = run_condition(condition, n_datasets=100, seed=2, settings=SETTINGS)
    bar = (0.25 if condition.family in ("selectivity", "loud_unselective")
           else 0.6 if condition.condition == "power-40-prompts" else 0.8)
    assert row["power"] >= bar, row


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: f"{c.family}-{c.condition}")
def test_calibration_verdict_is_the_engine_verdict(condition):
    """The trial's verdict comes from the claim family's own function: evaluating the same synthetic
    analysis directly gives the same record."""
    child = np.random.SeedSequence(7).spawn(1)[0]
    trial = condition.make(np.random.default_rng(child), 7, SETTINGS)
    direct = evaluate(trial.spec, trial.analysis, steering=trial.study, control=trial.control)
    assert trial.verdict() == direct.verdict
    assert direct.family == condition.family


def test_datasets_are_independent_streams():
    """SeedSequence children: no two datasets of a condition share their first draws."""
    children = np.random.SeedSequence([0, 3]).spawn(200)
    firsts = {np.random.default_rng(c).integers(0, 2**62) for c in children}
    assert len(firsts) == 200


def test_cli_rows_and_table():
    rows = calibrate(n_datasets=5, seed=0, settings=SETTINGS, families=["steering", "sparsity"], progress=False)
    assert [(r["family"], r["condition"]) for r in rows] == [("sparsity", "boundary"), ("steering", "boundary"),
                                                                 ("steering", "boundary-rank"),
                                                                 ("steering", "boundary-baseline"),
                                                                 ("steering", "boundary-rare-words"),
                                                                 ("steering", "boundary-multi"),
                                                                 ("steering", "boundary-multi-interval"),
                                                                 ("steering", "boundary-multi-rank"),
                                                                 ("steering", "boundary-specificity-first"),
                                                                 ("steering", "boundary-specificity-inert")]
    for row in rows:
        assert {"family", "condition", "fpr", "n_datasets", "mc_se", "alpha"} <= set(row)
    assert format_table(rows).count("\n| ") == len(rows) + 1


def test_unknown_family_is_named():
    from harness.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown calibration family 'selectivty'; valid choices: .*'selectivity'"):
        calibrate(n_datasets=1, families=["selectivty"], progress=False)
