"""The ledger (`claims.json`): typed records, a generated JSON Schema, atomic writes, diffs.

The HTML report is rendered from this file alone; `python -m harness report LEDGER`
re-renders without running anything.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from harness.core.families import family_order, families_in_order
from harness.core.paths import INSTALLED, REPO_ROOT, atomic_write_text

SCHEMA_VERSION = "2"
ROLES = ("gate", "gating", "finding", "phase 2")


def claim_order(record) -> tuple:
    """The order claims are listed in (ledger, report, verdict reason): by their family's `order`."""
    return (*family_order(record.family), record.id)


class Effect(BaseModel):
    name: str = Field(description="what the effect measures")
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float | None = None


class ClaimRecord(BaseModel):
    id: str = Field(description="family[name], the pytest parameter id")
    family: str
    statement: str
    statistic_name: str
    statistic: float | None
    threshold: float | None
    comparison: Literal[">", ">=", "<", "<=", "=="] = ">="
    p_value: float | None = None
    q_value: float | None = None
    effect: Effect | None = None
    passed: bool = Field(description="verdict == 'held'")
    verdict: Literal["held", "refuted", "inconclusive", "not evaluated"] = Field(
        "not evaluated", description="held: the interval clears the threshold; refuted: it lies on the wrong side; "
                                     "inconclusive: it straddles; not evaluated: the claim was not run (deselected, "
                                     "stopped early), could not be computed, or had too little data (see reason)")
    prompts_to_decide: int | None = Field(
        None, description="for an inconclusive claim: prompts per set that would decide it at 80% power "
                          "(the largest set in prompts_needed when that is given)")
    prompts_needed: dict[str, int] | None = Field(
        None, description="for an inconclusive claim: the prompts each named set needs in all to decide it at 80% "
                          "power, simulated through the claim's own interval (sets not named stay as they are)")
    prompts_now: dict[str, int] | None = Field(None, description="the prompts each set of prompts_needed has now")
    by_construction: bool = Field(False, description="true by the SAE's architecture (e.g. L0 = k for TopK), "
                                                     "not a finding")
    reason: str = Field("", description="one sentence: why it held, was refuted or stayed inconclusive")
    gating: bool = Field(False, description="true: GO needs this claim (the GO rule's claim, and any the profile "
                                            "marks gating); false: a finding, reported beside the gate")
    role: Literal["gate", "gating", "finding", "phase 2"] = Field(
        "finding", description="gate: the GO rule itself; gating: GO also needs it; finding: a phase 1 finding "
                               "beside the gate; phase 2: a finding of the study GO starts (never gates)")
    control_verdict: str | None = Field(None, description="the same claim on a random SAE of the same shape (the "
                                                          "negative control); None when not evaluated there")
    control_reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0
    nodeid: str = ""

    @model_validator(mode="before")
    @classmethod
    def _verdict_from_old_ledgers(cls, data):
        """Schema 1 ledgers had only `passed`: read them as held / refuted."""
        if isinstance(data, dict) and "verdict" not in data and "passed" in data:
            data = {**data, "verdict": "held" if data["passed"] else "refuted"}
        if isinstance(data, dict) and "role" not in data and data.get("gating"):
            data = {**data, "role": "gating"}  # ledgers before roles: a gating claim at least gates
        return data

    @property
    def message(self) -> str:
        """What pytest prints when the claim did not hold: refuted and inconclusive read differently."""
        if self.verdict == "refuted":
            return f"REFUTED: {self.reason}"
        if self.verdict == "inconclusive":
            more = (f"; about {self.prompts_to_decide} prompts per set would decide it at 80% power"
                    if self.prompts_to_decide else "")
            if self.prompts_needed:
                more = "; " + " and ".join(f"about {total} {name} prompts (now {(self.prompts_now or {}).get(name, '?')})"
                                           for name, total in self.prompts_needed.items()) + " would decide it at 80% power"
            return f"INCONCLUSIVE (the interval straddles the threshold): {self.reason}{more}"
        if self.verdict == "not evaluated":
            return f"NOT EVALUATED: {self.reason}"
        return f"HELD: {self.reason}"

    def __repr__(self) -> str:  # pytest prints this on failure; the reason says the rest
        return f"ClaimRecord({self.id!r}, verdict={self.verdict!r})"


class SaeRecord(BaseModel):
    role: str
    source: str
    d_sae: int
    hash: str
    release: str = ""
    sae_id: str = ""
    path: str = ""
    architecture: str = ""
    cfg: dict[str, Any] = Field(default_factory=dict)


class Ledger(BaseModel):
    schema_version: str = SCHEMA_VERSION
    run_id: str
    created_at: str
    git_commit: str
    library_versions: dict[str, str]
    profile: str
    profile_description: str = ""
    model: str
    model_detail: dict[str, str] = Field(default_factory=dict, description="what identifies the model's weights "
                                         "(content hash, dtype, source): a re-validation diff names a change")
    hook: str
    seed: int
    permutations: int
    split: str
    saes: dict[str, SaeRecord]
    prompt_hashes: dict[str, str]
    prompt_counts: dict[str, int]
    verdict: Literal["GO", "NO-GO"]
    verdict_reason: str
    gate: dict[str, Any] = Field(default_factory=dict, description="the GO rule, the claims it used, its verdict, "
                                 "the random-SAE control's verdict, per-anchor parts, and findings beside it")
    sequential: dict[str, Any] = Field(default_factory=dict, description="for a profile with declared looks: this "
                                       "run's look, the looks declared, the spending function, the alpha this look "
                                       "decided at and the alpha spent up to it")
    claims: list[ClaimRecord]
    tables: dict[str, Any] = Field(default_factory=dict, description="data for the report's figures")
    steering: dict[str, Any] = Field(default_factory=dict)
    exit_status: int | None = None
    partial: bool = Field(False, description="some declared claims were not run in this session (-k, -x, ...)")
    profile_source: str = Field("", description="where the profile name came from (--profile, environment, ini, default)")
    stand_in: list[str] = Field(default_factory=list, description="what loaded from `python -m harness stand-in` "
                                "(random weights): the findings of such a run are meaningless")
    diff: dict[str, Any] = Field(default_factory=dict, description="with --baseline: what changed (model, SAEs, "
                                 "prompts, libraries), claims flipped / moved / changed, features followed")


def ledger_schema() -> dict:
    return Ledger.model_json_schema()


def git_commit() -> str:
    """This checkout's commit; an installed wheel has none (its version says what it is)."""
    if INSTALLED:
        from harness.core.version import __version__

        return f"sae-claims {__version__} (installed)"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=False, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=False, timeout=5)
        commit = out.stdout.strip() or "unknown"
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_run_id() -> tuple[str, str]:
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", now.isoformat(timespec="seconds")


def go_rule_names() -> list[str]:
    return [f.name for f in families_in_order() if f.go_rule]


def decide_verdict(claims: list[ClaimRecord]) -> tuple[str, str]:
    """GO when the GO rule's claim held, and any claim the profile marked `gating = true` too.

    Every other claim is a finding: reported with its own verdict beside the gate, never counted.
    Phase 2 claims (steering) can never gate (the profile refuses it)."""
    gate = [c for c in claims if c.role == "gate"]
    extra = [c for c in claims if c.role == "gating"]
    if not gate:
        return "NO-GO", f"no claim of the GO rule ({' or '.join(go_rule_names()) or 'none registered'}) was declared: there is no GO rule"
    failed = [c for c in gate + extra if c.verdict != "held"]
    if not failed:
        text = gate[0].reason
        if extra:
            text += f"; and the {len(extra)} claim{'s' * (len(extra) != 1)} marked gating held"
        return "GO", text
    parts = [f"{c.id} {c.verdict}: {c.reason}" if c.role == "gate" else f"{c.id} {c.verdict}" for c in failed]
    return "NO-GO", "; ".join(parts)


def findings_summary(claims: list[ClaimRecord]) -> dict[str, dict[str, int]]:
    """Verdict counts of the claims beside the gate: phase 1 findings and phase 2 findings."""
    out = {}
    for phase, role in (("phase 1", "finding"), ("phase 2", "phase 2")):
        members = [c for c in claims if c.role == role]
        out[phase] = {v: sum(c.verdict == v for c in members) for v in ("held", "refuted", "inconclusive",
                                                                         "not evaluated")}
    return out


def gate_summary(claims: list[ClaimRecord], verdict: str, reason: str) -> dict[str, Any]:
    """The ledger's `gate` object: the rule, the claims it used, its verdict and the control's."""
    gate = next((c for c in claims if c.role == "gate"), None)
    details = gate.details if gate is not None else {}
    control = details.get("control") or None
    return {
        "verdict": verdict, "reason": reason,
        "rule": details.get("rule", "no GO rule declared"),
        "claims": ([gate.id] if gate else []) + [c.id for c in claims if c.role == "gating"],
        "gate_claim_verdict": gate.verdict if gate else None,
        "control_required": bool(details.get("control_required")),
        "control_verdict": None if control is None else ("GO" if control.get("verdict") == "held" else "NO-GO"),
        "control_anchors": (control or {}).get("picked", []),
        "alpha_per_anchor": details.get("alpha_per_anchor"),
        "anchors": details.get("anchors", []),
        "findings": findings_summary(claims),
    }


def write_ledger(ledger: Ledger, path: Path) -> None:
    atomic_write_text(path, ledger.model_dump_json(indent=2))


def read_ledger(path: Path | str) -> Ledger:
    return Ledger.model_validate_json(Path(path).read_text())


def _changes(now: dict, then: dict, keys) -> list[str]:
    return [f"{k} {then.get(k)} -> {now.get(k)}" for k in sorted(keys) if now.get(k) != then.get(k)]


def changed_parts(current: Ledger, baseline: Ledger) -> list[str]:
    """What differs between two runs: model, hook, each SAE (by content hash), prompt sets, libraries."""
    out = []
    for key in ("model", "hook"):
        if getattr(current, key) != getattr(baseline, key):
            out.append(f"{key} {getattr(baseline, key)!r} -> {getattr(current, key)!r}")
    moved = _changes(current.model_detail, baseline.model_detail, set(current.model_detail) & set(baseline.model_detail))
    if moved:
        out.append("model weights (" + ", ".join(moved) + ")")
    for role in sorted(set(current.saes) | set(baseline.saes)):
        now, then = current.saes.get(role), baseline.saes.get(role)
        if now is None or then is None:
            out.append(f"{role} SAE {'added' if then is None else 'removed'}")
        elif now.hash != then.hash:
            where = now.path or f"{now.release}/{now.sae_id}"
            out.append(f"{role} SAE (weights {then.hash} -> {now.hash}, now {where})")
    for name in sorted(set(current.prompt_hashes) | set(baseline.prompt_hashes)):
        if current.prompt_hashes.get(name) != baseline.prompt_hashes.get(name):
            out.append(f"{name} prompts")
    ceilings_now = current.tables.get("activation_ceilings", {})
    ceilings_then = baseline.tables.get("activation_ceilings", {})
    for role in sorted(set(ceilings_now) | set(ceilings_then)):
        if ceilings_then and ceilings_now.get(role) != ceilings_then.get(role):
            now = "recorded" if str(ceilings_now.get(role, "")).startswith("recorded") else "none"
            out.append(f"{role} SAE activation ceilings ({now} now)")
    libs_now, libs_then = current.library_versions, baseline.library_versions
    moved = _changes(libs_now, libs_then, set(libs_now) | set(libs_then))
    if moved:
        out.append("library versions (" + ", ".join(moved) + ")")
    return out


def diff_ledgers(current: Ledger, baseline: Ledger) -> dict:
    """What changed between the runs, claims that flipped, statistics that moved beyond their intervals
    or only changed, and the declared features followed into a changed SAE."""
    old = {c.id: c for c in baseline.claims}
    new = {c.id: c for c in current.claims}
    flipped, moved, changed, unchanged, not_run = [], [], [], [], []
    for claim_id in sorted(set(old) & set(new)):
        before, after = old[claim_id], new[claim_id]
        if after.statistic_name == "not run":  # deselected this time (-k, -x): nothing to compare
            not_run.append(claim_id)
            continue
        row = {"id": claim_id, "before": before.statistic, "after": after.statistic,
               "passed_before": before.passed, "passed_after": after.passed,
               "verdict_before": before.verdict, "verdict_after": after.verdict,
               "followed": [m["text"] for m in after.details.get("followed", []) if not m.get("same_id")]}
        # A schema-1 baseline knew only held / failed: compare on that, or every failure would "flip".
        flip = (before.passed != after.passed) if baseline.schema_version == "1" else (before.verdict != after.verdict)
        if flip:
            flipped.append(row)
        elif _moved_beyond_interval(before, after):
            moved.append(row)
        elif before.statistic != after.statistic or _bounds(before) != _bounds(after):
            changed.append(row)
        else:
            unchanged.append(claim_id)
    followed = current.tables.get("followed", {}) if isinstance(current.tables, dict) else {}
    return {
        "baseline_run_id": baseline.run_id, "baseline_created_at": baseline.created_at,
        "baseline_verdict": baseline.verdict, "baseline_schema": baseline.schema_version,
        "verdict_before": baseline.verdict, "verdict_after": current.verdict,
        "what_changed": changed_parts(current, baseline), "flipped": flipped, "moved": moved,
        "changed_within_intervals": changed, "unchanged": unchanged, "not_run": not_run,
        "only_in_baseline": sorted(set(old) - set(new)), "only_in_current": sorted(set(new) - set(old)),
        "sae_changed": {role: current.saes[role].hash != baseline.saes[role].hash
                        for role in current.saes if role in baseline.saes},
        "followed": [{"name": name, **m} for name, m in sorted(followed.items())],
    }


def diff_lines(diff: dict) -> list[str]:
    """The diff as a few lines for the terminal."""
    lines = [f"diff vs baseline {diff['baseline_run_id']}: GATE {diff['verdict_before']} -> {diff['verdict_after']}; "
             f"changed: {'; '.join(diff['what_changed']) or 'nothing (same model, SAEs, prompts, libraries)'}"]
    moves = [m for m in diff["followed"] if not m.get("same_id")]
    changed_roles = {role for role, changed in diff.get("sae_changed", {}).items() if changed}
    if moves:
        verb = ("followed into the new SAE" if {m["role"] for m in moves} & changed_roles
                else "the baseline's mapping, carried (same SAE as the baseline)")
        lines.append(f"  {verb}: " + "; ".join(
            f"{m['name']} -> {m['role']}-{m['new']} (cos {m['cosine']:.2f})" if m["new"] is not None else
            (f"{m['name']}: no match ({m['why'].split(':')[0]})" if m.get("why") else
             f"{m['name']}: no match (best cos {_num(m['cosine'])}): re-run discover")
            for m in moves))
    for key, label in (("flipped", "flipped"), ("moved", "moved beyond their intervals")):
        rows = diff[key]
        if rows:
            lines.append(f"  {len(rows)} {label}: " + "; ".join(
                f"{r['id']} {r['verdict_before']} -> {r['verdict_after']} ({_num(r['before'])} -> {_num(r['after'])}"
                + (f", on {', '.join(_tested_on(t) for t in r['followed'])})" if r.get("followed") else ")")
                for r in rows))
    lines.append(f"  {len(diff['changed_within_intervals'])} changed within their intervals, "
                 f"{len(diff['unchanged'])} identical" + (f", {len(diff['not_run'])} not run this time"
                                                          if diff.get("not_run") else ""))
    return lines


def _tested_on(text: str) -> str:
    """'fine-3726 -> fine-11329 (decoder cosine 0.797)' -> 'fine-11329'; an unmatched feature -> 'no match'."""
    return "no match" if "no match" in text or " -> " not in text else text.split(" (")[0].split(" -> ")[-1]


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)  # 0.224, 3


def _bounds(record: ClaimRecord) -> tuple:
    effect = record.effect
    return (None, None) if effect is None else (effect.ci_low, effect.ci_high)


def _moved_beyond_interval(before: ClaimRecord, after: ClaimRecord) -> bool:
    """The new effect lies outside the old interval, or the old outside the new."""
    b, a = before.effect, after.effect
    if b is None or a is None or b.ci_low is None or a.ci_low is None:
        return False
    return not (b.ci_low <= a.value <= b.ci_high) or not (a.ci_low <= b.value <= a.ci_high)


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=float)
