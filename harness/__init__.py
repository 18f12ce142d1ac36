"""Interpretability-claims harness: the library behind `pytest claims/`.

Importable without pytest. Never imports `claims` or `fixtures` (they import it).
"""

__version__ = "0.1.0"
