"""Re-validation against a baseline ledger: which SAEs changed, and features followed into them.

A claim names features by index (`fine-635`). An index means nothing across two trainings of an
SAE: after an update, feature 635 is another feature. When a run's SAE differs from the
baseline's (by content hash), every feature the profile names is followed into the new SAE by
its decoder row: the baseline ledger stores the row of each named feature
(`tables.anchor_directions`), and the new feature is the row of the new decoder with the highest
cosine to it. A match below `analysis.follow_min_cosine` is no match: the claim is "not
evaluated" and the run says to re-run `discover`. (For scale: among 16,384 random unit rows in
576 dimensions the best cosine to a fixed direction is about 0.2, so 0.7 is a real match.)

When the SAE is the baseline's own, the baseline's mapping carries over (a chain of runs after
one update keeps testing the followed features).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.core.config import ClaimSpec, Profile


@dataclass(frozen=True)
class FeatureMatch:
    """Where a declared feature (`role-old`) is tested in this run's SAE."""

    role: str
    old: int
    new: int | None  # None: no match at or above the floor
    cosine: float | None
    best: int | None = None  # the best row even when below the floor
    shared_with: tuple[str, ...] = ()  # other declared features that map to the same new row
    why: str = ""  # why there is no match when it is not a cosine below the floor

    @property
    def name(self) -> str:
        return f"{self.role}-{self.old}"

    @property
    def matched(self) -> bool:
        return self.new is not None

    def describe(self, floor: float) -> str:
        if self.matched:
            text = f"{self.name} -> {self.role}-{self.new} (decoder cosine {self.cosine:.3f})"
            return text + (f", shared with {', '.join(self.shared_with)}" if self.shared_with else "")
        if self.why:
            return f"{self.name}: {self.why}"
        if self.best is None:
            return (f"{self.name}: the baseline ledger holds no decoder row for it (it predates them: re-run the "
                    "baseline on the old SAE with this version)")
        return f"{self.name}: no match (best {self.role}-{self.best} at cosine {self.cosine:.3f} < {floor})"

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "old": self.old, "new": self.new, "cosine": self.cosine, "best": self.best,
                "same_id": self.new == self.old, "shared_with": list(self.shared_with), "why": self.why}


def feature_params(spec: ClaimSpec) -> list[tuple[str, str, int]]:
    """(parameter, SAE role, feature index) for every parameter of the claim that names a feature."""
    from harness.core.families import get_family

    family = get_family(spec.family)
    out = []
    for key, param in (family.params.items() if family else ()):
        if not param.feature_of or spec.params.get(key) is None:
            continue
        role = spec.param("sae") if param.feature_of == "sae" else param.feature_of  # the family's default too
        out.append((key, role, int(spec.params[key])))
    return out


def named_features(profile: Profile) -> dict[str, set[int]]:
    """Every feature the profile names: its anchors and every claim's feature parameters."""
    named: dict[str, set[int]] = {"coarse": set(profile.anchors.coarse), "fine": set(profile.anchors.fine)}
    for spec in profile.claims:
        for _, role, feature in feature_params(spec):
            named.setdefault(role, set()).add(feature)
    return named


def match_features(baseline_rows: dict[str, list[float]], directions: dict[str, np.ndarray],
                   wanted: dict[str, set[int]], min_cosine: float) -> dict[str, FeatureMatch]:
    """Each wanted feature's baseline decoder row, matched to the best row of this run's decoder."""
    matches: dict[str, FeatureMatch] = {}
    for role, features in wanted.items():
        if role not in directions:
            continue
        for old in sorted(features):
            name = f"{role}-{old}"
            row = baseline_rows.get(name)
            if row is None or len(row) != directions[role].shape[1]:
                matches[name] = FeatureMatch(role, old, None, None)
                continue
            v = np.asarray(row, dtype=np.float64)
            cosines = directions[role] @ (v / max(float(np.linalg.norm(v)), 1e-12))
            best = int(np.argmax(cosines))
            cosine = float(cosines[best])
            matches[name] = FeatureMatch(role, old, best if cosine >= min_cosine else None, round(cosine, 4), best)
    by_target: dict[tuple[str, int], list[str]] = {}
    for name, m in matches.items():
        if m.matched:
            by_target.setdefault((m.role, m.new), []).append(name)
    return {name: (dataclasses.replace(m, shared_with=tuple(n for n in by_target[(m.role, m.new)] if n != name))
                   if m.matched else m) for name, m in matches.items()}


def carried_matches(baseline_followed: dict[str, dict], wanted: dict[str, set[int]],
                    min_cosine: float) -> dict[str, FeatureMatch]:
    """The baseline's own mapping, for an SAE that did not change since it (this run's floor re-applied)."""
    out = {}
    for role, features in wanted.items():
        for old in features:
            entry = baseline_followed.get(f"{role}-{old}")
            if entry is None:
                continue
            cosine, best = entry.get("cosine"), entry.get("best")
            new = best if cosine is not None and best is not None and cosine >= min_cosine else None
            out[f"{role}-{old}"] = FeatureMatch(role, old, new, cosine, best, tuple(entry.get("shared_with", ())),
                                                entry.get("why", ""))
    return out


def unfollowable(wanted: dict[str, set[int]], why: str) -> dict[str, FeatureMatch]:
    """Every named feature of these roles, without a match, for a stated reason."""
    return {f"{role}-{old}": FeatureMatch(role, old, None, None, why=why)
            for role, features in wanted.items() for old in sorted(features)}


def follow_profile(profile: Profile, matches: dict[str, FeatureMatch]) -> Profile:
    """The profile with its anchors replaced by their matches (an anchor without a match is dropped)."""
    if not matches:
        return profile
    anchors = profile.anchors
    followed = {}
    for role in ("coarse", "fine"):
        ids = []
        for old in getattr(anchors, role):
            m = matches.get(f"{role}-{old}")
            if m is None:
                ids.append(int(old))
            elif m.matched:
                ids.append(int(m.new))
        followed[role] = tuple(dict.fromkeys(ids))
    return dataclasses.replace(profile, anchors=dataclasses.replace(anchors, **followed))


def follow_spec(spec: ClaimSpec, matches: dict[str, FeatureMatch]) -> tuple[ClaimSpec, list[FeatureMatch]]:
    """The claim on the followed features, and the matches it used (unmatched ones included)."""
    used, params = [], dict(spec.params)
    for key, role, feature in feature_params(spec):
        m = matches.get(f"{role}-{feature}")
        if m is None:
            continue
        used.append(m)
        if m.matched:
            params[key] = int(m.new)
    return (dataclasses.replace(spec, params=params) if used else spec), used


def changed_parts(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What differs between two runs' descriptions (model, hook, each SAE, prompt sets, library versions)."""
    out = []
    for key in ("model", "hook"):
        if current.get(key) != baseline.get(key):
            out.append(f"{key} {baseline.get(key)!r} -> {current.get(key)!r}")
    for role in sorted(set(current.get("saes", {})) | set(baseline.get("saes", {}))):
        now, then = current.get("saes", {}).get(role), baseline.get("saes", {}).get(role)
        if now is None or then is None:
            out.append(f"{role} SAE {'added' if then is None else 'removed'}")
        elif now.get("hash") != then.get("hash"):
            where = now.get("path") or f"{now.get('release')}/{now.get('sae_id')}"
            out.append(f"{role} SAE ({then.get('hash')} -> {now.get('hash')}, now {where})")
    for name in sorted(set(current.get("prompt_hashes", {})) | set(baseline.get("prompt_hashes", {}))):
        if current.get("prompt_hashes", {}).get(name) != baseline.get("prompt_hashes", {}).get(name):
            out.append(f"{name} prompts")
    libs_now, libs_then = current.get("library_versions", {}), baseline.get("library_versions", {})
    moved = [f"{k} {libs_then.get(k)} -> {libs_now.get(k)}" for k in sorted(set(libs_now) | set(libs_then))
             if libs_now.get(k) != libs_then.get(k)]
    if moved:
        out.append("library versions (" + ", ".join(moved) + ")")
    return out
