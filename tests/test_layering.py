"""harness is a library: importable without pytest, and it never imports claims or fixtures."""

from __future__ import annotations

import subprocess
import sys

from harness.core.paths import REPO_ROOT

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pytest', '_pytest', 'claims', 'fixtures'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import harness.entry.cli, harness.entry.session, harness.outputs.report, harness.steering.study, harness.entry.discovery
import harness.engine.calibration, harness.world.training, harness.engine.claims_engine, harness.features.tables
import harness.engine.api, harness.engine.facets, harness.core.families
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
    for command in ("info", "train-saes", "discover", "calibrate", "report", "stand-in", "schema"):
        assert command in result.stdout


def test_cli_bad_profile_is_one_clear_error():
    result = subprocess.run([sys.executable, "-m", "harness", "info", "--profile", "llama"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    profiles = sorted(p.stem for p in (REPO_ROOT / "fixtures" / "profiles").glob("*.toml")
                      if not p.name.endswith(".anchors.toml"))
    assert {"gemma-2-2b", "gemma-2-tiny", "smollm2-135m", "smollm2-135m-japan"} <= set(profiles)
    assert f"error: unknown profile 'llama'; valid choices: {', '.join(map(repr, profiles))}" in result.stderr


# harness/ grouped by stage, lowest first: a module imports only from its own stage or lower ones.
LAYERS = ("core", "outputs", "world", "features", "statistics", "engine", "steering", "entry")
# Upward imports allowed, each inside a function: the family registry loads the built-in families on
# first use, and a profile's [steering] table is validated by the steering study's own config class.
LAZY_UPWARD = {("core/families.py", "harness.engine.claims_engine"), ("core/families.py", "harness.engine.facets"),
               ("core/config.py", "harness.steering.study")}


def test_imports_flow_one_way_between_stages():
    import ast

    root = REPO_ROOT / "harness"
    stray = sorted(p.name for p in root.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert stray == [], f"modules outside a stage package: {stray}"
    packages = sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    assert sorted(LAYERS) == packages
    violations = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names if a.name.startswith("harness.")]
            else:
                continue
            for module in modules:
                stage = module.split(".")[1]
                if LAYERS.index(stage) <= LAYERS.index(rel.parts[0]):
                    continue
                allowed = (str(rel), module) in LAZY_UPWARD and id(node) not in top_level
                if not allowed:
                    violations.append(f"{rel}:{node.lineno} imports {module} (stage {stage} is above {rel.parts[0]})")
    assert violations == []


def test_public_api_names_resolve():
    """Every name in harness.__all__ (the claims API) exists, and `from harness import *` gives them."""
    import harness

    namespace: dict = {}
    exec("from harness import *", namespace)  # noqa: S102 - the star import a researcher may write
    assert sorted(n for n in namespace if not n.startswith("__")) == sorted(harness.__all__)
    assert all(getattr(harness, name) is not None for name in harness.__all__)
