"""Calibration runs the engine: boundary nulls keep the wrong-verdict rate at or below alpha + 2 s.e.,
planted effects are found, and calibration's verdict is the engine's verdict on the same data.

The full table (1,000 datasets per condition) is `python -m harness calibrate --out calibration.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.engine.calibration import (
    ADVICE_CODES,
    CONDITIONS,
    VERDICT_CODES,
    Settings,
    calibrate,
    dataset_verdicts,
    format_table,
    name_entropy,
    run_condition,
)
from harness.engine.claims_engine import evaluate

REPO = Path(__file__).resolve().parents[1]
SETTINGS = Settings(n_permutations=199, n_bootstrap=499)
NULLS = [c for c in CONDITIONS if c.kind == "fpr"]
# Power rows that document a cost rather than a target: the selectivity bound with an activation ceiling
# cannot reach "> 0.9" on 100 prompts per set when the other set fires rarely at 0.2-0.7 of a 2x ceiling
# (measured 0.07-0.11), and the gate with ceilings at the held-out maximum has power 0.64 on 40 + 40 prompts
# (0.78 at the embedded anchors' 2.8x). Findings, reported in docs/findings.md; not asserted.
POWER_FINDINGS = {"ceiling-power-0.97-2x-n100", "ceiling-power-0.99-2x-n100", "power-40-prompts-ceilings",
                  "power-40-prompts-ceilings-2.8x"}
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
    analysis directly gives the same record (a paired-mean world goes through `paired_shift`, the
    steering claims' own decision; a sequential trial's last look is its analysis)."""
    from harness.engine.claims_engine import paired_shift

    child = np.random.SeedSequence(7).spawn(1)[0]
    trial = condition.make(np.random.default_rng(child), 7, SETTINGS)
    if trial.spec.family == "paired_mean":
        direct = paired_shift(trial.analysis._cache["paired"], trial.analysis)[0]
    else:
        record = evaluate(trial.spec, trial.analysis, steering=trial.study, control=trial.control)
        direct = record.verdict
        assert record.family == (condition.family if condition.kind != "advice" else trial.spec.family)
    assert trial.record().verdict == direct
    if not trial.earlier_looks:
        assert trial.verdict() == direct


def test_an_advice_row_counts_reruns_at_the_advised_sizes():
    condition = next(c for c in CONDITIONS if c.key == "advice/paired-mean")
    row = run_condition(condition, n_datasets=6, seed=0, settings=SETTINGS)
    assert set(row["verdict_codes"]) <= {"d", "u", "x"} and len(row["verdict_codes"]) == 6
    assert row["advised"] == row["verdicts"]["decided at the advice"] + row["verdicts"]["undecided at the advice"]
    assert row["advised"] == 0 or 0 <= row["decided_at_advice"] <= 1


def test_datasets_are_independent_streams():
    """SeedSequence children: no two datasets of a condition share their first draws."""
    children = np.random.SeedSequence([0, *name_entropy("sparsity/boundary")]).spawn(200)
    firsts = {np.random.default_rng(c).integers(0, 2**62) for c in children}
    assert len(firsts) == 200


def test_cli_rows_and_table():
    rows = calibrate(n_datasets=5, seed=0, settings=SETTINGS, families=["steering", "sparsity"], progress=False)
    assert [(r["family"], r["condition"]) for r in rows] == [("sparsity", "boundary"), ("steering", "boundary"),
                                                                 ("steering", "boundary-rank"),
                                                                 ("steering", "boundary-rank-kl-spread"),
                                                                 ("steering", "boundary-more-targeted"),
                                                                 ("steering", "effect-more-targeted"),
                                                                 ("steering", "boundary-baseline"),
                                                                 ("steering", "boundary-prompting"),
                                                                 ("steering", "boundary-rare-words"),
                                                                 ("steering", "boundary-multi"),
                                                                 ("steering", "boundary-multi-interval"),
                                                                 ("steering", "boundary-multi-rank"),
                                                                 ("steering", "boundary-specificity-first"),
                                                                 ("steering", "boundary-specificity-inert")]
    for row in rows:
        assert {"family", "condition", "n_datasets", "mc_se", "alpha"} <= set(row) and ({"fpr", "power"} & set(row))
    assert format_table(rows).count("\n| ") == len(rows) + 1


def test_unknown_family_is_named():
    from harness.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown calibration family 'selectivty'; valid choices: .*'selectivity'"):
        calibrate(n_datasets=1, families=["selectivty"], progress=False)


STORED = REPO / "fixtures" / "calibration" / "calibration.json"
# Cheap rows (a few ms per dataset) from several families, recomputed in full-prefix detail below.
REPRODUCED = ("selectivity/boundary-rare", "selectivity/rare-large-2pct-5x-n100", "reconstruction/boundary",
              "sparsity/boundary", "loud_unselective/boundary", "steering/boundary-baseline", "facet/parent-squared",
              "empty_top_left/boundary", "go_gate/power-embedded-design-ceilings-2.8x")


def stored_rows() -> dict[str, dict]:
    return {f"{r['family']}/{r['condition']}": r for r in json.loads(STORED.read_text())}


def test_stored_file_has_one_row_per_condition_with_its_provenance():
    rows = stored_rows()
    assert sorted(rows) == sorted(c.key for c in CONDITIONS)
    for key, row in rows.items():
        codes = row["verdict_codes"]
        assert len(codes) == row["n_datasets"], key
        codes_of = ADVICE_CODES if key.startswith("advice/") else VERDICT_CODES
        assert row["verdicts"] == {v: codes.count(c) for v, c in codes_of.items()}, key
        assert row["commit"] and row["versions"]["numpy"] and row["versions"]["scipy"], key
        if key.startswith("advice/"):
            decided = codes.count("d")
            assert row["advised"] == decided + codes.count("u") and row["decided_at_advice"] == decided / row["advised"]
            continue
        wrong = row.get("wrong_verdict", "held")
        rate = row["fpr"] if "fpr" in row else row["power"]
        assert rate == row["verdicts"][wrong] / row["n_datasets"], key


@pytest.mark.parametrize("key", REPRODUCED)
def test_stored_rows_are_what_calibrate_gives_now(key):
    """The first 40 datasets of a stored row, recomputed at HEAD with the row's own seed and settings,
    give the same verdict, dataset by dataset: the stored table is the engine's, not an older one's."""
    row = stored_rows()[key]
    condition = next(c for c in CONDITIONS if c.key == key)
    settings = Settings(n_permutations=row["permutations"], n_bootstrap=row["bootstrap"], alpha=row["alpha"])
    codes = dataset_verdicts(condition, n_datasets=40, seed=row["seed"], settings=settings)
    assert codes == row["verdict_codes"][:40]


def test_a_row_depends_on_its_name_not_its_position():
    condition = next(c for c in CONDITIONS if c.key == "sparsity/boundary")
    moved = dataclasses.replace(condition)
    first = dataset_verdicts(condition, n_datasets=5, seed=0, settings=SETTINGS)
    assert dataset_verdicts(moved, n_datasets=5, seed=0, settings=SETTINGS) == first
    assert name_entropy("sparsity/boundary") != name_entropy("sparsity/boundary-2")
    # the first datasets of a longer run are the datasets of a shorter one
    assert dataset_verdicts(condition, n_datasets=8, seed=0, settings=SETTINGS)[:5] == first


def test_only_reruns_one_row_and_keeps_the_others(tmp_path):
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps([{"family": "sparsity", "condition": "boundary", "fpr": 9.0},
                               {"family": "steering", "condition": "boundary", "fpr": 7.0},
                               {"family": "gone", "condition": "old", "fpr": 1.0}]))
    run = subprocess.run([sys.executable, "-m", "harness", "calibrate", "--only", "sparsity/boundary",
                          "--datasets", "3", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    rows = {f"{r['family']}/{r['condition']}": r for r in json.loads(out.read_text())}
    assert sorted(rows) == ["sparsity/boundary", "steering/boundary"]  # a row of no condition is dropped
    assert rows["steering/boundary"]["fpr"] == 7.0
    assert rows["sparsity/boundary"]["n_datasets"] == 3 and len(rows["sparsity/boundary"]["verdict_codes"]) == 3


def test_only_names_a_bad_row_and_the_valid_ones(tmp_path):
    run = subprocess.run([sys.executable, "-m", "harness", "calibrate", "--only", "sparsity/boundry",
                          "--datasets", "3", "--out", str(tmp_path / "c.json")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "'sparsity/boundry'" in run.stderr and "'sparsity/boundary'" in run.stderr
    assert not (tmp_path / "c.json").exists()
    bad = tmp_path / "notes.json"
    bad.write_text('{"not": "rows"}')
    run = subprocess.run([sys.executable, "-m", "harness", "calibrate", "--only", "sparsity/boundary",
                          "--datasets", "3", "--out", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode != 0 and "is not a calibration file" in run.stderr and "Traceback" not in run.stderr
    assert bad.read_text() == '{"not": "rows"}'


def test_findings_tables_are_generated_from_the_stored_rows():
    """docs/findings.md's calibration tables are the stored rows, not numbers typed by hand."""
    run = subprocess.run([sys.executable, "-m", "harness", "calibration-tables", "docs/findings.md", "--check"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_tables_render_every_kind_of_row(tmp_path):
    from harness.engine.calibration import render_tables

    rows = [run_condition(c, n_datasets=3, seed=0, settings=SETTINGS)
            for c in CONDITIONS if c.key in ("sparsity/boundary", "geometry/effect", "advice/paired-mean")]
    text = "intro\n<!-- calibration-table: sparsity, advice/paired-mean -->\nold\n<!-- /calibration-table -->\nend\n"
    out = render_tables(text, rows)
    assert out.startswith("intro\n") and out.endswith("end\n") and "old" not in out
    assert "| sparsity | boundary |" in out and "| advice | paired-mean |" in out and "geometry" not in out
    assert render_tables(out, rows) == out
    assert format_table(rows).count("\n| ") == len(rows) + 1
