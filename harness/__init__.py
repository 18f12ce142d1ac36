"""Interpretability-claims harness: the library behind `pytest claims/`.

Importable without pytest. No module imports `claims` or `fixtures`: the built-in claim modules
are loaded by path by the family registry, as plugins (harness.core.families). The public
claims API (`from harness import claim_family, Param, record_interval, ...`) is documented in
`harness.engine.api`; it loads on first use, so `import harness.entry.cli` stays light.
"""

from harness.core.version import __version__  # noqa: F401 - the package metadata, re-exported

from harness.core.public import PUBLIC_NAMES

__all__ = list(PUBLIC_NAMES)


def __getattr__(name: str):
    if name in __all__:
        from harness.engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
