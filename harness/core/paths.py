"""Where things live: the built-in claims and data (profiles, prompts, SAEs, calibration), and the user cache.

From a source checkout they are the repository's `claims/` and `fixtures/`; from an installed wheel
they are shipped inside the package as `harness/builtin_claims/` and `harness/builtin_fixtures/`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = HARNESS_DIR.parent  # the checkout (or, installed, site-packages: nothing there is ours)
INSTALLED = (HARNESS_DIR / "builtin_fixtures").is_dir()
FIXTURES_DIR = HARNESS_DIR / "builtin_fixtures" if INSTALLED else REPO_ROOT / "fixtures"
BUILTIN_CLAIMS_DIR = HARNESS_DIR / "builtin_claims" if INSTALLED else REPO_ROOT / "claims"
PROFILES_DIR = FIXTURES_DIR / "profiles"
PROMPTS_DIR = FIXTURES_DIR / "prompts"
SAES_DIR = FIXTURES_DIR / "saes"

CACHE_ENV = "SAE_CLAIMS_CACHE"
BUILTIN_CLAIMS_PACKAGE = "harness.builtin_claims"
BUILTIN_FIXTURES_PACKAGE = "harness.builtin_fixtures"


def import_shipped(package: str, folder: Path, stem: str):
    """Import folder/stem.py as `package.stem`, registering `package` (folder/__init__.py) first. The
    built-in claims and fixtures are loaded this way, by path, so that the same names work in a
    checkout (where they are claims/ and fixtures/) and in an installed wheel."""
    import importlib
    import importlib.util
    import sys

    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{stem}")


def cache_dir() -> Path:
    """User cache: $SAE_CLAIMS_CACHE, else $XDG_CACHE_HOME/sae-claims, else ~/.cache/sae-claims."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        root = Path(explicit)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sae-claims"
    root.mkdir(parents=True, exist_ok=True)
    return root


TEMP_MARK = ".tmp-"  # every temp file or folder this project makes carries it


def clean_stale_temp(folder: Path, *, older_than_s: float = 3600) -> list[Path]:
    """Remove temp files and folders a killed run left behind (older than an hour, so a live run's stay)."""
    import time

    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if TEMP_MARK not in entry.name:
            continue
        try:
            if time.time() - entry.stat().st_mtime < older_than_s:
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


@contextmanager
def atomic_dir(final: Path):
    """Yield a temp dir beside `final`; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARK}", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the result should read like any folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def unwritable_reason(target: Path) -> tuple[Path, str | None]:
    """The nearest folder that exists at or above `target`, and why a file cannot be made there (None:
    it can). Nothing is created: a run that fails later leaves no trace."""
    existing = Path(target)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return existing, f"{str(existing)!r} is a file"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return existing, exc.strerror or type(exc).__name__
    return existing, None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
