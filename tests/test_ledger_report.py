"""Ledger: schema, verdict, diff; report: rendered from the ledger alone, self-contained."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from harness.engine.claims_engine import evaluate
from harness.entry.cli import main
from harness.outputs.ledger import (ClaimRecord, Ledger, decide_verdict, diff_ledgers, gate_summary, ledger_schema,
                                    read_ledger)
from harness.outputs.report import render_html
from harness.entry.session import write_outputs
from tests import planted


def build_ledger(effect: bool = True) -> Ledger:
    run = planted.claims_run(effect=effect)
    for spec in run.profile.claims:
        run.record(evaluate(spec, run.analysis, control=run.control))
    return run.ledger(exit_status=0)


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return build_ledger(effect=True)


def test_ledger_validates_against_generated_schema(ledger):
    document = json.loads(ledger.model_dump_json())
    jsonschema.validate(document, ledger_schema())
    for field in ("run_id", "created_at", "git_commit", "library_versions", "profile", "seed", "saes",
                  "prompt_hashes", "verdict", "claims", "tables"):
        assert field in document
    claim = document["claims"][0]
    for field in ("id", "family", "statement", "statistic", "threshold", "p_value", "q_value", "effect", "passed"):
        assert field in claim


def test_schema_rejects_a_bad_verdict(ledger):
    document = json.loads(ledger.model_dump_json())
    document["verdict"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, ledger_schema())


def test_planted_world_is_go_and_null_world_is_no_go(ledger):
    assert ledger.verdict == "GO", ledger.verdict_reason
    null = build_ledger(effect=False)
    assert null.verdict == "NO-GO" and "go_gate[go]" in null.verdict_reason


def test_verdict_is_the_gate_and_findings_never_flip_it():
    def record(claim_id, family, passed, gating=None):
        return ClaimRecord(id=claim_id, family=family, statement="s", statistic_name="x", statistic=1.0,
                           threshold=1.0, passed=passed, verdict="held" if passed else "refuted",
                           gating=family == "go_gate" if gating is None else gating)
    assert decide_verdict([record("go_gate[go]", "go_gate", True)])[0] == "GO"
    # A refuted finding is reported beside the gate, never counted.
    verdict, _ = decide_verdict([record("go_gate[go]", "go_gate", True), record("sparsity[a]", "sparsity", False),
                                 record("steering[x]", "steering", False)])
    assert verdict == "GO"
    summary = gate_summary([record("go_gate[go]", "go_gate", True), record("sparsity[a]", "sparsity", False),
                            record("steering[x]", "steering", False)], "GO", "r")
    assert summary["findings"]["phase 1"]["refuted"] == 1 and summary["findings"]["phase 2 (steering)"]["refuted"] == 1
    assert summary["claims"] == ["go_gate[go]"]
    # A claim the profile marks gating joins the gate.
    verdict, reason = decide_verdict([record("go_gate[go]", "go_gate", True),
                                      record("sparsity[a]", "sparsity", False, gating=True)])
    assert verdict == "NO-GO" and "sparsity[a] refuted" in reason
    verdict, reason = decide_verdict([record("go_gate[go]", "go_gate", False)])
    assert verdict == "NO-GO" and reason.startswith("go_gate[go] refuted")
    assert decide_verdict([record("sparsity[a]", "sparsity", True)]) == (
        "NO-GO", "no go_gate claim was declared: there is no GO rule")


def test_report_tables_come_from_the_harness(ledger):
    tables = ledger.tables
    assert tables["anchors"]["coarse"] == [planted.ANCHOR]
    assert {p["fine"] for p in tables["pairs"] if p["sub_feature"]} == set(planted.CHILDREN)
    hist = tables["cosine_histograms"][f"coarse-{planted.ANCHOR}"]
    assert sum(hist["counts"]) <= planted.N_FINE and len(hist["edges"]) == len(hist["counts"]) + 1
    assert tables["ranked_features"]["coarse"][0]["feature"] == planted.ANCHOR


def test_html_is_self_contained_and_escaped(ledger):
    hostile = ledger.model_copy(update={"profile_description": "<script>alert(1)</script>"})
    html = render_html(hostile)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"<script[^>]+src=", html)  # plotly is inlined: no CDN, works offline
    assert "GO" in html and f"C-{planted.ANCHOR}" in html
    for section in ("claims", "selectivity", "geometry", "pairs", "graph", "prompts", "provenance"):
        assert f'id="{section}"' in html


def test_outputs_and_run_copy_and_rerender(tmp_path, ledger):
    index = write_outputs(ledger, tmp_path)
    assert index.is_file() and (tmp_path / "claims.json").is_file()
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-planted") and (runs[0] / "index.html").is_file()
    assert read_ledger(tmp_path / "claims.json").run_id == ledger.run_id
    out = tmp_path / "again.html"
    assert main(["report", str(tmp_path / "claims.json"), "--out", str(out)]) == 0
    assert out.read_text().count("Plotly.newPlot") == 1


def test_report_cli_names_a_missing_ledger(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_diff_finds_flips_and_moves(ledger):
    null = build_ledger(effect=False)
    diff = diff_ledgers(null, ledger)
    flipped = {row["id"] for row in diff["flipped"]}
    assert "go_gate[go]" in flipped and f"selectivity[coarse-{planted.ANCHOR}]" in flipped
    assert diff["baseline_run_id"] == ledger.run_id
    html = render_html(null, baseline=ledger)
    assert 'id="diff"' in html and "go_gate[go]" in html


def test_baseline_anchors_are_remapped_into_a_changed_sae(tmp_path, ledger):
    """Shuffle the fine SAE's rows: the old fine anchor must be found again at its new index."""
    import numpy as np

    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(ledger.model_dump_json())
    run = planted.claims_run(effect=True)
    order = np.random.default_rng(0).permutation(planted.N_FINE)
    run.__dict__["directions"] = {"coarse": run.directions["coarse"], "fine": run.directions["fine"][order]}
    run.baseline = baseline_path
    rows = {(r["role"], r["old"]): r for r in run.remap_baseline_anchors()}
    moved = rows[("fine", 10)]
    assert moved["new"] == int(np.flatnonzero(order == 10)[0]) and moved["cosine"] > 0.999
    assert rows[("coarse", planted.ANCHOR)]["same_id"]


# ---------------------------------------------------------------- writes that cannot lose a run
def test_outputs_are_staged_and_runs_keep_their_full_id(tmp_path):
    from harness.entry.session import write_outputs

    run = planted.claims_run()
    for spec in run.profile.claims:
        run.record(evaluate(spec, run.analysis, control=run.control))
    first, second = run.ledger(), run.ledger()
    assert first.run_id != second.run_id  # two runs in the same second still get two folders
    for ledger in (first, second):
        write_outputs(ledger, tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        f"{ledger.run_id}-{ledger.profile}" for ledger in (first, second))
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # no temp file or folder left
    assert json.loads((tmp_path / "claims.json").read_text())["run_id"] == second.run_id


def test_stale_temp_folders_are_cleaned_fresh_ones_kept(tmp_path):
    import os
    import time

    from harness.core.paths import clean_stale_temp

    stale, fresh = tmp_path / ".model.tmp-abc", tmp_path / ".model.tmp-def"
    stale.mkdir()
    fresh.mkdir()
    (tmp_path / "model").mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert clean_stale_temp(tmp_path) == [stale]
    assert fresh.exists() and (tmp_path / "model").exists()


@pytest.mark.parametrize("case", ["valid", "empty", "nan", "not json", "old schema"])
def test_steering_cache_is_validated_on_read(tmp_path, case):
    import json

    from harness.entry.session import _valid_study
    from tests.planted import steering_study

    study = steering_study()
    content = {"valid": json.dumps(study), "empty": "{}", "not json": "not json",
               "nan": json.dumps(study).replace("0.5", "NaN", 1),
               "old schema": '{"directions": [], "chosen_alpha": {}, "per_prompt": {"a": {"shift": [1.0]}}}'}[case]
    path = tmp_path / "steering.json"
    path.write_text(content)
    assert (_valid_study(path) is not None) == (case == "valid")