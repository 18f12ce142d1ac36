"""The GO/NO-GO gate: the seed's pre-registered Phase 1 rule, decided as one test.

The rule (the `go_gate` claim's parameters): GO when some coarse anchor
  (1) prefers the concept: the lower bound of its selectivity interval exceeds `min_selectivity`;
  (2) has a meaningful cutoff: more fine rows reach `min_cosine` than directions drawn with the fine
      decoder's own covariance reach (`geometry = "count"`; "crowd_and_count" also asks that such
      directions' largest cosine stay below the cutoff; "none" skips it);
  (3) has at least `min_sub_features` true sub-features: a simultaneous lower bound on the number of
      cosine-qualified fine rows that co-fire with it within prompt sets (step-down min-P over the
      shared shuffles, i.e. closed testing), not a count of Benjamini-Hochberg discoveries;
and, with `control = true`, the same rule says NO-GO on a random SAE of the same shape.

Error at the boundary: each anchor's three parts are tested at alpha / (number of anchors) and must all
hold (an intersection-union test), and GO through any anchor is a union over anchors (Bonferroni), so
P(GO) <= alpha whenever no anchor truly satisfies the rule. The control can only turn GO into NO-GO.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.core.config import ClaimSpec
from harness.core.errors import ConfigError
from harness.engine.analysis import Analysis, selectivity_interval
from harness.statistics.stats import combine, decide, quantile_interval, significant, step_down_min_p

GEOMETRY_RULES = ("count", "crowd_and_count", "none")


def anchor_gate(a: Analysis, anchor: int, spec: ClaimSpec, alpha: float) -> dict:
    """The rule's three parts for one anchor, each at level `alpha` (one-sided)."""
    need = int(spec.param("min_sub_features"))
    cutoff = float(spec.param("min_cosine"))
    against = spec.param("against")
    bar = float(spec.param("min_selectivity"))
    level = 1 - 2 * alpha  # a two-sided interval whose lower bound errs with probability alpha
    x = a.acts("coarse")[:, anchor]
    ceilings = a.ceilings.get("coarse")
    sel = selectivity_interval(x[a.group("concept")], x[a.group(against)], level=level,
                               n_resamples=a.n_bootstrap, seed=a.seed,
                               ceiling=None if ceilings is None else float(ceilings[anchor]), few_firings=a.few_firings)
    selective = decide(sel.low, sel.high, bar, ">")

    geometry_rule = spec.param("geometry")
    cosines = a.anchor_cosines(anchor)
    beyond = int((cosines >= cutoff).sum())
    geometry: dict = {"rule": geometry_rule, "cutoff": cutoff, "beyond_cutoff": beyond}
    if geometry_rule == "none":
        geometry_verdict = "held"
    else:
        null = a.geometry_null(cutoff)
        p_count = (1 + int((null.count_beyond >= beyond).sum())) / (1 + null.count_beyond.size)
        if significant(p_count, alpha):
            geometry_verdict = "held"
        elif beyond <= float(np.median(null.count_beyond)):
            geometry_verdict = "refuted"
        else:
            geometry_verdict = "inconclusive"
        geometry.update(rank_p=p_count, null_median=float(np.median(null.count_beyond)),
                        n_null=int(null.count_beyond.size))
        if geometry_rule == "crowd_and_count":
            crowd, low, high = quantile_interval(null.max_cosine, 0.95, level=level)
            crowd_verdict = decide(low, high, cutoff, "<")
            geometry_verdict = combine(geometry_verdict, crowd_verdict)
            geometry.update(crowd_q95=crowd, crowd_interval=[low, high], crowd_verdict=crowd_verdict)

    fine, observed, null_BF = a.co_firing_null(anchor)
    rows = [p for p in a.pair_table() if p["coarse"] == anchor]
    by_fine = {p["fine"]: p for p in rows}
    tested = [j for j, f in enumerate(fine) if by_fine[int(f)]["cosine"] >= cutoff and not by_fine[int(f)]["silent"]
              and np.isfinite(observed[j])]
    silent = sum(1 for p in rows if p["cosine"] >= cutoff and p["silent"])
    if tested:
        step = step_down_min_p(observed[tested], null_BF[:, tested], alpha=alpha)
        bound = step.true_discovery_bound
        confirmed = [int(fine[tested[i]]) for i in np.flatnonzero(step.rejected)]
        adjusted = {int(fine[j]): float(step.adjusted_p[i]) for i, j in enumerate(tested)}
    else:
        bound, confirmed, adjusted = 0, [], {}
    plausible = sum(1 for j in tested if observed[j] > 0) + silent
    # Min-P is discrete: with m rows and B shuffles the first step's adjusted p can be as large as
    # m / (B + 1), so above alpha * (B + 1) rows it may reject nothing however strong the rows are.
    n_draws = null_BF.shape[0] + 1
    shuffles_needed = int(np.ceil(len(tested) / alpha)) if tested else 0
    coarse = len(tested) > alpha * n_draws
    if bound >= need:
        count_verdict = "held"
    elif plausible < need:
        count_verdict = "refuted"  # even every positive and every untestable row would not reach the count
    else:
        count_verdict = "inconclusive"
    bh_count = sum(1 for p in rows if p["cosine"] >= cutoff and p["sub_feature"])
    verdict = combine(selective, geometry_verdict, count_verdict)
    return {
        "anchor": int(anchor), "verdict": verdict,
        "selectivity": {"estimate": sel.estimate, "low": sel.low, "high": sel.high, "level": sel.level,
                        "method": sel.method, "bar": bar, "against": against, "verdict": selective},
        "geometry": {**geometry, "verdict": geometry_verdict},
        "sub_features": {"lower_bound": bound, "need": need, "tested": len(tested), "silent": silent,
                         "plausible": plausible, "confirmed": confirmed, "bh_discoveries": bh_count,
                         "adjusted_p": adjusted, "verdict": count_verdict, "shuffles": n_draws - 1,
                         "too_few_shuffles": bool(coarse and count_verdict != "held"),
                         "shuffles_needed": shuffles_needed},
    }


def gate_decision(a: Analysis, spec: ClaimSpec, anchors: tuple[int, ...] | None = None) -> dict:
    """The rule over the anchors (Bonferroni across them): held when some anchor passes all three parts."""
    anchors = tuple(int(x) for x in (a.anchors if anchors is None else anchors))
    if not anchors:
        return {"verdict": "refuted", "anchors": [], "alpha_per_anchor": None, "reason": "no coarse anchors"}
    alpha = a.alpha / len(anchors)
    parts = [anchor_gate(a, anchor, spec, alpha) for anchor in anchors]
    verdicts = [p["verdict"] for p in parts]
    verdict = "held" if "held" in verdicts else ("refuted" if all(v == "refuted" for v in verdicts) else "inconclusive")
    return {"verdict": verdict, "anchors": parts, "alpha_per_anchor": alpha}


def describe_anchor(part: dict) -> str:
    s, g, c = part["selectivity"], part["geometry"], part["sub_features"]
    text = (f"coarse-{part['anchor']}: selectivity {s['estimate']:.3f} [{s['low']:.3f}, {s['high']:.3f}] vs "
            f"{s['bar']:g} ({s['verdict']}); ")
    if g["rule"] == "none":
        text += "geometry not required; "
    else:
        text += (f"{g['beyond_cutoff']} fine rows >= {g['cutoff']:g} vs null median {g['null_median']:.0f} "
                 f"(rank p {g['rank_p']:.2g}")
        if "crowd_verdict" in g:
            text += f"; null's 95% largest cosine {g['crowd_q95']:.3f}"
        text += f", {g['verdict']}); "
    text += (f">= {c['lower_bound']} true sub-features of {c['tested']} tested (need {c['need']}; "
             f"{c['bh_discoveries']} BH discoveries, descriptive; {c['verdict']}")
    if c.get("too_few_shuffles"):
        text += (f"; {c['shuffles']} shuffles cannot resolve {c['tested']} rows at this level: use "
                 f"analysis.permutations >= {c['shuffles_needed']}")
    return text + ")"


# ---- the negative control: anchors picked on a random SAE the same way -----------------------------
def control_anchors(control: Analysis, n: int, min_fire_rate: float) -> tuple[int, ...]:
    """The control SAE's own best concept features, picked as discovery picks anchors: on the discovery
    half when the run tests on the confirmation half, else on the same prompts (which favours GO on the
    control, so it can only make the real gate stricter)."""
    picking = control.on_split("discovery") if control.split == "confirmation" else control
    ranked = picking.ranked_features("coarse", top=10_000, min_fire=min_fire_rate)
    alpha = control.alpha
    chosen = [r["feature"] for r in ranked if significant(r["q_value"], alpha) and r["selectivity"] > 0.5
              and (r["q_value_near_miss"] is None or (significant(r["q_value_near_miss"], alpha)
                                                      and r["selectivity_near_miss"] > 0.5))]
    return tuple(chosen[:n])


ANCHOR_DEPENDENT = ("pairs", "co-firing-null")  # Analysis cache entries built over the profile's anchors


def with_anchors(a: Analysis, anchors: tuple[int, ...]) -> Analysis:
    """The same data with other coarse anchors; what does not depend on them (the geometry null,
    cosines, selectivity tests) is kept rather than computed again."""
    profile = dataclasses.replace(a.profile, anchors=dataclasses.replace(a.profile.anchors, coarse=tuple(anchors)))
    kept = {key: value for key, value in a._cache.items() if key not in ANCHOR_DEPENDENT}
    return dataclasses.replace(a, profile=profile, _cache=kept)


def control_gate(control: Analysis, spec: ClaimSpec, n_anchors: int) -> dict:
    anchors = control_anchors(control, n_anchors, control.profile.discovery.min_fire_rate)
    if not anchors:
        return {"verdict": "refuted", "anchors": [], "picked": [], "alpha_per_anchor": None,
                "reason": "no feature of the random SAE is selective for the concept"}
    decision = gate_decision(with_anchors(control, anchors), spec, anchors)
    return {**decision, "picked": list(anchors)}


def check_gate_spec(spec: ClaimSpec) -> None:
    if spec.param("geometry") not in GEOMETRY_RULES:
        raise ConfigError(f"claim {spec.claim_id!r}: geometry {spec.param('geometry')!r}; valid: {GEOMETRY_RULES}")
