"""Regenerate fixtures/prompts/*.jsonl from the hand-written sources beside this script.

    python scripts/build_prompts.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from prompt_source_france import FRANCE  # noqa: E402
from prompt_source_near_miss import NEAR_MISS  # noqa: E402
from prompt_source_neutral import NEUTRAL  # noqa: E402

from harness.paths import PROMPTS_DIR, atomic_write_text  # noqa: E402


def write(name: str, records: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(PROMPTS_DIR / f"{name}.jsonl", text)
    print(f"{name}: {len(records)} prompts")


def main() -> None:
    france = [{"id": f"fr-{facet}-{i:02d}", "text": t, "set": "concept", "facet": facet, "country": "France"}
              for facet, texts in FRANCE.items() for i, t in enumerate(texts)]
    neutral = [{"id": f"neu-{facet}-{i:02d}", "text": t, "set": "neutral", "facet": facet}
               for facet, texts in NEUTRAL.items() for i, t in enumerate(texts)]
    near = [{"id": f"nm-{facet}-{i:02d}", "text": t, "set": "near_miss", "facet": facet, "country": c}
            for facet, pairs in NEAR_MISS.items() for i, (c, t) in enumerate(pairs)]
    write("france", france)
    write("neutral", neutral)
    write("near_miss", near)


if __name__ == "__main__":
    main()
