"""Facet claims: the seed's open question. Fine sub-features "each potentially encode a different
facet (cuisine, geography, landmarks, language)": which facet of the concept prompts, if any, does
each sub-feature of an anchor encode?

A sub-feature nested in its anchor fires where the anchor fires; if the anchor itself fires more
on cuisine, so do all its sub-features, which says nothing about a facet of their own. A ratio to
the parent removes only a proportional dependence: a child that fires only where the parent
exceeds a level, or grows as the parent squared, still inherits the parent's facet. So the
statistic is the sub-feature's **excess over its parent**: its activation minus its monotone
(isotonic) regression on the anchor's activation, fitted on all facets of the half together, on
the concept prompts where the anchor fires; and every permutation moves facet labels only among
prompts in the same band of the anchor's activation (equal-count bands), so the null keeps the
parent's own facet preference. A sub-feature encodes a facet when its excess is larger on that
facet than on every other one.

Two halves, so that the facet is chosen on one and tested on the other:
- discovery half: the anchor's sub-features (decoder cosine + co-firing, on this half only); for
  each, a max-facet permutation test across the facets (labels shuffled among the concept prompts
  where the anchor fires, within bands of its activation; choosing the best facet is paid for), BH
  across the sub-features;
- confirmation half: each sub-feature selected on discovery must beat **every other facet** with
  its chosen one (one-sided permutation p per other facet; the largest is the p of the
  intersection-union test), BH across the selected; BCa interval of (chosen facet's mean excess
  minus the largest other facet's).
A sub-feature is facet-specific when its confirmation q <= alpha and that interval lies above 0.
Absence of a preference cannot be shown without a margin, so the claim is held or inconclusive.
"""

from __future__ import annotations

import numpy as np

from harness.engine.analysis import Analysis
from harness.statistics.stats import (
    significant,
    benjamini_hochberg,
    bootstrap_interval,
    facet_permutation_test,
    parent_bands,
    parent_residuals,
    two_sample_permutation_test,
)

PARENT_BANDS = 5  # bands of the anchor's activation the labels are shuffled within
PROMPTS_PER_BAND = 10  # fewer prompts than this per band and the half gets fewer bands


def facet_counts(a: Analysis, rows: np.ndarray) -> dict[str, tuple[int, int]]:
    """Per facet of the concept prompts: (discovery, confirmation) counts among `rows`."""
    labels = a.facet_labels()
    return {f: tuple(int((rows & a.masks[f"concept_{h}"] & (labels == f)).sum()) for h in ("discovery", "confirmation"))
            for f in sorted(set(labels[a.masks["concept_all"]]) - {""})}


def facet_preferences(a: Analysis, anchor: int) -> dict:
    """Per sub-feature of `anchor`: its mean excess over the anchor per facet on both halves, the facet
    chosen on discovery (max-facet p, BH q) and the confirmation test of that facet against every
    other (p, BH q, interval). Cached per anchor."""
    key = ("facets", anchor)
    if key in a._cache:
        return a._cache[key]
    labels = a.facet_labels()
    parent = a.acts("coarse")[:, anchor].astype(np.float64)
    fires = parent > 0
    counts = facet_counts(a, fires)
    facets = [f for f, c in counts.items() if min(c) >= a.profile.analysis.min_facet_prompts]
    dropped = {f: c for f, c in counts.items() if f not in facets}
    out: dict = {"anchor": anchor, "facets": facets, "sub_features": [], "note": "",
                 "facets_dropped": {f: list(c) for f, c in dropped.items()}}

    def finish(note: str) -> dict:
        out["note"] = note
        a._cache[key] = out
        return out

    if len(facets) < 2:
        if not counts:
            return finish("the concept prompts carry no facet; a facet test needs 2 or more facets (give each concept "
                          "prompt a \"facet\" field)")
        return finish(f"{len(facets)} facet(s) have >= {a.profile.analysis.min_facet_prompts} prompts where coarse-{anchor} fires in each "
                      f"half (discovery, confirmation counts: {dict(counts)}); a facet test needs 2 or more")
    subs = [p["fine"] for p in a.on_split("discovery").sub_features(anchor)]
    if not subs:
        return finish(f"coarse-{anchor} has no sub-features on the discovery half")
    x = a.acts("fine")[:, subs].astype(np.float64)
    bad = [f for j, f in enumerate(subs) if not np.isfinite(x[:, j]).all()]
    if bad or not np.isfinite(parent).all():
        return finish(f"non-finite activations (fine {bad or ''} / coarse-{anchor}): not evaluable")
    # Independent streams for the discovery test, the confirmation tests and the intervals.
    streams = np.random.SeedSequence([a.seed, anchor]).spawn(3)
    seed_discovery, seed_confirm, seed_boot = (int(s.generate_state(1)[0]) for s in streams)
    in_facets = np.isin(labels, facets) & fires
    discovery = a.masks["concept_discovery"] & in_facets
    confirmation = a.masks["concept_confirmation"] & in_facets
    # Each half on its own: the fit and the bands of the confirmation half never see the discovery half.
    excess = np.zeros_like(x)
    bands = np.zeros(len(parent), dtype=np.int64)
    for rows in (discovery, confirmation):
        if rows.any():
            excess[rows] = parent_residuals(x[rows], parent[rows])
            bands[rows] = parent_bands(parent[rows], max(1, min(PARENT_BANDS, int(rows.sum()) // PROMPTS_PER_BAND)))
    found = facet_permutation_test(excess[discovery], labels[discovery], n_resamples=a.n_permutations,
                                   seed=seed_discovery, strata=bands[discovery])
    names = np.unique(labels[discovery])  # facet_permutation_test's order
    _, q_discovery = benjamini_hochberg(found.p_value, a.alpha)
    selected = np.flatnonzero([significant(q, a.alpha) for q in q_discovery])
    conf_labels, conf_bands = labels[confirmation], bands[confirmation]
    rows = []
    for j, fine in enumerate(subs):
        values = excess[confirmation, j]
        chosen = str(names[found.facet[j]]) if found.statistic[j] > 0 else "none"
        row = {"fine": int(fine), "chosen_facet": chosen, "discovery_contrast": float(found.statistic[j]),
               "discovery_p": float(found.p_value[j]), "discovery_q": float(q_discovery[j]),
               "selected": bool(j in selected and chosen != "none"), "confirmation_p": None, "confirmation_q": None,
               "confirmation": None, "interval_note": "", "runner_up": None,
               "facet_excess_discovery": {f: float(excess[discovery & (labels == f), j].mean()) for f in facets},
               "facet_excess_confirmation": {f: float(excess[confirmation & (labels == f), j].mean()) for f in facets},
               "facet_mean_confirmation": {f: float(x[confirmation & (labels == f), j].mean()) for f in facets}}
        if chosen != "none":
            others = [f for f in facets if f != chosen]
            # Intersection-union: the chosen facet must beat each other facet; the p is the largest.
            pairwise = []
            for k, other in enumerate(others):
                pair = (conf_labels == chosen) | (conf_labels == other)
                pairwise.append(float(two_sample_permutation_test(
                    values[pair], conf_labels[pair] == chosen, n_resamples=a.n_permutations,
                    seed=seed_confirm + len(facets) * j + k, alternative="greater", strata=conf_bands[pair]).p_value[0]))
            groups = [np.flatnonzero(conf_labels == f) for f in [chosen, *others]]

            def margin(*idx, values=values, groups=groups):
                means = np.stack([values[g[i]].mean(-1) for g, i in zip(groups, idx, strict=True)])
                return means[0] - means[1:].max(0)

            interval = bootstrap_interval(margin, [np.arange(g.size) for g in groups], n_resamples=a.n_bootstrap,
                                          seed=seed_boot + j, level=a.level)
            runner_up = others[int(np.argmax([row["facet_excess_confirmation"][f] for f in others]))]
            row.update(confirmation_p=max(pairwise), confirmation=interval.as_dict(), interval_note=interval.note,
                       runner_up=runner_up)
        rows.append(row)
    tested = [j for j in selected if rows[j]["selected"]]
    if tested:
        _, q_confirm = benjamini_hochberg([rows[j]["confirmation_p"] for j in tested], a.alpha)
        for j, q in zip(tested, q_confirm, strict=True):
            rows[j]["confirmation_q"] = float(q)
    for row in rows:
        c = row["confirmation"]
        row["confirmed"] = bool(row["selected"] and row["confirmation_q"] is not None
                                and significant(row["confirmation_q"], a.alpha) and c is not None and np.isfinite(c["ci_low"])
                                and c["ci_low"] > 0 and not row["interval_note"])
    # The parent's own facet means: context (a parent that prefers a facet is not a finding about its
    # sub-features).
    out.update(sub_features=rows, n_discovery=int(discovery.sum()), n_confirmation=int(confirmation.sum()),
               anchor_facet_means_confirmation={f: float(parent[a.masks["concept_confirmation"] & (labels == f)].mean())
                                                for f in facets})
    a._cache[key] = out
    return out
