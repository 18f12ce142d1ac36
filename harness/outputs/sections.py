"""A family's section of the HTML report, and the tables the built-in sections show.

A family registered with `report=` returns a `Section` from its claims and the ledger; every other
family gets `generic_section` (each claim's verdict, statement, reason and details). A section is
a list of parts, shown in order: a plotly figure (a dict), a list of figures (a grid), a `Table`,
a paragraph (a str), or a `ClaimRecord` (its verdict, statement and reason).

Cells are plain values (numbers are formatted, text is escaped); the helpers `link`, `swatch` and
`bold` make the few rich cells the built-in sections need, escaping what they wrap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from harness.outputs.figures import CATEGORY_COLOURS


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    note: str = ""
    collapsed: str = ""  # non-empty: the table sits folded under this summary line
    sortable: bool = True


@dataclass
class Section:
    title: str
    parts: list[Any] = field(default_factory=list)
    note: str = ""
    lead: bool = False  # shown at the top of the report, under the gate (the GO rule's section)


def format_number(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) != 0 and (abs(value) < 10 ** -digits or abs(value) >= 10**6):
        return f"{value:.{max(1, digits - 1)}e}"
    return f"{value:.{digits}f}"


def link(text: str, href: str) -> Markup:
    return Markup('<a href="{}" target="_blank" rel="noopener">{}</a>').format(href, text)


def swatch(colour: str, text: str) -> Markup:
    return Markup('<span class="swatch" style="background: {}"></span>{}').format(colour, text)


def bold(text: str) -> Markup:
    return Markup("<b>{}</b>").format(text)


def cell(value) -> dict:
    """A table cell for the template: its html, whether it is a number, and its sort key."""
    if isinstance(value, Markup):
        return {"html": value, "num": False, "sort": None}
    if isinstance(value, bool):
        return {"html": escape(format_number(value)), "num": False, "sort": None}
    if isinstance(value, (int, float)) or value is None:
        return {"html": escape(format_number(value)), "num": True, "sort": "" if value is None else value}
    return {"html": escape(value if isinstance(value, str) else json.dumps(value, default=float)), "num": False,
            "sort": None}


def detail_rows(details: dict) -> list[list[str]]:
    """A record's details as (key, short text) rows."""
    out = []
    for key, value in details.items():
        if isinstance(value, (int, float, bool)) or value is None:
            text = format_number(value)
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=float)
            if len(text) > 240:
                text = text[:237] + "..."
        out.append([key, text])
    return out


def claim_details(record) -> Table:
    return Table(["detail", "value"], detail_rows(record.details), collapsed="Details", sortable=False)


def generic_section(family: str, claims: list) -> Section:
    """Each claim's verdict, statement and reason, and its details folded below."""
    parts: list[Any] = []
    for record in claims:
        parts += [record, claim_details(record)]
    return Section(family.replace("_", " ").capitalize(), parts)


# ---- the built-in sections' tables --------------------------------------------------------------

def ranked_features_table(tables: dict, role: str, neuronpedia: str = "", top: int = 20) -> Table:
    """The seed's list: the top features by selectivity, with their means, AUROC, fire rates and q."""
    rows = []
    for r in (tables.get("ranked_features") or {}).get(role, [])[:top]:
        name = f"{role[0].upper()}-{r['feature']}"
        rows.append([
            Markup("{} {}").format(name, link("↗", f"https://www.neuronpedia.org/{neuronpedia}/{r['feature']}"))
            if neuronpedia else name,
            r["mean_concept"], r["mean_neutral"], r.get("mean_near_miss"), r["selectivity"],
            r.get("selectivity_near_miss"), r["auroc"],
            f"{100 * r['fire_rate_concept']:.0f}% / {100 * r['fire_rate_neutral']:.0f}%", r.get("q_value")])
    return Table(["feature", "mean concept", "mean neutral", "mean near-miss", "selectivity", "vs near-miss",
                  "AUROC", "fire rate c / n", "q"], rows, title=f"{role} SAE: top features")


def pairs_table(tables: dict) -> Table:
    pairs = tables.get("pairs") or []
    rows = [[f"C-{p['coarse']}", f"F-{p['fine']}", p["cosine"], p.get("correlation"), p.get("p_value"),
             p.get("q_value"), swatch(CATEGORY_COLOURS.get(p.get("category"), "#999"), p.get("category", "")),
             p.get("sub_feature")] for p in pairs]
    return Table(["coarse", "fine", "cosine", "correlation", "p", "q", "category", "sub-feature"], rows,
                 collapsed=f"All pairs ({len(pairs)})")


def _gate_row(part: dict, label: str) -> list:
    s, g, c = part["selectivity"], part["geometry"], part["sub_features"]
    num = format_number
    selectivity = Markup("{} [{}, {}] &gt; {}? {}").format(num(s["estimate"]), num(s["low"]), num(s["high"]),
                                                           s["bar"], bold(s["verdict"]))
    if g.get("rule") == "none":
        geometry = "not required"
    else:
        geometry = Markup("{} rows ≥ {} vs null median {} (rank p {}){} {}").format(
            g["beyond_cutoff"], g["cutoff"], num(g.get("null_median"), 0), num(g.get("rank_p"), 4),
            f"; null's 95% max {num(g.get('crowd_q95'))}" if g.get("crowd_verdict") else "", bold(g["verdict"]))
    count = Markup("≥ {} of {} tested (need {}; BH {}) {}").format(c["lower_bound"], c["tested"], c["need"],
                                                                   c.get("bh_discoveries"), bold(c["verdict"]))
    return [label, f"coarse-{part['anchor']}", selectivity, geometry, count, "GO" if part["verdict"] == "held" else "no"]


def gate_anchor_table(gate: dict, control: dict | None) -> Table:
    """Each anchor's three parts of the GO rule, on the trained SAEs and on the random-SAE control."""
    rows = [_gate_row(part, "trained") for part in gate.get("anchors") or []]
    if gate.get("control_required") and control:
        if control.get("anchors"):
            rows += [_gate_row(part, "random (control)") for part in control["anchors"]]
        else:
            rows.append(["random (control)", control.get("reason") or "no anchor", "", "", "", "no"])
    return Table(["SAEs", "anchor", "1. prefers the concept (selectivity interval)",
                  "2. cutoff beyond the null (aligned rows)", "3. true sub-features (lower bound)", "GO?"],
                 rows, sortable=False)


def steering_tables(steering: dict) -> list:
    """The methods at matched fluency cost, the lexicons and timings, and the side-by-side samples."""
    parts: list[Any] = []
    summary, lexicons = steering.get("summary") or {}, steering.get("lexicons") or {}
    concept = (lexicons.get("concept") or {}).get("name", "concept")
    other = (lexicons.get("other") or {}).get("name", "other")
    if summary:
        rows = [[name, row.get("kind"), row.get("coefficient"), row.get("kl"), row.get("concept_shift"),
                 row.get("other_shift"), row.get("wrong_way"),
                 "" if row.get("concept_share") is None else f"{100 * row['concept_share']:.1f}%"]
                for name, row in summary.items()]
        parts.append(Table(["method", "kind", "coefficient", "KL reached", f"{concept}-word shift",
                            f"{other}-word shift", "wrong-way prompts", f"{concept} words in samples"], rows,
                           title="Methods at matched fluency cost"))
        timings = " · ".join(f"{k} {v}" for k, v in (steering.get("timings") or {}).items())
        parts.append(f"Lexicons: {concept} = {', '.join((lexicons.get('concept') or {}).get('words', []))}; "
                     f"{other} = {', '.join((lexicons.get('other') or {}).get('words', []))}. Timings (s): {timings}.")
    words = [(lex.get("name", ""), w) for lex in (lexicons.get("concept") or {}, lexicons.get("other") or {})
             for w in lex.get("per_word") or []]
    if words:
        parts.append(Table(["lexicon", "word", "base probability (unsteered)", "shift under the anchor (nats)",
                            "base probability, discovery prompts"],
                           [[name, w["word"], w["base_probability"], w["anchor_shift"],
                             w.get("discovery_base_probability")] for name, w in words],
                           title="Each lexicon word, whole words, confirmation prompts (last column: discovery)",
                           collapsed=f"Per word ({len(words)})"))
    examples = steering.get("examples") or []
    if examples:
        conditions = [c for c in examples[0] if c != "prompt"]
        parts.append(Table(["prompt", *conditions], [[ex.get("prompt"), *(ex.get(c) for c in conditions)]
                                                     for ex in examples],
                           title="Examples side by side (same seed)", sortable=False))
    return parts


def facet_table(record) -> Table | None:
    rows = record.details.get("sub_features") or []
    if not rows:
        return None
    return Table(["sub-feature", "chosen facet (discovery)", "discovery p", "discovery q",
                  "confirmation: chosen minus best other [interval]", "best other", "confirmation q", "confirmed"],
                 [[f"F-{r['fine']}", r.get("chosen_facet"), r.get("discovery_p"), r.get("discovery_q"),
                   (f"{format_number(r['confirmation']['value'])} [{format_number(r['confirmation']['ci_low'])}, "
                    f"{format_number(r['confirmation']['ci_high'])}]") if r.get("confirmation") else "—",
                   r.get("runner_up") or "—", r.get("confirmation_q"), r.get("confirmed")] for r in rows])
