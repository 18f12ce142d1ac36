"""harness is a library: importable without pytest, no module of it imports claims or fixtures (the
registry loads the built-in claim modules by path), and its stages import one way only."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path
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
# `from harness import X` is the public API (harness/__init__.py loads harness.engine.api): stage engine;
# `from harness import __version__` is package metadata only (harness/__init__.py itself): stage core.
LAYERS = ("core", "outputs", "world", "features", "statistics", "engine", "steering", "entry")
PACKAGE_STAGE = "engine"


def harness_imports(tree):
    """(node, module) for every import of a harness module, including `import harness` and
    `from harness import X` (a name of the public API)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module == "harness" or node.module.startswith("harness.")):
            metadata_only = node.module == "harness" and all(alias.name == "__version__" for alias in node.names)
            yield node, "harness.core" if metadata_only else node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "harness" or alias.name.startswith("harness."):
                    yield node, alias.name


def stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else PACKAGE_STAGE


def test_imports_flow_one_way_between_stages():
    """Every import, at module level or inside a function, counts: none runs back up."""
    root = REPO_ROOT / "harness"
    stray = sorted(p.name for p in root.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert stray == [], f"modules outside a stage package: {stray}"
    packages = sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file())
    assert sorted(LAYERS) == packages
    violations, seen = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue
        for node, module in harness_imports(ast.parse(path.read_text())):
            seen += 1
            if LAYERS.index(stage_of(module)) > LAYERS.index(rel.parts[0]):
                violations.append(f"{rel}:{node.lineno} imports {module} (stage {stage_of(module)} is above {rel.parts[0]})")
    assert seen > 100  # the walk sees the imports inside functions too
    assert violations == []


def test_the_import_walk_sees_every_form():
    source = ("import harness\nfrom harness import evaluate\nfrom harness import __version__\ndef f():\n"
              "    import harness.entry.cli\n    from harness.steering import study\n")
    found = [module for _, module in harness_imports(ast.parse(source))]
    assert found == ["harness", "harness", "harness.core", "harness.entry.cli", "harness.steering"]
    assert [stage_of(m) for m in found] == ["engine", "engine", "core", "entry", "steering"]


def test_claim_modules_use_only_the_public_api():
    """A researcher learns the API by reading claims/: every built-in claim module imports from `harness`
    itself (harness.__all__), never from its internals."""
    for path in sorted((REPO_ROOT / "claims").glob("test_*.py")):
        modules = {module for _, module in harness_imports(ast.parse(path.read_text()))}
        assert modules == {"harness"}, f"{path.name} imports {sorted(modules)}"


def test_pytest_and_calibration_call_the_same_decision():
    """The registry's decision for each built-in family is the function written in its claim module:
    the one `pytest claims/` runs and `evaluate` (calibration, discovery) dispatches to."""
    from harness.core.families import get_family, registered_families
    from harness.core.paths import BUILTIN_CLAIMS_PACKAGE

    import importlib

    for name in registered_families():
        family = get_family(name)
        module = importlib.import_module(f"{BUILTIN_CLAIMS_PACKAGE}.test_{'facets' if name == 'facet' else name}")
        assert family.evaluate is getattr(module, f"decide_{name}"), name
        assert family.evaluate.__code__.co_filename == str(REPO_ROOT / "claims" / Path(module.__file__).name)


def test_public_api_names_resolve():
    """Every name in harness.__all__ (the claims API) exists, and `from harness import *` gives them."""
    import harness

    namespace: dict = {}
    exec("from harness import *", namespace)  # noqa: S102 - the star import a researcher may write
    assert sorted(n for n in namespace if not n.startswith("__")) == sorted(harness.__all__)
    assert all(getattr(harness, name) is not None for name in harness.__all__)
