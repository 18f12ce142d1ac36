"""harness is a library: importable without pytest, and it never imports claims or fixtures."""

from __future__ import annotations

import subprocess
import sys

from harness.paths import REPO_ROOT

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pytest', '_pytest', 'claims', 'fixtures'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import harness.cli, harness.session, harness.report, harness.steering, harness.discovery
import harness.calibration, harness.training, harness.claims_engine, harness.features
import harness.api, harness.facets, harness.families
from harness import claim_family, Param, record_interval
print('ok')
"""


def test_harness_imports_without_pytest_claims_or_fixtures():
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_cli_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "harness", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0
    for command in ("info", "train-saes", "discover", "calibrate", "report", "schema"):
        assert command in result.stdout


def test_cli_bad_profile_is_one_clear_error():
    result = subprocess.run([sys.executable, "-m", "harness", "info", "--profile", "llama"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert ("error: unknown profile 'llama'; valid choices: 'gemma-2-2b', 'smollm2-135m', 'smollm2-135m-japan'"
            in result.stderr)
