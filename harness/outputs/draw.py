"""What a family's report section is drawn with (`from harness import draw`): the figures, from the
ledger's stored tables, and the tables the built-in sections show. See harness/outputs/sections.py
for `Section` and `Table`."""

__all__ = [
    "CATEGORY_MEANING", "activation_distributions", "aligned_counts", "bold", "claim_details", "cosine_heatmap",
    "cosine_histograms", "decomposition_graph", "facet_heatmap", "facet_table", "gate_anchor_table", "link",
    "pair_scatter", "pairs_table", "ranked_features_table", "steering_figures", "steering_tables", "swatch",
]

from harness.outputs.figures import (
    activation_distributions,
    aligned_counts,
    cosine_heatmap,
    cosine_histograms,
    decomposition_graph,
    facet_heatmap,
    pair_scatter,
    steering_figures,
)
from harness.outputs.figures import CATEGORY_MEANING
from harness.outputs.sections import (
    bold,
    claim_details,
    facet_table,
    gate_anchor_table,
    link,
    pairs_table,
    ranked_features_table,
    steering_tables,
    swatch,
)
