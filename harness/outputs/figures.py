"""Plotly figures drawn from the ledger's stored tables (and records): the building blocks a
family's report section puts together (`from harness import draw`). Each returns a plotly spec
(a dict with an "id"), a list of them, or None when its table is absent; none computes a statistic.
"""

from __future__ import annotations

CATEGORY_COLOURS = {"blue": "#1f77b4", "orange": "#ff7f0e", "red": "#d62728", "grey": "#b0b0b0",
                    "silent": "#555555"}
SILENT_X = -0.25  # silent features have no correlation: drawn in a strip left of the axis, hollow
CATEGORY_MEANING = {
    "blue": "same direction and co-fire (sub-feature match)",
    "orange": "partial: co-fire with drifting geometry, or aligned but weakly co-firing",
    "red": "co-occur, cosine near 0 (related concept, not the same one)",
    "grey": "neither",
    "silent": "a feature silent on these prompts (not evaluable; no correlation)",
}


def _layout(title: str, **extra) -> dict:
    layout = {"title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
              "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
              "template": "plotly_white", "height": 380}
    layout.update(extra)
    return layout


def activation_distributions(tables: dict) -> list[dict]:
    figures = []
    colours = {"concept": "#1f77b4", "neutral": "#7f7f7f", "near_miss": "#ff7f0e"}
    for name, groups in tables.get("distributions", {}).items():
        traces = [{"type": "box", "y": values, "name": group.replace("_", "-"), "boxpoints": "all",
                   "jitter": 0.4, "pointpos": 0, "marker": {"size": 3, "color": colours[group]},
                   "line": {"color": colours[group]}} for group, values in groups.items()]
        figures.append({"id": f"dist-{name}", "data": traces,
                        "layout": _layout(f"{name}: pooled activation per prompt", showlegend=False,
                                          yaxis={"title": "max activation over tokens"}, height=320)})
    return figures


def cosine_heatmap(tables: dict) -> dict | None:
    heat = tables.get("cosine_heatmap")
    if not heat:
        return None
    return {"id": "heatmap", "data": [{
        "type": "heatmap", "z": heat["cosine"], "x": [f"F-{f}" for f in heat["fine"]],
        "y": [f"C-{c}" for c in heat["coarse"]], "colorscale": "RdBu", "reversescale": True, "zmin": -1, "zmax": 1,
        "text": [[f"{v:.2f}" for v in row] for row in heat["cosine"]], "texttemplate": "%{text}",
        "hovertemplate": "%{y} vs %{x}: cosine %{z:.3f}<extra></extra>"}],
        "layout": _layout("Decoder cosine: coarse anchors x their best fine matches",
                          xaxis={"type": "category"}, yaxis={"type": "category", "autorange": "reversed"})}


def cosine_histograms(tables: dict) -> list[dict]:
    out = []
    for name, hist in tables.get("cosine_histograms", {}).items():
        edges = hist["edges"]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        cutoff = tables.get("cutoffs", {}).get(name, 0.3)
        null_counts = [d * hist["n_fine"] for d in hist["null_density"]]
        out.append({"id": f"hist-{name}", "data": [
            {"type": "bar", "x": centres, "y": hist["counts"], "name": f"{name} vs every fine row",
             "marker": {"color": "#1f77b4"}},
            {"type": "scatter", "mode": "lines", "x": centres, "y": null_counts, "name": "null directions, decoder covariance (scaled)",
             "line": {"color": "#7f7f7f", "dash": "dot"}}],
            "layout": _layout(f"{name}: cosine with all {hist['n_fine']:,} fine decoder rows (log scale)",
                              yaxis={"type": "log", "title": "fine features"}, xaxis={"title": "decoder cosine"},
                              shapes=[{"type": "line", "x0": cutoff, "x1": cutoff, "y0": 0, "y1": 1, "yref": "paper",
                                       "line": {"color": "#d62728", "width": 2}}],
                              annotations=[{"x": cutoff, "y": 1, "yref": "paper", "text": f"cutoff {cutoff}",
                                            "showarrow": False, "xanchor": "left", "font": {"color": "#d62728"}}],
                              legend={"orientation": "h", "y": -0.2})})
    return out


def aligned_counts(tables: dict) -> dict | None:
    """How many fine rows reach the cutoff: every coarse row vs null directions, anchors marked."""
    counts = tables.get("aligned_counts")
    if not counts:
        return None
    counted, total_rows = counts.get("coarse_rows_counted"), counts.get("coarse_rows")
    coarse_label = ("all coarse rows" if counted is None or counted == total_rows
                    else f"{counted:,} sampled coarse rows of {total_rows:,}")

    def density(hist):
        total = max(1, sum(hist))
        return [h / total for h in hist]
    data = [
        {"type": "bar", "x": list(range(len(counts["all_coarse"]))), "y": density(counts["all_coarse"]),
         "name": coarse_label, "marker": {"color": "#1f77b4"}, "opacity": 0.7},
        {"type": "bar", "x": list(range(len(counts["null"]))), "y": density(counts["null"]),
         "name": "null directions (decoder covariance)", "marker": {"color": "#7f7f7f"}, "opacity": 0.7},
    ]
    shapes, annotations = [], []
    for i, (name, value) in enumerate(counts["anchors"].items()):
        shapes.append({"type": "line", "x0": value, "x1": value, "y0": 0, "y1": 1, "yref": "paper",
                       "line": {"color": "#d62728", "width": 2}})
        annotations.append({"x": value, "y": 1 - 0.08 * i, "yref": "paper", "text": name, "showarrow": False,
                            "xanchor": "left", "font": {"color": "#d62728", "size": 11}})
    return {"id": "aligned-counts", "data": data, "layout": _layout(
        f"Fine rows with cosine >= {counts['cutoff']} per direction: anchors vs {coarse_label} vs the null",
        barmode="overlay", xaxis={"title": f"fine rows at or beyond {counts['cutoff']}"},
        yaxis={"title": "share of directions", "type": "log"}, shapes=shapes, annotations=annotations,
        legend={"orientation": "h", "y": -0.25})}


def pair_scatter(tables: dict) -> dict | None:
    pairs = tables.get("pairs")
    if not pairs:
        return None
    traces = []
    for category, colour in CATEGORY_COLOURS.items():
        members = [p for p in pairs if p.get("category") == category]
        if not members:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": f"{category}: {CATEGORY_MEANING[category]}",
            "x": [SILENT_X if p.get("correlation") is None else p["correlation"] for p in members],
            "y": [p["cosine"] for p in members],
            "text": [f"C-{p['coarse']} / F-{p['fine']}<br>" + (
                f"silent: fine fires on {p.get('fine_fires', 0)} prompts" if p.get("correlation") is None else
                f"within-set r = {_fmt(p.get('partial_correlation'))}, q = {_fmt(p.get('q_value'), '.2g')}")
                for p in members],
            "hovertemplate": "%{text}<br>pooled r = %{x:.3f}, cos = %{y:.3f}<extra></extra>",
            "marker": {"color": colour, "size": [11 if p.get("sub_feature") else 7 for p in members],
                       "symbol": "circle-open" if category == "silent" else "circle",
                       "line": {"width": 1, "color": "#333"}}})
    return {"id": "scatter", "data": traces, "layout": _layout(
        "Correlation vs decoder cosine for coarse-fine pairs (large = sub-feature; hollow, left = silent)",
        xaxis={"title": "activation correlation (the seed's pooled Pearson; tests use it within prompt sets)",
               "range": [-0.3, 1.05]},
        yaxis={"title": "decoder cosine", "range": [-0.3, 1.05]}, height=460,
        legend={"orientation": "h", "y": -0.25},
        shapes=[{"type": "rect", "x0": -0.3, "x1": 0.1, "y0": 0.3, "y1": 1.05, "fillcolor": "rgba(214,39,40,0.07)",
                 "line": {"width": 0}}],
        annotations=[{"x": -0.1, "y": 0.95, "text": "empty top-left<br>(aligned but not co-firing)",
                      "showarrow": False, "font": {"size": 11, "color": "#a33"}}])}


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def decomposition_graph(tables: dict) -> dict | None:
    """Sub-features only (a readable graph); all co-firing pairs when no anchor has a sub-feature."""
    pairs = [p for p in tables.get("pairs", []) if p.get("sub_feature")] or \
        [p for p in tables.get("pairs", []) if p.get("category") in ("blue", "orange", "red")]
    if not pairs:
        return None
    coarse = sorted({p["coarse"] for p in pairs})
    fine = sorted({p["fine"] for p in pairs}, key=lambda f: (min(p["coarse"] for p in pairs if p["fine"] == f), f))
    y_coarse = {c: i / max(1, len(coarse) - 1) if len(coarse) > 1 else 0.5 for i, c in enumerate(coarse)}
    y_fine = {f: i / max(1, len(fine) - 1) if len(fine) > 1 else 0.5 for i, f in enumerate(fine)}
    traces = []
    for p in pairs:
        cos = max(-1.0, min(1.0, p["cosine"]))
        colour = f"rgba({int(214 * (1 - max(cos, 0)))},{int(80 + 40 * max(cos, 0))},{int(40 + 200 * max(cos, 0))},0.8)"
        traces.append({"type": "scatter", "mode": "lines", "x": [0, 1], "y": [y_coarse[p["coarse"]], y_fine[p["fine"]]],
                       "line": {"width": 1 + 10 * max(p.get("correlation") or 0, 0), "color": colour},
                       "hoverinfo": "text",
                       "text": f"C-{p['coarse']} to F-{p['fine']}: r = {_fmt(p.get('correlation'), '.2f')}, "
                               f"cos = {p['cosine']:.2f}",
                       "showlegend": False})
    traces.append({"type": "scatter", "mode": "markers+text", "x": [0] * len(coarse), "y": [y_coarse[c] for c in coarse],
                   "text": [f"C-{c}" for c in coarse], "textposition": "middle left", "showlegend": False,
                   "marker": {"size": 18, "color": "#1f77b4"}, "hoverinfo": "text"})
    traces.append({"type": "scatter", "mode": "markers+text", "x": [1] * len(fine), "y": [y_fine[f] for f in fine],
                   "text": [f"F-{f}" for f in fine], "textposition": "middle right", "showlegend": False,
                   "marker": {"size": 10, "color": "#555"}, "hoverinfo": "text"})
    return {"id": "decomposition-graph", "data": traces, "layout": _layout(
        "Decomposition graph: link width = correlation, colour = cosine (blue aligned, red orthogonal)",
        xaxis={"visible": False, "range": [-0.35, 1.35]}, yaxis={"visible": False, "range": [-0.1, 1.1]},
        height=max(380, 22 * len(fine)))}


# One colour per steering method, in every steering plot.
METHOD_COLOURS = {"anchor": "#d62728", "multi": "#9467bd", "fine": "#e377c2", "aligned_mixture": "#bcbd22",
                  "control_mixture": "#8c564b", "diffmean": "#1f77b4", "prompting": "#2ca02c",
                  "other": "#ff7f0e", "other_diffmean": "#ffbb78", "random": "#7f7f7f", "random_row": "#c7c7c7",
                  "unsteered": "#17becf", "anchor_at_prompting_kl": "#f4a3a8"}


def _method_style(kind: str) -> dict:
    return {"color": METHOD_COLOURS.get(kind, "#333333")}


def _split_screened(block: dict) -> tuple[list[int], list[int]]:
    """Indices of a control kind's exactly scored controls and of those screened (their shift is a bound)."""
    exact = block.get("exact") or [True] * len(block["concept_shift"])
    return [i for i, e in enumerate(exact) if e], [i for i, e in enumerate(exact) if not e]


def steering_figures(steering: dict) -> list[dict]:
    figures = []
    curves = steering.get("dose_response", {})
    summary = steering.get("summary", {})
    lexicons = steering.get("lexicons", {})
    concept = lexicons.get("concept", {}).get("name", "concept")
    other = lexicons.get("other", {}).get("name", "other")
    prompting = summary.get("prompting")
    if curves:
        traces = []
        band = steering.get("random_band") or {}
        if band:
            traces.append({"type": "scatter", "x": band["coefficient"] + band["coefficient"][::-1],
                           "y": band["high"] + band["low"][::-1], "fill": "toself", "fillcolor": "rgba(127,127,127,0.2)",
                           "line": {"width": 0}, "name": f"{band.get('n', '')} random directions (5-95%)",
                           "hoverinfo": "skip"})
        for name, curve in curves.items():
            traces.append({"type": "scatter", "mode": "lines+markers", "x": curve["coefficient"], "y": curve["concept_shift"],
                           "name": name, "line": _method_style(curve.get("kind", ""))})
        if prompting:
            coefficients = next(iter(curves.values()))["coefficient"]
            traces.append({"type": "scatter", "mode": "lines", "x": [coefficients[0], coefficients[-1]],
                           "y": [prompting["concept_shift"]] * 2, "name": "prompting (no coefficient)",
                           "line": {**_method_style("prompting"), "dash": "dash"}})
        figures.append({"id": "dose", "data": traces, "layout": _layout(
            f"Dose-response: {concept}-word log-prob shift (control prompts)",
            xaxis={"title": "steering coefficient (multiples of the mean residual norm)", "type": "log"},
            yaxis={"title": "shift from unsteered (nats)"}, legend={"orientation": "h", "y": -0.3}, height=460)})
    controls = steering.get("controls", {})
    if curves or controls.get("by_kind"):
        traces = [{"type": "scatter", "mode": "lines+markers", "x": curve["kl"], "y": curve["concept_shift"], "name": name,
                   "text": [f"coefficient {c:g}" for c in curve["coefficient"]], "line": _method_style(curve.get("kind", ""))}
                  for name, curve in curves.items()]
        if not curves:  # no dose-response (a report extra): the named methods at their matched coefficient
            traces = [{"type": "scatter", "mode": "markers", "x": [row["kl"]], "y": [row["concept_shift"]], "name": name,
                       "marker": {**_method_style(row.get("kind", "")), "size": 10}}
                      for name, row in summary.items() if row.get("kind") not in ("unsteered", "prompting",
                                                                                "anchor_at_prompting_kl")]
        for kind, block in (controls.get("by_kind") or {}).items():
            exact, bound = _split_screened(block)
            kls = block.get("kl") or []
            if len(kls) != len(block["concept_shift"]):
                continue  # a study that recorded no KL for its controls: nothing to place on this axis
            for part, label, opacity in ((exact, "at matched KL", 0.6), (bound, "screened: upper bound", 0.25)):
                if part:
                    traces.append({"type": "scatter", "mode": "markers", "x": [kls[i] for i in part],
                                   "y": [block["concept_shift"][i] for i in part],
                                   "name": f"{kind.replace('_', ' ')} {label} ({len(part)})",
                                   "marker": {**_method_style(kind), "size": 5, "opacity": opacity},
                                   "text": [block["names"][i] for i in part] if block.get("names") else None})
        if prompting:
            traces.append({"type": "scatter", "mode": "markers", "x": [prompting["kl"]], "y": [prompting["concept_shift"]],
                           "name": "prompting", "marker": {**_method_style("prompting"), "size": 12, "symbol": "star"}})
        for name, row in summary.items():
            if row.get("kind") == "anchor_at_prompting_kl":  # the anchor at the instruction's KL, for the comparison
                traces.append({"type": "scatter", "mode": "markers", "x": [row["kl"]], "y": [row["concept_shift"]],
                               "name": name, "marker": {**_method_style("anchor"), "size": 11, "symbol": "diamond"}})
        budget = steering.get("kl_budget")
        shapes = [{"type": "line", "x0": budget, "x1": budget, "yref": "paper", "y0": 0, "y1": 1,
                   "line": {"dash": "dot", "color": "#999"}}] if budget else []
        figures.append({"id": "pareto", "data": traces, "layout": _layout(
            f"Pareto: {concept}-word shift vs fluency cost", xaxis={"title": "KL from unsteered next-token distribution (nats)",
                                                               "type": "log"},
            yaxis={"title": "shift from unsteered (nats)"}, legend={"orientation": "h", "y": -0.3}, height=460,
            shapes=shapes)})
    if controls.get("by_kind"):
        traces = []
        for kind, block in controls["by_kind"].items():
            exact, bound = _split_screened(block)
            for part, label, opacity in ((exact, "", 0.6), (bound, " (screened: upper bound)", 0.25)):
                if part:
                    traces.append({"type": "histogram", "x": [block["concept_shift"][i] for i in part],
                                   "name": kind.replace("_", " ") + label, "opacity": opacity,
                                   "marker": _method_style(kind), "nbinsx": 30})
        shapes, notes = [], []
        for name, value in controls.get("on_control_prompts", {}).items():
            kind = summary.get(name, {}).get("kind", "")
            if kind in ("anchor", "multi", "diffmean"):
                shapes.append({"type": "line", "x0": value, "x1": value, "yref": "paper", "y0": 0, "y1": 1,
                               "line": {**_method_style(kind), "width": 3}})
                # staggered: the three often land within a few hundredths of a nat of each other
                notes.append({"x": value, "yref": "paper", "y": 0.95 - 0.08 * len(notes), "xanchor": "right",
                              "text": name.split(":")[0] + " ", "showarrow": False,
                              "font": {"size": 10, **_method_style(kind)}})
        figures.append({"id": "controls", "data": traces, "layout": _layout(
            f"Controls at matched KL: {concept}-word shift ({controls.get('prompts')} prompts); lines: anchor, multi, DiffMean",
            barmode="overlay", xaxis={"title": "shift from unsteered (nats)"}, yaxis={"title": "directions"},
            shapes=shapes, annotations=notes, legend={"orientation": "h", "y": -0.25}, height=400)})
    if summary:
        names = [n for n in summary if summary[n].get("kind") not in ("unsteered",)]
        colours = [METHOD_COLOURS.get(summary[n].get("kind", ""), "#333") for n in names]
        figures.append({"id": "twobytwo", "data": [
            {"type": "bar", "x": names, "y": [summary[n]["concept_shift"] for n in names], "name": f"{concept} words",
             "marker": {"color": colours}},
            {"type": "bar", "x": names, "y": [summary[n]["other_shift"] for n in names], "name": f"{other} words",
             "marker": {"color": colours, "pattern": {"shape": "/"}}}],
            "layout": _layout(f"Targeting: {concept} vs {other} words at matched KL (confirmation prompts)",
                              barmode="group", yaxis={"title": "shift from unsteered (nats)"}, height=420,
                              xaxis={"tickangle": -25, "automargin": True}, legend={"orientation": "h", "y": 1.08})})
        figures.append({"id": "steerability", "data": [
            {"type": "bar", "x": names, "y": [summary[n]["wrong_way"] for n in names], "marker": {"color": colours},
             "name": "moved the wrong way"}],
            "layout": _layout(f"Per-prompt steerability: share of prompts whose {concept}-word log-prob went down",
                              yaxis={"title": "share of prompts", "range": [0, 1]}, xaxis={"tickangle": -25, "automargin": True},
                              height=380)})
        sampled = [n for n in summary if summary[n].get("concept_share") is not None]
        if sampled:
            figures.append({"id": "shares", "data": [
                {"type": "bar", "x": sampled, "y": [summary[n]["concept_share"] for n in sampled], "name": concept,
                 "marker": {"color": [METHOD_COLOURS.get(summary[n].get("kind", ""), "#333") for n in sampled]}},
                {"type": "bar", "x": sampled, "y": [summary[n].get("other_share") for n in sampled], "name": other,
                 "marker": {"color": [METHOD_COLOURS.get(summary[n].get("kind", ""), "#333") for n in sampled],
                            "pattern": {"shape": "/"}}}],
                "layout": _layout("Sampled continuations: share of words from each lexicon", barmode="group",
                                  yaxis={"title": "share of words", "tickformat": ".1%"}, xaxis={"tickangle": -25, "automargin": True},
                                  height=400, legend={"orientation": "h", "y": 1.08})})
    return figures


def facet_heatmap(claim) -> dict | None:
    """One facet claim: sub-feature x facet means on the confirmation half, each row scaled to its
    largest facet mean; the facet chosen on the discovery half is marked (and whether it held up)."""
    rows, facets = claim.details.get("sub_features") or [], claim.details.get("facets") or []
    if not rows or not facets:
        return None
    z, marks, labels = [], [], []
    parent = claim.details.get("anchor_facet_means_confirmation")
    if parent:  # the parent first: a nested sub-feature inherits its facet preference
        means = [parent.get(f, 0.0) for f in facets]
        top = max(means) if max(means) > 0 else 1.0
        z.append([m / top for m in means])
        marks.append([""] * len(facets))
        labels.append(f"C-{claim.details.get('anchor')} (parent)")
    for r in rows:
        means = [r.get("facet_mean_confirmation", r.get("facet_share_confirmation", {})).get(f, 0.0) for f in facets]
        top = max(means) if max(means) > 0 else 1.0
        z.append([m / top for m in means])
        marks.append(["✓" if f == r["chosen_facet"] and r["confirmed"] else
                      ("○" if f == r["chosen_facet"] and r["selected"] else "") for f in facets])
    labels += [f"F-{r['fine']}" for r in rows]
    return {"id": f"facet-{claim.id.replace('[', '-').replace(']', '')}", "data": [{
        "type": "heatmap", "z": z, "x": facets, "y": labels, "text": marks, "texttemplate": "%{text}",
        # explicit: plotly.js's named "Blues" runs dark to light, Python plotly's light to dark
        "colorscale": [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]], "zmin": 0, "zmax": 1, "colorbar": {"title": {"text": "share of row max"}},
        "hovertemplate": "%{y} on %{x}: %{z:.2f} of its largest facet<extra></extra>"}],
        "layout": _layout(f"{claim.id}: mean activation of C-{claim.details.get('anchor')} and its sub-features per facet "
                          "(confirmation half, row / row max; ○ chosen on discovery (q <= alpha), ✓ confirmed, "
                          "both on the excess over the parent)",
                          yaxis={"autorange": "reversed", "type": "category", "automargin": True},
                          xaxis={"type": "category"},
                          height=max(320, 80 + 24 * len(z)))}
