"""Prompt sets: validated, hashed, split by facet.

A prompt file is JSONL or plain text. JSONL: one object per line; only `text` is required.
`id` defaults to the file's stem and line number, `set` comes from the file's role (concept /
neutral / near_miss; a record that names another set is an error), `facet` is optional, and any
other fields are kept as metadata (shown beside top-activating prompts). A `.txt` file holds one
prompt per line. Duplicates within or across sets are errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.config import Profile
from harness.core.errors import ConfigError, choices_error

PROMPT_SETS = ("concept", "neutral", "near_miss")
KNOWN_KEYS = ("id", "text", "set", "facet", "country")

@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    set: str
    facet: str = ""
    country: str = ""
    meta: tuple[tuple[str, str], ...] = ()  # the researcher's own fields, kept as (key, JSON value)

    @property
    def metadata(self) -> dict[str, object]:
        return {k: json.loads(v) for k, v in self.meta}


TXT_COUNTRY = re.compile(r"^\s*\[([^\[\]]{1,60})\]\s+(.*)$")


def _records(path: Path, content: str, expected_set: str = ""):
    """(line number, record dict) per non-empty line, for JSONL or plain text. In a near-miss .txt file a
    line may start with its country in brackets, `[Spain] The Prado ...` (the steering study's other concept)."""
    plain = path.suffix.lower() == ".txt"
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if plain:
            tagged = TXT_COUNTRY.match(line) if expected_set == "near_miss" else None
            yield number, ({"text": tagged.group(2), "country": tagged.group(1).strip()} if tagged else {"text": line})
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path.name}:{number} is not valid JSON: {exc} (a .txt file holds one prompt per "
                              "line)") from exc
        if not isinstance(record, dict):
            raise ConfigError(f"{path.name}:{number} must be a JSON object with a \"text\", got "
                              f"{type(record).__name__}")
        yield number, record


def load_prompt_file(path: Path | str, expected_set: str) -> list[Prompt]:
    """Read and validate one prompt file (JSONL or .txt); every problem names the line and the value."""
    if expected_set not in PROMPT_SETS:
        raise choices_error("prompt set", expected_set, PROMPT_SETS)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt file {str(path)!r} does not exist")
    prompts: list[Prompt] = []
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    try:
        content = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first prompt
    except UnicodeDecodeError as exc:
        raise ConfigError(f"prompt file {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"prompt file {str(path)!r} cannot be read: {exc.strerror}") from exc
    for number, record in _records(path, content, expected_set):
        where = f"{path.name}:{number}"
        if "text" not in record:
            raise ConfigError(f"{where} has no \"text\" (keys: {sorted(record)})")
        if not isinstance(record["text"], str):
            raise ConfigError(f"{where} has a text that is not a string: {record['text']!r}")
        if record.get("set", expected_set) != expected_set:
            raise ConfigError(f"{where} has set {record['set']!r}; this file is for {expected_set!r}")
        text = record["text"].strip()
        if not text:
            raise ConfigError(f"{where} has an empty text")
        # Generated ids carry the set: two files named prompts.txt for two sets never collide.
        prompt_id = str(record.get("id", f"{expected_set}:{path.stem}-{number}"))
        if prompt_id in seen_ids:
            raise ConfigError(f"{where} repeats id {prompt_id!r}")
        if text.lower() in seen_texts:
            raise ConfigError(f"{where} repeats the text {text!r}")
        seen_ids.add(prompt_id)
        seen_texts.add(text.lower())
        meta = tuple((k, json.dumps(v, ensure_ascii=False)) for k, v in record.items() if k not in KNOWN_KEYS)
        prompts.append(Prompt(id=prompt_id, text=text, set=expected_set, facet=str(record.get("facet", "")),
                              country=str(record.get("country", "")), meta=meta))
    if not prompts:
        raise ConfigError(f"prompt file {str(path)!r} holds no prompts")
    return prompts


@dataclass(frozen=True)
class PromptSets:
    concept: tuple[Prompt, ...]
    neutral: tuple[Prompt, ...]
    near_miss: tuple[Prompt, ...]

    def all(self) -> list[Prompt]:
        return [*self.concept, *self.neutral, *self.near_miss]

    def hashes(self) -> dict[str, str]:
        return {name: prompts_hash(getattr(self, name)) for name in PROMPT_SETS}


def prompts_hash(prompts) -> str:
    payload = json.dumps([[p.id, p.text, p.facet] for p in prompts], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_prompt_sets(profile: Profile) -> PromptSets:
    sets = {}
    for name in PROMPT_SETS:
        value = getattr(profile.prompts, name)
        sets[name] = tuple(load_prompt_file(profile.prompts.resolve(name), name)) if value else ()
    owner: dict[str, str] = {}
    for name, prompts in sets.items():
        for p in prompts:
            if p.id in owner:
                files = [profile.prompts.resolve(n).name for n in (owner[p.id], name)]
                raise ConfigError(f"prompt id {p.id!r} is in both the {owner[p.id]} set ({files[0]}) and the {name} "
                                  f"set ({files[1]}); ids must be unique across sets")
            owner[p.id] = name
    seen: dict[str, str] = {}
    for name, prompts in sets.items():
        for p in prompts:
            key = p.text.lower()
            if key in seen and seen[key] != name:
                raise ConfigError(f"prompt {p.id!r} in the {name} set repeats a {seen[key]} prompt's text {p.text!r}: "
                                  "a text cannot count for both sets")
            seen[key] = name
    words = concept_words_for(profile)
    for name in ("neutral", "near_miss"):
        for p in sets[name]:
            found = concept_words_in(p.text, words)
            if found:
                raise ConfigError(f"{name} prompt {p.id!r} ({profile.prompts.resolve(name).name}) mentions the concept "
                                  f"({', '.join(found)}): {p.text!r}; only concept prompts may")
    return PromptSets(**sets)


def concept_words_for(profile: Profile) -> tuple[str, ...]:
    """The words that mark a text as being about the concept (`prompts.concept_words`; none: no check).
    Kept as written: a word with a capital letter matches only that spelling (see concept_words_in)."""
    return tuple(profile.prompts.concept_words)


def all_prompt_texts(profile: Profile) -> list[str]:
    """Every evaluation prompt text the profile names (for keeping them out of training text)."""
    try:
        return [p.text for p in load_prompt_sets(profile).all()]
    except ConfigError:
        return []


def concept_words_in(text: str, words) -> list[str]:
    """The concept words that occur in the text as whole words. A word written in lower case matches in any
    case ("paris" matches "Paris"); a word with a capital letter matches only as written, so "Nice" (the city)
    does not match "Have a nice day"."""
    found = []
    for w in words:
        flags = 0 if any(c.isupper() for c in w) else re.IGNORECASE
        if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w])", text, flags):
            found.append(w)
    return found


def discovery_mask(prompts, seed: int) -> np.ndarray:
    """True for the discovery half: shuffled within each facet by a seeded RNG, first half taken.

    Facets with an odd count put the extra prompt in confirmation, so both halves see every facet.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(prompts), dtype=bool)
    facets = sorted({p.facet for p in prompts})
    for facet in facets:
        members = np.array([i for i, p in enumerate(prompts) if p.facet == facet])
        members = members[rng.permutation(len(members))]
        mask[members[: len(members) // 2]] = True
    return mask
