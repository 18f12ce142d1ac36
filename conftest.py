"""Root conftest: the claims plugin and the session fixtures, for claims/ and tests/ alike."""

pytest_plugins = ["harness.plugin", "fixtures.claims_fixtures"]
