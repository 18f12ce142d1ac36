"""Calibration harness on planted data, small: false positives near alpha, power where the
planted effect is strong. The full table (1,000 datasets) is `python -m harness calibrate`."""

from __future__ import annotations

import math

import pytest

from harness.calibration import TRIALS, calibrate, format_table


@pytest.fixture(scope="module")
def results():
    return calibrate(n_datasets=80, n_permutations=199, seed=1, progress=False)


def test_every_family_is_calibrated(results):
    assert {r["family"] for r in results["rows"]} == set(TRIALS)
    se = math.sqrt(0.05 * 0.95 / 80)
    for row in results["rows"]:
        assert row["false_positive_rate"] <= 0.05 + 3 * se, row


def test_power_on_strong_planted_effects(results):
    power = {r["family"]: r["power"] for r in results["rows"]}
    for family in ("selectivity", "sub_features (correlation test)", "sub_features + go_gate (cosine, BH)",
                   "geometry"):
        assert power[family] >= 0.8, (family, power[family])


def test_table_formats_every_row(results):
    table = format_table(results)
    assert table.count("\n| ") == len(results["rows"]) + 1  # header + rows
