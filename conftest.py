"""Root conftest: the claims plugin and the session fixtures, for claims/ and tests/ alike."""

pytest_plugins = ["harness.entry.plugin", "fixtures.claims_fixtures"]
