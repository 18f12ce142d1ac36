"""The plugin as a researcher gets it: the project's wheel installed into a fresh environment outside
this checkout, a folder with one claim module and one profile, and `pytest my_claims/ --html=out/`.

The fresh venv borrows the third-party packages (torch, sae-lens, ...) from this one through a .pth
path entry: nothing is downloaded, and this checkout's editable install (a .pth *file* in that folder)
is not processed, so `harness` comes from the wheel alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.core.config import load_profile
from harness.core.paths import REPO_ROOT

pytestmark = pytest.mark.integration

# What a researcher writes: a family of their own, decided on the public API, reading prompt texts.
CLAIM_MODULE = '''"""The top anchor fires more on concept prompts that name `word` than on the other concept prompts
(BCa interval of the difference of means > 0)."""

import numpy as np

from harness import Param, assert_held, claim_family, difference_interval, record_interval


def decide_word_preference(claim, analysis):
    x = analysis.acts("coarse")[:, analysis.top_anchor]
    concept = analysis.rows("concept")
    names_it = np.array([p is not None and claim.word.lower() in p.text.lower() for p in analysis.prompts])
    interval = difference_interval(x[concept & names_it], x[concept & ~names_it], analysis)
    return record_interval(claim, interval, threshold=0.0, comparison=">",
                           statistic_name=f"coarse-{analysis.top_anchor} on prompts naming {claim.word} minus the rest")


@claim_family("word_preference", {"word": Param(str, "Paris")}, decision=decide_word_preference,
              groups=("concept",))
def test_word_preference(claim, analysis, record_claim):
    assert_held(record_claim(decide_word_preference(claim, analysis)))
'''

PROFILE = '''# The embedded profile plus one claim of my own.
extends = "smollm2-135m"
name = "mine"

# A smaller steering study than the embedded profile's, so that the test takes minutes, not a quarter hour.
[steering]
random_directions = 9
random_rows = 9
control_mixtures = 4
band_directions = 3
calibration_prompts = 6
control_prompts = 6
generation_prompts = 8
max_new_tokens = 8

[[claims]]
family = "word_preference"
name = "paris"
statement = "The top anchor fires more on concept prompts that name Paris than on the other concept prompts."
word = "Paris"
'''

COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "reports", "__pycache__", "*.egg-info", "build", "dist",
                                     ".pytest_cache", ".hypothesis", ".benchmarks")


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("install")
    # Build from a copy of the working tree: a build writes egg-info into its source folder.
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=COPY_IGNORE)
    isolation = [] if _has_setuptools() else ["--use-pep517"]
    flags = ["--no-build-isolation"] if not isolation else isolation
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *flags, "-w", str(root / "wheel"),
                    str(source)], check=True, timeout=900, capture_output=True)
    wheel = next((root / "wheel").glob("sae_claims-*.whl"))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=600, capture_output=True)
    venv = root / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "sae_claims_test.pth").write_text(f"{site}\n{sysconfig.get_paths()['purelib']}\n")
    work = root / "work"
    (work / "my_claims").mkdir(parents=True)
    (work / "my_claims" / "test_word_preference.py").write_text(CLAIM_MODULE)
    (work / "my_claims" / "mine.toml").write_text(PROFILE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "SAE_CLAIMS_PROFILE")}
    return {"root": root, "python": python, "site": site, "work": work, "env": env, "wheel": wheel}


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def run(env: dict, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(env["python"]), *args], cwd=env["work"], env=env["env"], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_wheel_carries_the_plugin_the_claims_and_the_data(fresh_env):
    probe = run(fresh_env, "-c", (
        "import harness, importlib.metadata as m\n"
        "from harness.core.paths import BUILTIN_CLAIMS_DIR, FIXTURES_DIR, INSTALLED\n"
        "from harness.core.config import available_profiles\n"
        "print(harness.__file__); print(INSTALLED); print(BUILTIN_CLAIMS_DIR); print(FIXTURES_DIR)\n"
        "print(sorted(e.name for e in m.entry_points(group='pytest11')))\n"
        "print(available_profiles())\n"))
    assert probe.returncode == 0, probe.stderr[-3000:]
    harness_file, installed, claims_dir, fixtures_dir, plugins, profiles = probe.stdout.strip().splitlines()
    site = str(fresh_env["site"])
    assert harness_file.startswith(site) and installed == "True"
    assert claims_dir.startswith(site) and fixtures_dir.startswith(site)
    assert "sae_claims" in plugins and "smollm2-135m" in profiles
    shipped = {p.relative_to(fixtures_dir).as_posix() for p in Path(fixtures_dir).rglob("*") if p.is_file()}
    packaged = {p.relative_to(REPO_ROOT / "fixtures").as_posix() for p in (REPO_ROOT / "fixtures").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert packaged <= shipped, f"not in the wheel: {sorted(packaged - shipped)}"
    built_in = {p.name for p in (REPO_ROOT / "claims").glob("*.py")}
    assert built_in <= {p.name for p in Path(claims_dir).glob("*.py")}
    cli = run(fresh_env, "-m", "harness", "info", "--profile", "smollm2-135m", timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]


def test_a_researcher_runs_their_own_claims_folder_outside_the_checkout(fresh_env):
    """`pytest my_claims/ --html=out/` beside the built-in claims (--builtin-claims brings the gate):
    the researcher's record lands in the ledger and the report, and the exit status is the gate's."""
    result = run(fresh_env, "-m", "pytest", "my_claims/", "--builtin-claims", "--html=out/",
                 "--profile", "my_claims/mine.toml", "-p", "no:cacheprovider", "-q")
    tail = (result.stdout + result.stderr)[-4000:]
    ledger = json.loads((fresh_env["work"] / "out" / "claims.json").read_text())
    assert ledger["profile"] == "mine" and ledger["profile_source"] == "--profile", tail
    mine = next(c for c in ledger["claims"] if c["family"] == "word_preference")
    assert mine["id"] == "word_preference[paris]" and mine["gating"] is False
    assert mine["verdict"] in ("held", "refuted", "inconclusive") and mine["nodeid"].startswith("my_claims/")
    assert mine["control_verdict"] in ("held", "refuted", "inconclusive", "not evaluated")
    declared = {c["id"] for c in ledger["claims"]}
    embedded = {c.claim_id for c in load_profile("smollm2-135m").claims}
    assert "go_gate[go]" in declared and declared == embedded | {"word_preference[paris]"}  # the embedded ones and mine
    assert not any(c["reason"].startswith("not run") for c in ledger["claims"]), tail
    assert result.returncode == (0 if ledger["verdict"] == "GO" else 1), tail
    assert (fresh_env["work"] / "out" / "index.html").is_file()
    assert "word_preference" in (fresh_env["work"] / "out" / "index.html").read_text()
    assert ledger["git_commit"].endswith("(installed)")


def test_without_the_built_in_claims_the_run_is_partial_and_says_how_to_add_them(fresh_env):
    result = run(fresh_env, "-m", "pytest", "my_claims/", "--html=out-partial/", "--profile", "my_claims/mine.toml",
                 "-p", "no:cacheprovider", "-q")
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 1, tail
    ledger = json.loads((fresh_env["work"] / "out-partial" / "claims.json").read_text())
    gate = next(c for c in ledger["claims"] if c["id"] == "go_gate[go]")
    assert gate["verdict"] == "not evaluated" and "--builtin-claims" in gate["reason"], gate["reason"]
    assert any(c["family"] == "word_preference" and c["verdict"] != "not evaluated" for c in ledger["claims"])


def test_an_unrelated_pytest_run_in_the_environment_is_left_alone(fresh_env):
    """Installed, the plugin loads in every pytest run of the environment: with no claims option, ini
    or $SAE_CLAIMS_PROFILE it loads no profile, checks nothing and writes no verdict."""
    other = fresh_env["work"] / "other_project"
    other.mkdir(exist_ok=True)
    (other / "test_plain.py").write_text("def test_arithmetic():\n    assert 1 + 1 == 2\n")
    result = run(fresh_env, "-m", "pytest", "other_project/", "-p", "no:cacheprovider", "-q", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "claims profile" not in result.stdout and "claims verdict" not in result.stdout
    assert "1 passed" in result.stdout
