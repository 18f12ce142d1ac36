"""Render `claims.json` into one self-contained HTML page (plotly inlined, no CDN).

Only reads the ledger: every number shown was computed by the harness and stored there. The page
is the gate, the claims table, then one section per family with claims: the family's own (its
`report=` function, built from harness.outputs.figures and .sections) or the generic one.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from harness.core.families import get_family
from harness.core.paths import atomic_write_text
from harness.outputs.ledger import ClaimRecord, Ledger, diff_ledgers, findings_summary, read_ledger
from harness.outputs.sections import Section, Table, cell, format_number, generic_section


def _part(part, section_id: str, figures: list[dict]) -> dict | None:
    """One part of a section as the template draws it; figures join the page's list under unique ids."""
    def place(figure: dict) -> str:
        figure = dict(figure)
        base = str(figure.get("id") or f"{section_id}-figure")
        taken = {f["id"] for f in figures}
        figure["id"] = base if base not in taken else next(f"{base}-{n}" for n in range(2, 10_000)
                                                              if f"{base}-{n}" not in taken)
        figures.append(figure)
        return figure["id"]

    if part is None:
        return None
    if isinstance(part, dict):
        return {"kind": "figures", "ids": [place(part)], "wide": True}
    if isinstance(part, list):
        ids = [place(f) for f in part if f]
        return {"kind": "figures", "ids": ids, "wide": False} if ids else None
    if isinstance(part, Table):
        return {"kind": "table", "title": part.title, "note": part.note, "collapsed": part.collapsed,
                "sortable": part.sortable, "columns": part.columns,
                "rows": [[cell(v) for v in row] for row in part.rows]}
    if isinstance(part, ClaimRecord):
        return {"kind": "claim", "record": part}
    return {"kind": "text", "text": str(part)}


def family_sections(ledger: Ledger, figures: list[dict]) -> list[dict]:
    """One section per family with claims in this ledger, in claim order: the family's own (`report=`)
    or the generic one. A section that fails to build falls back to the generic one and says why."""
    by_family: dict[str, list[ClaimRecord]] = {}
    for record in ledger.claims:
        by_family.setdefault(record.family, []).append(record)
    out = []
    for name, records in by_family.items():
        family, problem = get_family(name), ""
        section = None
        if family is not None and family.report is not None:
            try:
                section = family.report(records, ledger)
            except Exception as exc:  # noqa: BLE001 - a broken section must not lose the report
                problem = f"this family's report section failed ({type(exc).__name__}: {exc}); shown plainly"
        if not isinstance(section, Section):
            section = generic_section(name, records)
            if problem:
                section.note = problem
        section_id = name.replace("_", "-")
        parts = [p for p in (_part(part, section_id, figures) for part in section.parts) if p is not None]
        out.append({"id": section_id, "title": section.title, "note": section.note, "lead": section.lead,
                    "parts": parts, "family": name})
    return out


def build_context(ledger: Ledger, baseline: Ledger | None) -> dict:
    figures: list[dict] = []
    sections = family_sections(ledger, figures)
    return {
        "ledger": ledger, "tables": ledger.tables, "figures": figures, "sections": sections,
        "diff": diff_ledgers(ledger, baseline) if baseline else (ledger.diff or None),
        "gate": ledger.gate or {}, "findings": findings_summary(ledger.claims),
        "has_control": any(c.control_verdict for c in ledger.claims),
        "n_passed": sum(c.passed for c in ledger.claims), "n_claims": len(ledger.claims),
        "n_inconclusive": sum(c.verdict == "inconclusive" for c in ledger.claims),
        "n_refuted": sum(c.verdict == "refuted" for c in ledger.claims),
    }


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def render_html(ledger: Ledger, baseline: Ledger | None = None) -> str:
    env = Environment(loader=PackageLoader("harness.outputs", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["tojson_safe"] = lambda v: json.dumps(v, default=float).replace("</", "<\\/")
    template = env.get_template("report.html.j2")
    return template.render(plotly_js=plotly_js(), **build_context(ledger, baseline))


def render_report(ledger_path: Path | str, out_path: Path | str, baseline: Path | str | None = None) -> Path:
    ledger = read_ledger(ledger_path)
    base = read_ledger(baseline) if baseline else None
    out = Path(out_path)
    atomic_write_text(out, render_html(ledger, base))
    return out
