"""Facet claims: the seed's open question. Fine sub-features "each potentially encode a different
facet (cuisine, geography, landmarks, language)": which facet of the concept prompts, if any, does
each sub-feature of an anchor prefer?

Two halves, so that the facet is chosen on one and tested on the other:
- discovery half: the anchor's sub-features (decoder cosine + co-firing, on this half only); for
  each, a max-facet permutation test across the facets of the concept prompts (labels shuffled
  within the concept set, so choosing the best facet is paid for), BH across the sub-features;
- confirmation half: each sub-feature selected on discovery is tested for its chosen facet against
  the other facets on fresh prompts (one-sided permutation p, BH across the selected; BCa interval of
  the mean difference).
A sub-feature is facet-specific when its confirmation q <= alpha and its interval lies above 0.
"""

from __future__ import annotations

import numpy as np

from harness.engine.analysis import Analysis
from harness.core.config import ClaimSpec
from harness.core.families import Param, register_family
from harness.outputs.ledger import ClaimRecord, Effect
from harness.statistics.stats import (
    benjamini_hochberg,
    bootstrap_interval,
    facet_permutation_test,
    two_sample_permutation_test,
)

MIN_PER_FACET = 2  # prompts per facet in each half; fewer and the facet is left out of the test


def usable_facets(a: Analysis) -> list[str]:
    """Facets with at least MIN_PER_FACET concept prompts in each half."""
    labels = a.facet_labels()
    out = []
    for facet in sorted(set(labels[a.masks["concept_all"]]) - {""}):
        halves = [int((labels[a.masks[f"concept_{h}"]] == facet).sum()) for h in ("discovery", "confirmation")]
        if min(halves) >= MIN_PER_FACET:
            out.append(facet)
    return out


def facet_preferences(a: Analysis, anchor: int) -> dict:
    """Per sub-feature of `anchor`: its facet means on both halves, the facet chosen on discovery
    (max-facet p, BH q) and the confirmation test of that facet (p, BH q, interval). Cached per anchor."""
    key = ("facets", anchor)
    if key in a._cache:
        return a._cache[key]
    facets = usable_facets(a)
    labels = a.facet_labels()
    out: dict = {"anchor": anchor, "facets": facets, "sub_features": [], "note": ""}
    if len(facets) < 2:
        present = sorted(set(labels[a.masks["concept_all"]]) - {""})
        out["note"] = (f"the concept prompts carry {len(present)} facet(s) with >= {MIN_PER_FACET} prompts in each "
                       "half; a facet test needs 2 or more (give each concept prompt a \"facet\" field)")
        a._cache[key] = out
        return out
    subs = [p["fine"] for p in a.on_split("discovery").sub_features(anchor)]
    if not subs:
        out["note"] = f"coarse-{anchor} has no sub-features on the discovery half"
        a._cache[key] = out
        return out
    # Independent streams for the discovery test, the confirmation tests and the intervals.
    streams = np.random.SeedSequence([a.seed, anchor]).spawn(3)
    seed_discovery, seed_confirm, seed_boot = (int(s.generate_state(1)[0]) for s in streams)
    x = a.acts("fine")[:, subs].astype(np.float64)
    in_facets = np.isin(labels, facets)
    discovery = a.masks["concept_discovery"] & in_facets
    confirmation = a.masks["concept_confirmation"] & in_facets
    found = facet_permutation_test(x[discovery], labels[discovery], n_resamples=a.n_permutations,
                                   seed=seed_discovery)
    names = np.unique(labels[discovery])  # facet_permutation_test's order
    _, q_discovery = benjamini_hochberg(found.p_value, a.alpha)
    selected = np.flatnonzero(q_discovery <= a.alpha)
    conf_labels = labels[confirmation]
    rows = []
    for j, fine in enumerate(subs):
        chosen = str(names[found.facet[j]])
        values = x[confirmation, j]
        inside, outside = values[conf_labels == chosen], values[conf_labels != chosen]
        test = two_sample_permutation_test(values, conf_labels == chosen, n_resamples=a.n_permutations,
                                           seed=seed_confirm + j, alternative="greater")
        interval = bootstrap_interval(
            lambda i, o, inside=inside, outside=outside: inside[i].mean(-1) - outside[o].mean(-1),
            [np.arange(inside.size), np.arange(outside.size)], n_resamples=a.n_bootstrap, seed=seed_boot + j,
            level=a.level)
        rows.append({
            "fine": int(fine), "chosen_facet": chosen, "discovery_contrast": float(found.statistic[j]),
            "discovery_p": float(found.p_value[j]), "discovery_q": float(q_discovery[j]),
            "selected": bool(j in selected), "confirmation_p": float(test.p_value[0]), "confirmation_q": None,
            "confirmation": interval.as_dict(), "interval_note": interval.note,
            "facet_means_discovery": {f: float(x[discovery & (labels == f), j].mean()) for f in facets},
            "facet_means_confirmation": {f: float(x[confirmation & (labels == f), j].mean()) for f in facets},
        })
    if selected.size:
        _, q_confirm = benjamini_hochberg([rows[j]["confirmation_p"] for j in selected], a.alpha)
        for j, q in zip(selected, q_confirm, strict=True):
            rows[j]["confirmation_q"] = float(q)
    for row in rows:
        low, high = row["confirmation"]["ci_low"], row["confirmation"]["ci_high"]
        row["confirmed"] = bool(row["selected"] and row["confirmation_q"] is not None
                                and row["confirmation_q"] <= a.alpha and np.isfinite(low) and low > 0
                                and not row["interval_note"])
        # Could it still prefer the facet discovery pointed to? Only an interval wholly at or below 0 says no.
        row["plausible"] = bool(not np.isfinite(high) or high > 0 or row["interval_note"])
    # The parent's own facet means: a sub-feature nested in a parent that prefers a facet inherits it.
    parent = a.acts("coarse")[:, anchor].astype(np.float64)
    out.update(sub_features=rows, n_discovery=int(discovery.sum()), n_confirmation=int(confirmation.sum()),
               anchor_facet_means_confirmation={f: float(parent[confirmation & (labels == f)].mean()) for f in facets})
    a._cache[key] = out
    return out


def facet_claim(spec: ClaimSpec, a: Analysis) -> ClaimRecord:
    """At least `min_sub_features` sub-features of the anchor each prefer one facet, chosen on the
    discovery half and confirmed on the other. held: that many confirmed; refuted: fewer than that
    many intervals leave room for the discovery-chosen facet; else inconclusive."""
    from harness.engine.claims_engine import make_record

    anchor = spec.param("anchor")
    anchor = a.top_anchor if anchor is None else anchor
    need = int(spec.param("min_sub_features"))
    prefs = facet_preferences(a, anchor)
    rows = prefs["sub_features"]
    details = {"anchor": anchor, "facets": prefs["facets"], "sub_features": rows,
               "anchor_facet_means_confirmation": prefs.get("anchor_facet_means_confirmation"),
               "n_discovery": prefs.get("n_discovery"), "n_confirmation": prefs.get("n_confirmation")}
    if not rows:
        return make_record(spec, verdict="not evaluated", statistic_name="facet-specific sub-features", statistic=None,
                           threshold=float(need), comparison=">=", reason=prefs["note"], details=details)
    confirmed = [r for r in rows if r["confirmed"]]
    plausible = [r for r in rows if r["plausible"]]
    if len(confirmed) >= need:
        verdict = "held"
    elif len(plausible) < need:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    tested = [r for r in rows if r["confirmation_q"] is not None]
    best = min(tested or rows, key=lambda r: (r["confirmation_q"] if r["confirmation_q"] is not None else 2,
                                              r["confirmation_p"]))
    effect = Effect(name=f"F-{best['fine']} on {best['chosen_facet']} minus other facets (confirmation half)",
                    **best["confirmation"])
    listed = "; ".join(f"F-{r['fine']} -> {r['chosen_facet']} (discovery q {r['discovery_q']:.2g}"
                       + (f", confirmation q {r['confirmation_q']:.2g}" if r["confirmation_q"] is not None else "")
                       + (", confirmed" if r["confirmed"] else "") + ")"
                       for r in sorted(rows, key=lambda r: r["discovery_p"])[:6])
    reason = (f"{len(confirmed)} of {len(rows)} sub-features of coarse-{anchor} prefer a facet on fresh prompts "
              f"(need {need}); {len(rows) - len(plausible)} ruled out; {sum(r['selected'] for r in rows)} chosen "
              f"on the discovery half; {listed}")
    return make_record(
        spec, verdict=verdict, statistic_name="facet-specific sub-features (confirmed)", statistic=float(len(confirmed)),
        threshold=float(need), comparison=">=", p_value=best["confirmation_p"], q_value=best["confirmation_q"],
        effect=effect, reason=reason, details=details)


register_family(
    "facet",
    {"anchor": Param(int, None, low=0, feature_of="coarse", help="a coarse anchor (default: the top one)"),
     "min_sub_features": Param(int, 1, low=1, help="how many sub-features must prefer a facet")},
    evaluate=facet_claim, groups=("concept",), needs_anchors=True, gating=False,
    doc="Which facet of the concept prompts each sub-feature of an anchor prefers (exploratory by default).")
