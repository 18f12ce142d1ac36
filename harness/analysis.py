"""Everything the claims read, computed once per session from the feature tables.

Which prompts count: anchors discovered on the discovery half are tested on the
confirmation half (concept and neutral); pre-registered anchors use all prompts. Near-miss
prompts never take part in discovery, so all of them serve every test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.config import Profile
from harness.features import FeatureTables
from harness.prompts import PromptSets, discovery_mask
from harness.stats import (
    auroc,
    benjamini_hochberg,
    bootstrap_interval,
    correlation_permutation_test,
    cosine_matrix,
    pearson,
    random_direction_cosines,
    selectivity,
    two_sample_permutation_test,
)

AGAINST = ("neutral", "near_miss")
RANDOM_DIRECTIONS = 200


def split_rows(tables: FeatureTables, prompt_sets: PromptSets, seed: int) -> dict[str, np.ndarray]:
    """Boolean row masks: concept/neutral by discovery vs confirmation half, near-miss whole."""
    n = len(tables.prompt_ids)
    masks = {}
    for name in ("concept", "neutral"):
        rows = tables.rows(name)
        half = discovery_mask(getattr(prompt_sets, name), seed)
        discovery = np.zeros(n, bool)
        discovery[np.flatnonzero(rows)[half]] = True
        masks[f"{name}_discovery"] = discovery
        masks[f"{name}_confirmation"] = rows & ~discovery
        masks[f"{name}_all"] = rows
    masks["near_miss_all"] = tables.rows("near_miss")
    return masks


@dataclass
class Analysis:
    profile: Profile
    tables: FeatureTables
    directions: dict[str, np.ndarray]  # role -> [d_sae, d_model] unit decoder rows
    masks: dict[str, np.ndarray]
    split: str  # "all" or "confirmation" (or "discovery" inside `discover`)
    seed: int
    n_permutations: int
    n_bootstrap: int
    alpha: float
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, profile: Profile, tables: FeatureTables, prompt_sets: PromptSets, directions: dict,
              *, split: str | None = None) -> Analysis:
        analysis_cfg = profile.analysis
        return cls(
            profile=profile, tables=tables, directions={k: np.asarray(v) for k, v in directions.items()},
            masks=split_rows(tables, prompt_sets, profile.prompts.split_seed),
            split=split or profile.anchors.split, seed=analysis_cfg.seed,
            n_permutations=analysis_cfg.permutations, n_bootstrap=analysis_cfg.bootstrap, alpha=analysis_cfg.alpha,
        )

    # ---- prompt groups -------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Analysis(profile={self.profile.name!r}, split={self.split!r}, seed={self.seed})"

    def group(self, name: str) -> np.ndarray:
        if name == "near_miss":
            return self.masks["near_miss_all"]
        return self.masks[f"{name}_{self.split}"]

    def evaluation_rows(self) -> np.ndarray:
        return self.group("concept") | self.group("neutral")

    def acts(self, role: str) -> np.ndarray:
        return self.tables.pooled[role]

    # ---- per-feature statistics -----------------------------------------------------------
    def feature_summary(self, role: str, features: np.ndarray, against: str = "neutral") -> dict[str, np.ndarray]:
        concept, other = self.group("concept"), self.group(against)
        x = self.acts(role)[:, features]
        mean_c, mean_o = x[concept].mean(0), x[other].mean(0)
        rows = concept | other
        return {
            "mean_concept": mean_c, "mean_other": mean_o, "selectivity": selectivity(mean_c, mean_o),
            "auroc": auroc(x[rows], concept[rows]), "fire_concept": (x[concept] > 0).mean(0),
            "fire_other": (x[other] > 0).mean(0),
        }

    def selectivity_test(self, role: str, features: np.ndarray, against: str = "neutral"):
        """Permutation p of selectivity (concept vs `against`), the same shuffles for all features."""
        key = ("sel", role, tuple(np.asarray(features).tolist()), against, self.split)
        if key not in self._cache:
            concept, other = self.group("concept"), self.group(against)
            rows = concept | other
            self._cache[key] = two_sample_permutation_test(
                self.acts(role)[rows][:, features], concept[rows], statistic="selectivity",
                n_resamples=self.n_permutations, seed=self.seed, alternative="greater")
        return self._cache[key]

    def selectivity_interval(self, role: str, feature: int, against: str = "neutral"):
        column = self.acts(role)[:, feature]
        concept, other = np.flatnonzero(self.group("concept")), np.flatnonzero(self.group(against))
        return bootstrap_interval(
            lambda c, o: selectivity(column[c].mean(-1), column[o].mean(-1)), [concept, other],
            n_resamples=self.n_bootstrap, seed=self.seed)

    def ranked_features(self, role: str, top: int = 40, min_fire: float = 0.1) -> list[dict]:
        """The seed's list: features ranked by selectivity, with permutation p and BH q over all tested."""
        key = ("ranked", role, top, self.split)
        if key in self._cache:
            return self._cache[key]
        concept = self.group("concept")
        fires = (self.acts(role)[concept] > 0).mean(0)
        candidates = np.flatnonzero(fires >= min_fire)
        if candidates.size == 0:
            self._cache[key] = []
            return []
        summary = self.feature_summary(role, candidates)
        test = self.selectivity_test(role, candidates)
        _, q = benjamini_hochberg(test.p_value, self.alpha)
        near = self.feature_summary(role, candidates, "near_miss")
        order = np.lexsort((-summary["auroc"], -summary["selectivity"]))[:top]
        rows = []
        for i in order:
            rows.append({
                "feature": int(candidates[i]), "mean_concept": float(summary["mean_concept"][i]),
                "mean_neutral": float(summary["mean_other"][i]), "mean_near_miss": float(near["mean_other"][i]),
                "selectivity": float(summary["selectivity"][i]),
                "selectivity_near_miss": float(near["selectivity"][i]), "auroc": float(summary["auroc"][i]),
                "fire_rate_concept": float(summary["fire_concept"][i]),
                "fire_rate_neutral": float(summary["fire_other"][i]), "p_value": float(test.p_value[i]),
                "q_value": float(q[i]), "n_tested": int(candidates.size),
            })
        self._cache[key] = rows
        return rows

    # ---- geometry ------------------------------------------------------------------------------
    def anchor_cosines(self, anchor: int) -> np.ndarray:
        """Cosine of the coarse anchor's decoder row with every fine decoder row."""
        key = ("cos", anchor)
        if key not in self._cache:
            self._cache[key] = (self.directions["fine"] @ self.directions["coarse"][anchor]).astype(np.float64)
        return self._cache[key]

    def random_null_cosines(self) -> np.ndarray:
        key = ("null-cos",)
        if key not in self._cache:
            self._cache[key] = random_direction_cosines(self.directions["fine"], RANDOM_DIRECTIONS, seed=self.seed)
        return self._cache[key]

    def cosine_heatmap(self, coarse: list[int], per_anchor: int = 4) -> dict:
        fine: list[int] = list(self.profile.anchors.fine)
        for anchor in coarse:
            for f in np.argsort(-self.anchor_cosines(anchor))[:per_anchor]:
                if int(f) not in fine:
                    fine.append(int(f))
        values = cosine_matrix(self.directions["coarse"][coarse], self.directions["fine"][fine])
        return {"coarse": coarse, "fine": fine, "cosine": values.round(4).tolist()}

    # ---- cross-resolution pairs ----------------------------------------------------------------
    def pair_table(self) -> list[dict]:
        """Every (coarse anchor, candidate fine feature) pair with cosine, correlation, p, BH q, colour.

        Candidates per anchor: all fine rows with cosine >= the smallest sub-feature cutoff declared,
        plus the top few by cosine and by correlation (so the scatter shows co-occurring features too).
        BH runs over all pairs in the table: one family of tests.
        """
        if "pairs" in self._cache:
            return self._cache["pairs"]
        specs = {c.param("anchor"): c for c in self.profile.claims_of("sub_features")}
        cutoff = min([c.param("min_cosine") for c in specs.values()] or [0.3])
        rows = self.evaluation_rows()
        fine_acts = self.acts("fine")[rows]
        top = self.profile.analysis.top_fine_matches
        pairs = []
        for anchor in self.profile.anchors.coarse:
            cos = self.anchor_cosines(anchor)
            coarse_col = self.acts("coarse")[rows, anchor]
            r_all = pearson(coarse_col, fine_acts)
            candidates = set(np.flatnonzero(cos >= cutoff).tolist())
            candidates |= set(np.argsort(-cos)[:top].tolist()) | set(np.argsort(-r_all)[:top].tolist())
            candidates = np.array(sorted(candidates))
            test = correlation_permutation_test(coarse_col, fine_acts[:, candidates],
                                                n_resamples=self.n_permutations, seed=self.seed)
            for j, fine in enumerate(candidates):
                pairs.append({"coarse": int(anchor), "fine": int(fine), "cosine": float(cos[fine]),
                              "correlation": float(test.statistic[j]), "p_value": float(test.p_value[j])})
        if pairs:
            _, q = benjamini_hochberg([p["p_value"] for p in pairs], self.alpha)
            for pair, q_value in zip(pairs, q, strict=True):
                pair["q_value"] = float(q_value)
                spec = specs.get(pair["coarse"])
                pair.update(classify_pair(pair, spec, self.alpha))
        self._cache["pairs"] = pairs
        return pairs

    def sub_features(self, anchor: int) -> list[dict]:
        return [p for p in self.pair_table() if p["coarse"] == anchor and p["sub_feature"]]

    # ---- reconstruction and sparsity -------------------------------------------------------------
    def explained_variance_interval(self, role: str):
        t = self.tables
        rows = np.flatnonzero(self.evaluation_rows())

        def ev(idx):
            n = t.n_tokens[idx].sum(-1)
            mean = t.resid_sum[idx].sum(-2) / n[..., None]
            total = t.resid_sq[idx].sum(-1) - n * (mean * mean).sum(-1)
            return 1 - t.sq_error[role][idx].sum(-1) / total

        return bootstrap_interval(ev, [rows], n_resamples=self.n_bootstrap, seed=self.seed)

    def l0_interval(self, role: str):
        t = self.tables
        rows = np.flatnonzero(self.evaluation_rows())
        return bootstrap_interval(lambda idx: t.l0_sum[role][idx].sum(-1) / t.n_tokens[idx].sum(-1), [rows],
                                  n_resamples=self.n_bootstrap, seed=self.seed)

    # ---- report tables ---------------------------------------------------------------------------
    def distributions(self, role: str, feature: int) -> dict[str, list[float]]:
        column = self.acts(role)[:, feature]
        return {name: column[self.group(name)].round(4).tolist() for name in ("concept", "neutral", "near_miss")}

    def top_prompts(self, role: str, feature: int, prompt_texts: dict[str, str], n: int = 5) -> list[dict]:
        column = self.acts(role)[:, feature]
        order = np.argsort(-column)[:n]
        return [{"id": self.tables.prompt_ids[i], "set": self.tables.prompt_sets[i],
                 "text": prompt_texts.get(self.tables.prompt_ids[i], ""), "activation": float(column[i])}
                for i in order if column[i] > 0]


def classify_pair(pair: dict, spec, alpha: float) -> dict:
    """The seed's colours. blue: same direction and co-fire; orange: partial; red: co-occur, cosine ~ 0."""
    def param(key, default):
        return spec.param(key) if spec is not None else default

    min_cos = param("min_cosine", 0.3)
    blue_r = param("blue_min_correlation", 0.5)
    orange_r = param("orange_min_correlation", 0.2)
    red_cos = param("red_max_cosine", 0.1)
    cos, r = pair["cosine"], pair["correlation"]
    significant = pair["q_value"] < alpha and r > 0
    if cos >= min_cos and r >= blue_r:
        category = "blue"
    elif r >= orange_r and abs(cos) < red_cos:
        category = "red"
    elif r >= orange_r or cos >= min_cos:
        category = "orange"
    else:
        category = "grey"
    return {"category": category, "sub_feature": bool(cos >= min_cos and significant)}
