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
        role = {"go_gate": "gate", "steering": "phase 2"}.get(family, "gating" if gating else "finding")
        return ClaimRecord(id=claim_id, family=family, statement="s", statistic_name="x", statistic=1.0,
                           threshold=1.0, passed=passed, verdict="held" if passed else "refuted",
                           gating=family == "go_gate" if gating is None else gating, role=role)
    assert decide_verdict([record("go_gate[go]", "go_gate", True)])[0] == "GO"
    # A refuted finding is reported beside the gate, never counted.
    verdict, _ = decide_verdict([record("go_gate[go]", "go_gate", True), record("sparsity[a]", "sparsity", False),
                                 record("steering[x]", "steering", False)])
    assert verdict == "GO"
    summary = gate_summary([record("go_gate[go]", "go_gate", True), record("sparsity[a]", "sparsity", False),
                            record("steering[x]", "steering", False)], "GO", "r")
    assert summary["findings"]["phase 1"]["refuted"] == 1 and summary["findings"]["phase 2"]["refuted"] == 1
    assert summary["claims"] == ["go_gate[go]"]
    # A claim the profile marks gating joins the gate.
    verdict, reason = decide_verdict([record("go_gate[go]", "go_gate", True),
                                      record("sparsity[a]", "sparsity", False, gating=True)])
    assert verdict == "NO-GO" and "sparsity[a] refuted" in reason
    verdict, reason = decide_verdict([record("go_gate[go]", "go_gate", False)])
    assert verdict == "NO-GO" and reason.startswith("go_gate[go] refuted")
    assert decide_verdict([record("sparsity[a]", "sparsity", True)]) == (
        "NO-GO", "no claim of the GO rule (go_gate) was declared: there is no GO rule")


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
    for section in ("gate", "go-gate", "claims", "selectivity", "geometry", "sub-features", "prompts", "provenance"):
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


def changed_fine_baseline(tmp_path, ledger):
    """The baseline as if its fine SAE had other weights (another content hash)."""
    saes = {**ledger.saes, "fine": ledger.saes["fine"].model_copy(update={"hash": "0123456789abcdef"})}
    tables = {**ledger.tables, "declared_on": {**ledger.tables["declared_on"], "fine": "0123456789abcdef"}}
    path = tmp_path / "baseline.json"
    path.write_text(ledger.model_copy(update={"saes": saes, "tables": tables}).model_dump_json())
    return path


def test_ids_registered_on_another_sae_are_not_tested_there(tmp_path, ledger):
    """Anchors discovered on SAE A, a run on SAE B and a baseline whose ids count from neither: no guess."""
    import dataclasses

    run = planted.claims_run(effect=True)
    declared = run.declared_profile
    run.profile = run.declared_profile = dataclasses.replace(
        declared, anchors=dataclasses.replace(declared.anchors, sae_hashes={"fine": "aaaaaaaaaaaaaaaa"}))
    match = run.followed["fine-10"]
    assert not match.matched and "ids count from SAE aaaaaaaaaaaaaaaa" in match.describe(0.7)
    assert "re-run discover" in match.describe(0.7) and run.profile.anchors.fine == ()
    run2 = planted.claims_run(effect=True)
    run2.profile = run2.declared_profile = run.declared_profile
    run2.baseline = changed_fine_baseline(tmp_path, ledger)  # its ids count from 0123..., not aaaa...
    assert "the baseline's ids count from 0123456789abcdef" in run2.followed["fine-10"].describe(0.7)


def test_declared_features_are_followed_into_a_changed_sae(tmp_path, ledger):
    """Shuffle the fine SAE's rows: the declared fine anchor is found again at its new index, the unchanged
    coarse SAE is not touched, and the claim on it is rewritten to the new index."""
    import numpy as np

    from harness.core.config import ClaimSpec

    run = planted.claims_run(effect=True)
    order = np.random.default_rng(0).permutation(planted.N_FINE)
    run.__dict__["directions"] = {"coarse": run.directions["coarse"], "fine": run.directions["fine"][order]}
    run.baseline = changed_fine_baseline(tmp_path, ledger)
    new_index = int(np.flatnonzero(order == 10)[0])
    match = run.followed["fine-10"]
    assert match.new == new_index and match.cosine > 0.999 and not match.shared_with
    assert not any(name.startswith("coarse-") for name in run.followed)  # the coarse SAE did not change
    assert run.profile.anchors.fine == (new_index,) and run.declared_profile.anchors.fine == (10,)
    spec = ClaimSpec(family="selectivity", name="fine-10", statement="s",
                     params={"sae": "fine", "feature": 10, "min_selectivity": 0.5})
    followed, used = run.follow_spec(spec)
    assert followed.params["feature"] == new_index and followed.name == spec.name and used == [match]


def test_a_feature_without_a_match_is_not_followed(tmp_path, ledger):
    """Random fine rows: the best cosine to the old anchor is far below the floor, so there is no match."""
    import numpy as np

    run = planted.claims_run(effect=True)
    fine = np.random.default_rng(1).standard_normal(run.directions["fine"].shape).astype(np.float32)
    run.__dict__["directions"] = {"coarse": run.directions["coarse"],
                                  "fine": fine / np.linalg.norm(fine, axis=1, keepdims=True)}
    run.baseline = changed_fine_baseline(tmp_path, ledger)
    match = run.followed["fine-10"]
    assert not match.matched and match.cosine < run.profile.analysis.follow_min_cosine
    assert "no match (best fine-" in match.describe(0.7)
    assert run.profile.anchors.fine == ()  # dropped, never tested under its old index


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
    from harness.entry.session import _valid_study
    from tests.planted import steering_study

    study = steering_study().model_dump_json()
    content = {"valid": study, "empty": "{}", "not json": "not json",
               "nan": study.replace("0.5", "NaN", 1),
               "old schema": '{"directions": [], "chosen_alpha": {}, "per_prompt": {"a": {"shift": [1.0]}}}'}[case]
    path = tmp_path / "steering.json"
    path.write_text(content)
    assert (_valid_study(path) is not None) == (case == "valid")
    if case == "valid":
        assert _valid_study(path) == steering_study()  # the typed result round-trips through its cache


def embedded_baseline(tmp_path, ledger):
    """A baseline ledger as the embedded profile would write it (its name, hook and prompt hashes)."""
    from harness.core.config import load_profile
    from harness.world.prompts import load_prompt_sets

    profile = load_profile("smollm2-135m")
    path = tmp_path / "embedded.json"
    path.write_text(ledger.model_copy(update={"profile": profile.name, "model": profile.model.name,
                                              "hook": profile.model.hook,
                                              "prompt_hashes": load_prompt_sets(profile).hashes()}).model_dump_json())
    return path


@pytest.mark.parametrize("child, error", [
    ('[saes.fine]\npath = "saes/fine-seed7"\n', None),  # an SAE update: compared without an override
    ('[model]\nhook = "blocks.10.hook_resid_post"\n', "comes from another hook"),
    ('[prompts]\nconcept = "mine.txt"\n', "comes from another concept: concept prompts"),
])
def test_a_baseline_from_the_profile_a_child_extends_is_compared_when_only_the_saes_changed(
        tmp_path, ledger, child, error):
    from harness.core.config import load_profile
    from harness.core.errors import ConfigError
    from harness.entry.preflight import check_baseline
    from harness.world.prompts import load_prompt_sets

    (tmp_path / "mine.txt").write_text("\n".join(f"A sentence about Paris number {i}." for i in range(30)))
    (tmp_path / "mine.toml").write_text(f'extends = "smollm2-135m"\nname = "mine"\n{child}')
    profile = load_profile(str(tmp_path / "mine.toml"), require_anchors=False)
    baseline = embedded_baseline(tmp_path, ledger)
    hashes = load_prompt_sets(profile).hashes() if "concept" in child else None
    if error is None:
        assert check_baseline(profile, baseline) == baseline
    else:
        with pytest.raises(ConfigError, match=error.split(": ")[0]):
            check_baseline(profile, baseline, prompt_hashes=hashes)
        assert check_baseline(profile, baseline, any_profile=True) == baseline


def test_the_ledger_split_says_all_when_the_prompts_were_used_whole():
    from harness.core.config import Anchors
    from harness.entry.session import ledger_split

    assert ledger_split(Anchors(split="all")) == "all"
    assert ledger_split(Anchors(split="confirmation")) == "confirmation"
    assert ledger_split(Anchors(split="confirmation", whole_sets=("concept", "neutral"))) == "all"
    assert ledger_split(Anchors(split="confirmation", whole_sets=("near_miss",))) == "confirmation (near_miss used whole)"
