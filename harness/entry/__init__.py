"""Entry points: the pytest plugin, the CLI, the session that ties a run together, preflight checks and discovery."""
