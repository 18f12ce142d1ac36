"""Discovery without double dipping.

`python -m harness discover --profile NAME` looks only at the discovery half of the concept
and neutral prompts (a seeded, facet-stratified split), ranks coarse features by
selectivity with a permutation p and BH q, picks the anchors, and writes them with their
claims into `fixtures/profiles/NAME.anchors.toml` (date, prompt hashes, split). The claims
then run on the confirmation half. Fine anchors are chosen from decoder geometry alone
(best cosine to each coarse anchor), which uses no prompts at all.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from harness.engine.analysis import Analysis
from harness.core.config import anchors_path
from harness.core.errors import HarnessError
from harness.core.paths import atomic_write_text
from harness.entry.session import ClaimsRun
from harness.features.tables import sae_hash
from harness.statistics.stats import significant


def discover(run: ClaimsRun) -> dict:
    profile = run.profile
    settings = profile.discovery
    analysis = Analysis.build(profile, run.tables, run.prompt_sets, run.directions, split="discovery")
    ranked = analysis.ranked_features("coarse", top=10_000, min_fire=settings.min_fire_rate)
    alpha = profile.analysis.alpha
    # An anchor must be about the concept, not about its kind: it has to beat the near-miss prompts
    # (other countries) as well as the neutral ones, each with BH q <= alpha on the discovery half.
    beats_neutral = [r for r in ranked if significant(r["q_value"], alpha) and r["selectivity"] > 0.5]
    beats_both = [r for r in beats_neutral
                   if r["q_value_near_miss"] is not None and significant(r["q_value_near_miss"], alpha)
                   and r["selectivity_near_miss"] > 0.5]
    if not beats_both:
        half = {name: int(analysis.rows(name, "discovery").sum()) for name in ("concept", "neutral", "near_miss")}
        sizes = f"{half['concept']} concept / {half['neutral']} neutral / {half['near_miss']} near-miss prompts"
        raise HarnessError(no_anchor_message(profile, ranked, beats_neutral, alpha, settings.min_fire_rate, sizes))
    anchors = beats_both[: settings.n_coarse_anchors]
    top = anchors[0]
    louder = [r for r in beats_both if r["feature"] not in {a["feature"] for a in anchors}
              and r["mean_concept"] > top["mean_concept"] and r["selectivity"] < top["selectivity"]]
    loud_pool = louder or [r for r in beats_both if r["feature"] != top["feature"]]
    loud = max(loud_pool, key=lambda r: r["mean_concept"]) if loud_pool else None
    coarse_ids = [a["feature"] for a in anchors]
    fine_ids = []
    for c in coarse_ids:
        best = int(np.argmax(analysis.anchor_cosines(c)))
        if best not in fine_ids:
            fine_ids.append(best)
    return {
        "anchors": {
            "coarse": coarse_ids, "fine": fine_ids, "source": "discovered", "split": "confirmation",
            "registered_on": date.today().isoformat(),
            "discovery_prompt_hash": "+".join(run.prompt_sets.hashes()[k] for k in ("concept", "neutral")),
            # The SAEs these ids count from: a run on other weights follows them or says to re-discover.
            "sae_hashes": {role: sae_hash(cfg) for role, cfg in profile.saes.items()},
            "notes": (f"ranked {len(ranked)} coarse features firing on >= {settings.min_fire_rate:.0%} of discovery "
                      f"concept prompts; {len(beats_both)} significant after BH against neutral and near-miss; "
                      f"loud feature "
                      f"{'louder than the top anchor' if louder else 'not louder than the top anchor (claim may fail)'}"),
        },
        "discovery_table": anchors,
        "loud": loud,
        "counts": {"candidates": len(ranked), "beat_neutral": len(beats_neutral), "beat_both": len(beats_both)},
    }


def no_anchor_message(profile, ranked: list[dict], beats_neutral: list[dict], alpha: float, min_fire: float,
                      sizes: str = "") -> str:
    """Why discovery found no anchor, and what to do instead (never: run discover again as it is)."""
    where = (f"on the discovery half ({sizes}), {len(ranked)} coarse features fire on >= {min_fire:.0%} of the "
             "concept prompts")
    if not ranked:
        return (f"discover found no anchor: no coarse feature fires on >= {min_fire:.0%} of the discovery-half concept "
                "prompts. Add concept prompts, or lower [discovery] min_fire_rate; or pre-register anchors by hand "
                "(README: Anchors)")
    if not beats_neutral:
        best = min(ranked, key=lambda r: r["q_value"])
        return (f"discover found no anchor: {where}; none beats the neutral prompts (BH q <= {alpha}); the best is "
                f"coarse-{best['feature']} (q {best['q_value']:.3g}, selectivity {best['selectivity']:.2f}). Add concept "
                "prompts (more power), or pre-register anchors by hand (README: Anchors)")
    with_near = [r for r in beats_neutral if r["q_value_near_miss"] is not None]
    if not with_near:
        return (f"discover found no anchor: {where}; {len(beats_neutral)} beat the neutral prompts, but the profile "
                "has no near-miss prompts to tell the concept from its kind. Add near-miss prompts (other members of "
                "the concept's kind, e.g. other countries), or pre-register anchors by hand (README: Anchors)")
    best = min(with_near, key=lambda r: r["q_value_near_miss"])
    return (f"discover found no anchor: {where}; {len(beats_neutral)} beat the neutral prompts, none beats the "
            f"near-miss prompts (BH q <= {alpha}); the closest is coarse-{best['feature']} (near-miss q "
            f"{best['q_value_near_miss']:.3g}, selectivity {best['selectivity_near_miss']:.2f} against them). The "
            "features that beat neutral fire on the near-miss prompts too: they encode the concept's kind, not the "
            "concept. Add near-miss prompts (or ones closer to the concept) for power, or pre-register anchors by "
            "hand from prior work (README: Anchors; picking them from this output and testing them on the same "
            "prompts would be double dipping)")


def claims_for(found: dict, settings) -> list[dict]:
    coarse, fine = found["anchors"]["coarse"], found["anchors"]["fine"]
    claims = []
    for i, c in enumerate(coarse):
        claims.append({"family": "selectivity", "name": f"coarse-{c}",
                       "statement": f"Coarse feature {c} is selective for the concept against neutral prompts.",
                       "sae": "coarse", "feature": c, "min_selectivity": settings.claim_min_selectivity})
        claims.append({"family": "selectivity", "name": f"coarse-{c}-vs-near-miss",
                       "statement": f"Coarse feature {c} prefers the concept to other countries (near-miss prompts).",
                       "sae": "coarse", "feature": c, "against": "near_miss",
                       "min_selectivity": settings.claim_near_miss_min_selectivity})
        claims.append({"family": "geometry", "name": f"coarse-{c}",
                       "statement": f"The 0.3 cosine cutoff lies beyond the crowd of fine rows for coarse {c}.",
                       "anchor": c, "cutoff": 0.3, "quantile": 0.95})
        claims.append({"family": "sub_features", "name": f"coarse-{c}",
                       "statement": f"Coarse feature {c} has at least one co-firing fine sub-feature.",
                       "anchor": c, "min_cosine": 0.3, "min_count": 1})
    for f in fine:
        claims.append({"family": "selectivity", "name": f"fine-{f}",
                       "statement": f"Fine feature {f} is selective for the concept against neutral prompts.",
                       "sae": "fine", "feature": f, "min_selectivity": settings.claim_fine_min_selectivity})
    loud = found.get("loud")
    if loud is not None:
        claims.append({"family": "loud_unselective", "name": f"coarse-{loud['feature']}-vs-{coarse[0]}",
                       "statement": (f"Coarse feature {loud['feature']} fires harder on concept prompts than "
                                     f"anchor {coarse[0]} but is less selective."),
                       "sae": "coarse", "loud": loud["feature"], "anchor": coarse[0]})
    return claims


def to_toml(found: dict, claims: list[dict]) -> str:
    """A tiny TOML writer for the flat values discovery produces."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["# Written by `python -m harness discover`; re-run it to replace. Claims below are tested",
             "# on the confirmation half only.", "", "[anchors]"]
    lines += [f"{k} = {value(v)}" for k, v in found["anchors"].items()]
    for claim in claims:
        lines += ["", "[[claims]]"] + [f"{k} = {value(v)}" for k, v in claim.items()]
    return "\n".join(lines) + "\n"


def write_discovery(run: ClaimsRun) -> tuple[str, dict]:
    found = discover(run)
    text = to_toml(found, claims_for(found, run.profile.discovery))
    path = anchors_path(run.profile.path)
    atomic_write_text(path, text)
    return str(path), found
