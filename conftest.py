"""Root conftest. The claims plugin (harness.entry.plugin, which also registers the session fixtures
in fixtures/claims_fixtures.py) is installed as a pytest11 entry point by `pip install -e .`; a
checkout used without installing it (PYTHONPATH only) loads it from here instead."""

from importlib.metadata import entry_points

if not any(ep.name == "sae_claims" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.entry.plugin"]
