"""README.md is user documentation: short, its table of the embedded profile's claims generated from
the profile, its relative links alive, and nothing from a lab notebook (run ids, past timings,
measured results: those belong in docs/findings.md)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MAX_LINES = 400
PROFILE = "smollm2-135m"
BLOCK = re.compile(r"<!-- profile-claims: (?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /profile-claims -->", re.S)


def profile_claims_table(name: str) -> str:
    """The markdown table README carries for profile NAME: one row per declared claim, in the
    profile's order (its anchors sidecar included)."""
    from harness.core.config import load_profile

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    rows = ["| claim | family | gating | statement |", "|---|---|---|---|"]
    for claim in load_profile(name).claims:
        rows.append(f"| `{claim.claim_id}` | {claim.family} | {'yes' if claim.is_gating else 'no'} "
                    f"| {cell(claim.statement)} |")
    return "\n".join(rows) + "\n"


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_under_the_line_limit():
    lines = readme_text().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; keep it under {MAX_LINES} (details go to docs/)"


def test_the_profile_claims_table_matches_the_profile():
    blocks = {m["name"]: m["body"] for m in BLOCK.finditer(readme_text())}
    assert PROFILE in blocks, f"README.md lacks the block `<!-- profile-claims: {PROFILE} -->` ... `<!-- /profile-claims -->`"
    for name, body in blocks.items():
        expected = profile_claims_table(name)
        assert body == expected, (
            f"README's claims table for profile {name!r} is out of date. Replace everything between "
            f"`<!-- profile-claims: {name} -->` and `<!-- /profile-claims -->` with:\n\n{expected}")


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors_of(markdown: str) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_every_relative_link_points_to_a_file_that_exists():
    missing = []
    for match in LINK.finditer(readme_text()):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL, mailto:, or an anchor in README itself (checked below)
        path, _, anchor = target.partition("#")
        file = REPO_ROOT / path
        if not file.exists():
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors_of(file.read_text(encoding="utf-8")):
            missing.append(f"{target} (no such heading in {path})")
    assert not missing, f"README.md links to files or headings that do not exist: {missing}"


def test_every_in_page_anchor_names_a_heading():
    text = readme_text()
    anchors = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert anchors <= anchors_of(text), f"anchors without a heading: {sorted(anchors - anchors_of(text))}"


# A line of a lab notebook: run ids, dates, past timings, verdict tallies, "measured" results.
NOTEBOOK = {
    "a run id (20261201T125238Z-bdd4a4)": r"\b\d{8}T\d{6}Z\b",
    "the words 'run id'": r"(?i)\brun[ _-]?ids?\b",
    "a date (2026-12-01)": r"\b(19|20)\d\d-\d\d-\d\d\b",
    "a timing ('27 min 37 s')": r"\b\d+ ?min \d+ ?s\b",
    "a timing ('43 s', '2 minutes', '~18 min', '3.6 s')": r"\b\d+(\.\d+)? ?(s|secs?|seconds?|mins?|minutes?|h|hours?)\b(?!\.\w)",
    "a verdict tally ('11 held, 3 refuted')": r"(?i)\b\d+ (held|refuted|inconclusive|passed|failed)\b",
    "a measured result": r"(?i)\bmeasured\b",
    "a run's story": r"(?i)\bwhat broke\b|\bwhat changed against\b|\bprevious engine\b|\bbefore and after\b"
                     r"|\bon this (\d-core )?(cpu|machine)\b|\bthis session\b|\bnot yet re-?(run|measured)\b",
}


def test_no_line_reads_like_a_lab_notebook():
    found = [f"line {number}: {what}: {line.strip()}"
             for number, line in enumerate(readme_text().splitlines(), 1)
             for what, pattern in NOTEBOOK.items() if re.search(pattern, line)]
    assert not found, "README.md is user documentation; move these to docs/findings.md:\n" + "\n".join(found)


def test_the_notebook_patterns_catch_the_notebook_style():
    """The patterns above are not vacuous: lines in the style README used to carry are caught."""
    samples = [
        "took 27 min 37 s, 483 passed",
        "Run `20261201T125630Z-761779` (2026-12-01T12:56:30+00:00), verdict GO",
        "The main job from a warm cache takes about 43 s",
        "`discover` took 2 minutes and found no anchor",
        "findings, phase 1 (never gate): 11 held, 3 refuted, 9 inconclusive",
        "Measured on this 2-core CPU",
        "each run is kept under reports/runs/<run id>-<profile>/",
    ]
    for sample in samples:
        assert any(re.search(p, sample) for p in NOTEBOOK.values()), sample
