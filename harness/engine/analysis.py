"""Everything the claims read, computed once per session from the feature tables.

Which prompts count: anchors discovered on the discovery half are tested on the
confirmation half of every set (concept, neutral and near-miss, each split by facet with
the profile's seed); pre-registered anchors and prompts the user brings use all prompts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from harness.core.config import Profile
from harness.core.errors import ConfigError, choices_error
from harness.core.families import get_family, pair_rule_family
from harness.features.tables import FeatureTables
from harness.world.prompts import Prompt, PromptSets, discovery_mask
from harness.statistics.planning import PromptPlan, plan_prompts, zero_heavy_draw
from harness.statistics.sequential import look_alpha
from harness.statistics.stats import (
    Interval,
    anisotropic_null,
    auroc,
    benjamini_hochberg,
    betting_upper_bound,
    bootstrap_interval,
    clopper_pearson,
    correlation_permutation_test,
    cosine_matrix,
    partial_correlation_intervals,
    pearson,
    selectivity,
    two_sample_permutation_test,
)

AGAINST = ("neutral", "near_miss")
FEW_FIRINGS = 10  # the default of [analysis] few_firings, for the interval function called outside an Analysis


def split_rows(tables: FeatureTables, prompt_sets: PromptSets, seed: int) -> dict[str, np.ndarray]:
    """Boolean row masks per set: discovery half, confirmation half, all (each set split by facet)."""
    n = len(tables.prompt_ids)
    masks = {}
    for name in ("concept", "neutral", "near_miss"):
        rows = tables.rows(name)
        prompts = getattr(prompt_sets, name)
        discovery = np.zeros(n, bool)
        if len(prompts):
            discovery[np.flatnonzero(rows)[discovery_mask(prompts, seed)]] = True
        masks[f"{name}_discovery"] = discovery
        masks[f"{name}_confirmation"] = rows & ~discovery
        masks[f"{name}_all"] = rows
    return masks


def prompts_by_row(tables: FeatureTables, prompt_sets: PromptSets) -> tuple[Prompt, ...]:
    by_id = {p.id: p for p in prompt_sets.all()}
    return tuple(by_id.get(pid) for pid in tables.prompt_ids)  # row order; None for a row of no prompt set


def facets_by_row(tables: FeatureTables, prompt_sets: PromptSets) -> np.ndarray:
    facet = {p.id: p.facet for p in prompt_sets.all()}
    return np.array([facet.get(pid, "") for pid in tables.prompt_ids], dtype=object)


@dataclass
class Analysis:
    profile: Profile
    tables: FeatureTables
    directions: dict[str, np.ndarray]  # role -> [d_sae, d_model] unit decoder rows
    masks: dict[str, np.ndarray]
    split: str  # "all", "confirmation" (or "discovery" inside `discover`)
    seed: int
    n_permutations: int
    n_bootstrap: int
    alpha: float
    decoder_norms: dict[str, np.ndarray] = field(default_factory=dict)  # role -> [d_sae] ||W_dec row||
    sae_info: dict[str, dict] = field(default_factory=dict)  # role -> {"architecture", "k", ...}
    facets: np.ndarray | None = None  # [P] each prompt's facet ("" when it has none)
    # role -> [d_sae] the largest activation each feature reached on held-out corpus text (the SAE's
    # `ceilings.safetensors`): what an unseen firing can be at most, for the selectivity bound.
    ceilings: dict[str, np.ndarray] = field(default_factory=dict)
    # [P] the prompts in row order (text, set, facet, country, metadata): what a claim reads beside `acts`.
    prompts: tuple[Prompt, ...] = ()
    # Simulate "prompts that would decide" for inconclusive claims (calibration turns it off: it
    # counts verdicts over thousands of datasets and never reads the advice).
    plan_prompts: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, profile: Profile, tables: FeatureTables, prompt_sets: PromptSets, directions: dict,
              *, split: str | None = None, decoder_norms: dict | None = None,
              sae_info: dict | None = None, ceilings: dict | None = None) -> Analysis:
        analysis_cfg = profile.analysis
        return cls(
            profile=profile, tables=tables, directions={k: np.asarray(v) for k, v in directions.items()},
            masks=split_rows(tables, prompt_sets, profile.prompts.split_seed),
            split=split or profile.anchors.split, seed=analysis_cfg.seed,
            n_permutations=analysis_cfg.permutations, n_bootstrap=analysis_cfg.bootstrap,
            alpha=look_alpha(analysis_cfg.alpha, analysis_cfg.look, analysis_cfg.looks, analysis_cfg.spending),
            decoder_norms={k: np.asarray(v, dtype=np.float64) for k, v in (decoder_norms or {}).items()},
            sae_info=dict(sae_info or {}),
            facets=facets_by_row(tables, prompt_sets),
            ceilings={k: np.asarray(v, dtype=np.float64) for k, v in (ceilings or {}).items()},
            prompts=prompts_by_row(tables, prompt_sets),
        )

    def __repr__(self) -> str:
        return f"Analysis(profile={self.profile.name!r}, split={self.split!r}, seed={self.seed})"

    @property
    def few_firings(self) -> int:
        """[analysis] few_firings: below it a set's firings are too few for the bootstrap alone."""
        return self.profile.analysis.few_firings

    def on_split(self, split: str) -> Analysis:
        """The same data with claims tested on another half ("discovery", "confirmation", "all")."""
        if split not in ("discovery", "confirmation", "all"):
            raise choices_error("split", split, ("discovery", "confirmation", "all"))
        return dataclasses.replace(self, split=split, _cache={})

    # ---- prompt groups -------------------------------------------------------------------
    def rows(self, set_name: str, split: str | None = None, facet: str | None = None) -> np.ndarray:
        """Boolean mask of a prompt set's rows: on a half ("discovery", "confirmation", "all"; default:
        the half the claims are tested on) and, optionally, of one facet."""
        if set_name not in ("concept", "neutral", "near_miss"):
            raise choices_error("prompt set", set_name, ("concept", "neutral", "near_miss"))
        split = split or self.split_of(set_name)
        if split not in ("discovery", "confirmation", "all"):
            raise choices_error("split", split, ("discovery", "confirmation", "all"))
        mask = self.masks[f"{set_name}_{split}"]
        if facet is not None:
            known = sorted(set(self.facet_labels()[self.masks[f"{set_name}_all"]]))
            if facet not in known:
                raise choices_error(f"facet of the {set_name} prompts", facet, known)
            mask = mask & (self.facet_labels() == facet)
        return mask

    def facet_labels(self) -> np.ndarray:
        return self.facets if self.facets is not None else np.full(len(self.tables.prompt_ids), "", dtype=object)

    def facet_names(self, set_name: str = "concept") -> list[str]:
        return sorted(set(self.facet_labels()[self.masks[f"{set_name}_all"]]) - {""})

    @property
    def anchors(self) -> tuple[int, ...]:
        """The coarse anchors (pre-registered or discovered), best first."""
        return tuple(self.profile.anchors.coarse)

    @property
    def top_anchor(self) -> int:
        if not self.anchors:
            raise ConfigError(f"profile {self.profile.name!r} has no coarse anchors; run `python -m harness discover`")
        return self.anchors[0]

    def sub_feature_ids(self, anchor: int) -> list[int]:
        """The anchor's sub-features on the half the claims are tested on, strongest co-firing first."""
        subs = sorted(self.sub_features(anchor), key=lambda p: (-(p["partial_correlation"] or 0.0), p["fine"]))
        return [p["fine"] for p in subs]

    def decoder(self, role: str) -> np.ndarray:
        """[d_sae, d_model] unit decoder rows."""
        return self.directions[role]

    def split_of(self, name: str) -> str:
        """Which half of a set the claims test: fresh prompts are used whole (discovery still halves them)."""
        return "all" if name in self.profile.anchors.whole_sets and self.split != "discovery" else self.split

    def group(self, name: str) -> np.ndarray:
        return self.masks[f"{name}_{self.split_of(name)}"]

    def evaluation_rows(self) -> np.ndarray:
        return self.group("concept") | self.group("neutral")

    def acts(self, role: str) -> np.ndarray:
        return self.tables.pooled[role]

    @property
    def level(self) -> float:
        """Two-sided interval level; each one-sided bound errs with probability alpha / 2."""
        return 1 - self.alpha

    @property
    def min_firing_prompts(self) -> int:
        return self.profile.analysis.min_firing_prompts

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
        """Permutation p of 'no preference' (selectivity 0.5), the same shuffles for all features.

        This p answers only "does the feature prefer the concept at all"; a claim with a threshold
        decides on `selectivity_interval`, which tests the threshold itself.
        """
        key = ("sel", role, tuple(np.asarray(features).tolist()), against, self.split)
        if key not in self._cache:
            concept, other = self.group("concept"), self.group(against)
            rows = concept | other
            self._cache[key] = two_sample_permutation_test(
                self.acts(role)[rows][:, features], concept[rows], statistic="selectivity",
                n_resamples=self.n_permutations, seed=self.seed, alternative="greater")
        return self._cache[key]

    def selectivity_interval(self, role: str, feature: int, against: str = "neutral", *, concept=None,
                             other=None) -> Interval:
        """The selectivity interval of one feature; `concept` / `other` replace the two sets' pooled
        activations (resampled sets, for planning) and keep everything else."""
        ceiling = self.ceilings.get(role)
        return selectivity_interval(self.acts(role)[self.group("concept"), feature] if concept is None else concept,
                                    self.acts(role)[self.group(against), feature] if other is None else other,
                                    level=self.level, n_resamples=self.n_bootstrap, seed=self.seed,
                                    ceiling=None if ceiling is None else float(ceiling[feature]),
                                    few_firings=self.few_firings)

    def plan_selectivity(self, role: str, feature: int, against: str, threshold: float) -> PromptPlan | None:
        """The prompts (concept, `against`, or both) that would decide "selectivity > threshold"."""
        if not self.plan_prompts:
            return None
        x = self.acts(role)[:, feature].astype(np.float64)
        concept, other = x[self.group("concept")], x[self.group(against)]
        # A set with few firings (where the interval's guard, not the bootstrap, decides) draws its firing
        # rate from the rate's posterior, so firings not seen yet can appear at a larger size; a set that
        # never fired draws their sizes from the other set's (the interval's own fallback). Sets with
        # enough firings are resampled as they are.
        draws = {name: zero_heavy_draw(fallback[fallback > 0])
                 for name, values, fallback in (("concept", concept, other),
                                                (against.replace("_", "-"), other, concept))
                 if int((values > 0).sum()) < self.few_firings}
        return plan_prompts({"concept": concept, against.replace("_", "-"): other},
                            lambda c, o: self.selectivity_interval(role, feature, against, concept=c, other=o),
                            threshold, ">", seed=self.seed, draws=draws)

    def ranked_features(self, role: str, top: int = 40, min_fire: float = 0.1) -> list[dict]:
        """The seed's list: features ranked by selectivity, with permutation p and BH q over all tested,
        and each feature's selectivity against near-miss prompts beside it."""
        key = ("ranked", role, top, min_fire, self.split)
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
        has_near = bool(self.group("near_miss").any())  # a profile may bring no near-miss prompts
        near = self.feature_summary(role, candidates, "near_miss") if has_near else None
        near_test = self.selectivity_test(role, candidates, "near_miss") if has_near else None
        near_q = benjamini_hochberg(near_test.p_value, self.alpha)[1] if near_test is not None else None
        order = np.lexsort((-summary["auroc"], -summary["selectivity"]))[:top]
        rows = []
        for i in order:
            rows.append({
                "feature": int(candidates[i]), "mean_concept": float(summary["mean_concept"][i]),
                "mean_neutral": float(summary["mean_other"][i]),
                "mean_near_miss": float(near["mean_other"][i]) if near is not None else None,
                "selectivity": float(summary["selectivity"][i]),
                "selectivity_near_miss": float(near["selectivity"][i]) if near is not None else None,
                "auroc": float(summary["auroc"][i]),
                "fire_rate_concept": float(summary["fire_concept"][i]),
                "fire_rate_neutral": float(summary["fire_other"][i]), "p_value": float(test.p_value[i]),
                "q_value": float(q[i]),
                "q_value_near_miss": float(near_q[i]) if near_q is not None else None,
                "n_tested": int(candidates.size),
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

    def geometry_null(self, cutoff: float):
        """Null directions with the fine decoder's own covariance, against every fine row (cached)."""
        key = ("geometry-null", float(cutoff))
        if key not in self._cache:
            self._cache[key] = anisotropic_null(self.directions["fine"], n_null=self.profile.analysis.null_directions,
                                                cutoff=cutoff, seed=self.seed)
        return self._cache[key]

    # Above this many coarse x fine dot products (Gemma Scope 16K x 262K is 4.3e9: 20 TFLOP, minutes on a
    # CPU) the distribution over "all coarse rows" is read from a seeded sample of rows instead.
    MAX_COSINE_PAIRS = 2**28

    def coarse_counts_beyond(self, cutoff: float, chunk: int = 256) -> np.ndarray:
        """For every coarse row (or a seeded sample of them, see MAX_COSINE_PAIRS), how many fine rows
        reach `cutoff`. Chunked: never [coarse x fine] whole."""
        key = ("coarse-counts", float(cutoff))
        if key not in self._cache:
            coarse, fine = self.directions["coarse"], self.directions["fine"]
            rows = self.counted_coarse_rows()
            counts = np.zeros(rows.size, np.int64)
            for start in range(0, rows.size, chunk):
                counts[start:start + chunk] = (coarse[rows[start:start + chunk]] @ fine.T >= cutoff).sum(1)
            self._cache[key] = counts
        return self._cache[key]

    def counted_coarse_rows(self) -> np.ndarray:
        """The coarse rows coarse_counts_beyond counts: all, or a sample when there are too many pairs."""
        n_coarse, n_fine = self.directions["coarse"].shape[0], self.directions["fine"].shape[0]
        if n_coarse * n_fine <= self.MAX_COSINE_PAIRS:
            return np.arange(n_coarse)
        size = max(1, self.MAX_COSINE_PAIRS // n_fine)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x636F73]))  # its own stream
        return np.sort(rng.choice(n_coarse, size=size, replace=False))

    def cosine_heatmap(self, coarse: list[int], per_anchor: int = 4) -> dict:
        fine: list[int] = list(self.profile.anchors.fine)
        for anchor in coarse:
            for f in np.argsort(-self.anchor_cosines(anchor))[:per_anchor]:
                if int(f) not in fine:
                    fine.append(int(f))
        values = cosine_matrix(self.directions["coarse"][coarse], self.directions["fine"][fine])
        return {"coarse": coarse, "fine": fine, "cosine": values.round(4).tolist()}

    def aligned_counts(self, cutoff: float) -> dict:
        """Fine rows at or beyond `cutoff` per direction: every coarse row (a sample of them on wide
        SAEs), the anchors, and null directions drawn with the fine decoder's covariance."""
        all_counts = self.coarse_counts_beyond(cutoff)
        return {"cutoff": cutoff, "all_coarse": np.bincount(all_counts).tolist(),
                "anchors": {f"coarse-{c}": int((self.anchor_cosines(c) >= cutoff).sum()) for c in self.anchors},
                "coarse_rows_counted": int(all_counts.size), "coarse_rows": int(self.directions["coarse"].shape[0]),
                "null": np.bincount(self.geometry_null(cutoff).count_beyond).tolist()}

    def cosine_histograms(self, cutoff: float, edges=np.linspace(-0.2, 1.0, 61)) -> dict:
        """Per anchor: the histogram of its cosine with every fine row, and the null's density."""
        null = self.geometry_null(cutoff).sample
        return {f"coarse-{c}": {"edges": edges.round(3).tolist(),
                                "counts": np.histogram(self.anchor_cosines(c), edges)[0].tolist(),
                                "null_density": (np.histogram(null, edges)[0] / null.size).tolist(),
                                "n_fine": int(self.anchor_cosines(c).size)} for c in self.anchors}

    # ---- cross-resolution pairs ----------------------------------------------------------------
    def set_labels(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.tables.prompt_sets)[rows]

    def pair_table(self) -> list[dict]:
        """Every (coarse anchor, candidate fine feature) pair: cosine, co-firing test, BH q, colour.

        Co-firing is tested within prompt sets: the statistic is the correlation of the pooled
        activations after centring each within its set (the partial correlation given the set), and
        shuffles move prompts only within their set; two features that merely both prefer the concept
        do not co-fire. The seed's pooled Pearson r stays as the scatter's descriptive number.

        Rows that qualify by cosine (>= the anchor's sub-feature cutoff) form the BH family. Rows added
        for display (the top few by cosine and by pooled r, picked on these very prompts) are tested
        too but carry no q-value and never enter the family. A feature that fires on fewer than
        `min_firing_prompts` evaluation prompts is "silent on these prompts": not evaluable, never r = 0.
        """
        if "pairs" in self._cache:
            return self._cache["pairs"]
        rule, specs, default_cutoff, scan_cutoff = self.pair_cutoffs()
        rows = self.evaluation_rows()
        strata = self.set_labels(rows)
        concept_in_rows = strata == "concept"
        fine_acts = self.acts("fine")[rows]
        fine_fires = (fine_acts > 0).sum(0)
        top = self.profile.analysis.top_fine_matches
        m = self.min_firing_prompts
        pairs = []
        for anchor in self.profile.anchors.coarse:
            spec = specs.get(anchor)
            cutoff = next((spec.param(k) for k, p in rule.params.items() if p.pair_cutoff == "bh"), default_cutoff) \
                if spec is not None else default_cutoff
            cos = self.anchor_cosines(anchor)
            coarse_col = self.acts("coarse")[rows, anchor]
            coarse_silent = int((coarse_col > 0).sum()) < m
            qualified = np.flatnonzero(cos >= min(cutoff, scan_cutoff))
            r_pooled_all = pearson(coarse_col, fine_acts)
            display = set(np.argsort(-cos)[:top].tolist()) | set(np.argsort(-np.nan_to_num(r_pooled_all, nan=-2))[:top]
                                                                 .tolist())
            candidates = np.array(sorted(set(qualified.tolist()) | display), dtype=np.int64)
            test = correlation_permutation_test(coarse_col, fine_acts[:, candidates], strata=strata,
                                                n_resamples=self.n_permutations, seed=self.seed, keep_null=True)
            # The gate's step-down bound needs every candidate's statistic under the same shuffles.
            self._cache.setdefault("co-firing-null", {})[int(anchor)] = (
                candidates, np.where(coarse_silent, np.nan, test.statistic), test.null_distribution)
            parent_fires = coarse_col[concept_in_rows] > 0
            for j, fine in enumerate(candidates):
                fires = int(fine_fires[fine])
                silent = coarse_silent or fires < m
                child_fires = fine_acts[concept_in_rows, fine] > 0
                r_pooled = r_pooled_all[fine]
                pairs.append({
                    "coarse": int(anchor), "fine": int(fine), "cosine": float(cos[fine]),
                    "qualified": bool(cos[fine] >= cutoff), "cutoff": float(cutoff),
                    "correlation": None if silent or not np.isfinite(r_pooled) else float(r_pooled),
                    "partial_correlation": None if silent or not np.isfinite(test.statistic[j])
                    else float(test.statistic[j]),
                    "p_value": None if silent or not np.isfinite(test.p_value[j]) else float(test.p_value[j]),
                    "q_value": None, "silent": bool(silent), "fine_fires": fires,
                    "n_prompts": int(rows.sum()),
                    # A sub-feature fires on a subset of its parent's prompts: P(parent fires | child fires).
                    "nesting": float(parent_fires[child_fires].mean()) if child_fires.any() else None,
                })
        family = [p for p in pairs if p["qualified"] and p["p_value"] is not None]
        if family:
            _, q = benjamini_hochberg([p["p_value"] for p in family], self.alpha)
            for pair, q_value in zip(family, q, strict=True):
                pair["q_value"] = float(q_value)
        for pair in pairs:
            pair.update(rule.pair_rule(pair, specs.get(pair["coarse"]), self.alpha) if rule is not None
                        else {"category": "grey", "sub_feature": False})
        self._cache["pairs"] = pairs
        return pairs

    def pair_cutoffs(self):
        """(the family whose pair_rule says what a sub-feature is, its claims by anchor, the default BH
        cutoff, the lowest cosine scanned). Read from the families' parameters marked `pair_cutoff`:
        an anchor's BH family is the pairs at or beyond its claim's "bh" cutoff (else the lowest "bh"
        default); rows down to the lowest cutoff any claim asks about ("scan") are tested too."""
        rule = pair_rule_family()
        specs = {c.param("anchor"): c for c in self.profile.claims if rule is not None and c.family == rule.name}
        bh = [(key, p) for key, p in (rule.params.items() if rule is not None else ()) if p.pair_cutoff == "bh"]
        defaults = [p.default for _, p in bh]
        default_cutoff = min([c.param(key) for c in specs.values() for key, _ in bh] or defaults or [0.0])
        scan = [c.param(key) for c in self.profile.claims if (f := get_family(c.family)) is not None
                for key, p in f.params.items() if p.pair_cutoff == "scan"]
        return rule, specs, default_cutoff, min([default_cutoff] + scan)

    def co_firing_null(self, anchor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fine ids, observed within-set correlations, [B, ids] the same under each shuffle) of the pair
        table's candidates for this anchor (NaN where a column cannot be evaluated)."""
        self.pair_table()
        nulls = self._cache.get("co-firing-null", {})
        if int(anchor) not in nulls:
            raise ConfigError(f"coarse {anchor} is not an anchor of this analysis; anchors: {list(self.anchors)}")
        fine, observed, null = nulls[int(anchor)]
        return fine, observed, null

    def partial_correlation_bounds(self, pairs: list[dict], level: float) -> dict[tuple[int, int], tuple]:
        """BCa intervals (prompts resampled within sets) of the within-set correlation of each pair."""
        rows = self.evaluation_rows()
        strata = self.set_labels(rows)
        n_resamples = int(min(50_000, max(self.n_bootstrap, np.ceil(20 / ((1 - level) / 2)))))
        out = {}
        for anchor in sorted({p["coarse"] for p in pairs}):
            fine = [p["fine"] for p in pairs if p["coarse"] == anchor]
            r, low, high = partial_correlation_intervals(
                self.acts("coarse")[rows, anchor], self.acts("fine")[rows][:, fine], strata, level=level,
                n_resamples=n_resamples, seed=self.seed)
            out.update({(anchor, f): (float(r[j]), float(low[j]), float(high[j])) for j, f in enumerate(fine)})
        return out

    def sub_features(self, anchor: int) -> list[dict]:
        return [p for p in self.pair_table() if p["coarse"] == anchor and p["sub_feature"]]

    # ---- reconstruction and sparsity -------------------------------------------------------------
    def explained_variance_interval(self, role: str, rows=None) -> Interval:
        """Explained variance over the evaluation prompts (or the given prompt rows, repeats allowed),
        a ratio of sums bootstrapped over prompts."""
        t = self.tables
        rows = np.flatnonzero(self.evaluation_rows()) if rows is None else np.asarray(rows, dtype=np.int64)

        def ev(idx):
            # Sums over a resample as (times each prompt is drawn) @ (per-prompt sums): gathering
            # resid_sum[idx] would hold resamples x prompts x d_model floats (15 GB at Gemma's 2,304).
            counts = draw_counts(idx, t.n_tokens.size)
            n = counts @ t.n_tokens
            mean = (counts @ t.resid_sum) / n[:, None]
            total = counts @ t.resid_sq - n * (mean * mean).sum(-1)
            return (1 - (counts @ t.sq_error[role]) / total).reshape(idx.shape[:-1])

        return bootstrap_interval(ev, [rows], n_resamples=self.n_bootstrap, seed=self.seed, level=self.level)

    def plan_mean(self, values, threshold: float, comparison: str, what: str = "prompts") -> PromptPlan | None:
        """The prompts that would decide a claim on the BCa interval of a per-prompt mean (paired effects)."""
        if not self.plan_prompts:
            return None
        values = np.asarray(values, dtype=np.float64)
        return plan_prompts({what: values}, self.mean_interval, threshold, comparison, seed=self.seed)

    def mean_interval(self, values) -> Interval:
        """BCa interval of a mean over prompts, at this analysis's level and seed."""
        values = np.asarray(values, dtype=np.float64)
        return bootstrap_interval(lambda i: values[i].mean(-1), [np.arange(values.size)], n_resamples=self.n_bootstrap,
                                  seed=self.seed, level=self.level)

    def plan_explained_variance(self, role: str, threshold: float) -> PromptPlan | None:
        """The evaluation prompts (concept and neutral together: one ratio of sums) that would decide
        "explained variance >= threshold"."""
        if not self.plan_prompts:
            return None
        rows = np.flatnonzero(self.evaluation_rows())
        return plan_prompts({"evaluation (concept + neutral)": rows},
                            lambda drawn: self.explained_variance_interval(role, drawn), threshold, ">=",
                            seed=self.seed)

    def ce_loss_interval(self, role: str) -> Interval | None:
        """CE-loss score as a ratio of per-prompt sums, bootstrapped over the evaluation prompts."""
        per = self.tables.meta.get("ce_per_prompt")
        if not per or role not in per:
            return None
        index = {pid: i for i, pid in enumerate(per["ids"])}
        wanted = [index[pid] for pid, keep in zip(self.tables.prompt_ids, self.evaluation_rows(), strict=True)
                  if keep and pid in index]
        if len(wanted) < 2:
            return None
        clean, zero, sae = (np.asarray(per[k], dtype=np.float64) for k in ("clean", "zero", role))

        def score(idx):
            z = zero[idx].sum(-1)
            return (z - sae[idx].sum(-1)) / (z - clean[idx].sum(-1))

        return bootstrap_interval(score, [np.asarray(wanted)], n_resamples=self.n_bootstrap, seed=self.seed,
                                  level=self.level)

    def l0_interval(self, role: str) -> Interval:
        t = self.tables
        rows = np.flatnonzero(self.evaluation_rows())
        return bootstrap_interval(lambda idx: t.l0_sum[role][idx].sum(-1) / t.n_tokens[idx].sum(-1), [rows],
                                  n_resamples=self.n_bootstrap, seed=self.seed, level=self.level)

    # ---- report tables ---------------------------------------------------------------------------
    def distributions(self, role: str, feature: int) -> dict[str, list[float]]:
        column = self.acts(role)[:, feature]
        return {name: column[self.group(name)].round(4).tolist() for name in ("concept", "neutral", "near_miss")}

    def top_prompts(self, role: str, feature: int, prompt_texts: dict[str, str], n: int = 5,
                    prompt_meta: dict[str, dict] | None = None) -> list[dict]:
        """The prompts the feature fires hardest on, with the researcher's own fields beside them."""
        column = self.acts(role)[:, feature]
        order = np.argsort(-column)[:n]
        meta = prompt_meta or {}
        return [{"id": self.tables.prompt_ids[i], "set": self.tables.prompt_sets[i],
                 "text": prompt_texts.get(self.tables.prompt_ids[i], ""), "activation": float(column[i]),
                 "meta": meta.get(self.tables.prompt_ids[i], {})}
                for i in order if column[i] > 0]


def draw_counts(idx: np.ndarray, size: int) -> np.ndarray:
    """[..., n] resampled indices into range(size) -> [resamples, size] float64 counts of each index."""
    flat = idx.reshape(-1, idx.shape[-1])
    offsets = np.arange(flat.shape[0])[:, None] * size
    return np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * size).reshape(flat.shape[0], size
                                                                                        ).astype(np.float64)


def selectivity_interval(concept, other, *, level: float, n_resamples: int, seed: int,
                         ceiling: float | None = None, few_firings: int = FEW_FIRINGS) -> Interval:
    """BCa interval of mean_c / (mean_c + mean_o), with an exact guard on the other set's mean.

    Pooled activations are mostly zeros: the other set's mean rests on a handful of firings, and
    the bootstrap cannot see firings that did not happen (zero firings in 100 prompts gives every
    resample selectivity 1.000). With fewer than `few_firings` firings in the other set, the lower
    bound is never above the selectivity at a betting upper bound on the other set's mean
    (`betting_upper_bound`) over [0, `ceiling`], `ceiling` being the largest activation the feature
    reached on held-out corpus text: valid whatever size the unseen firings have, as long as none
    exceeds what the feature ever did, and tight where the firings seen sit well below it. Without a
    ceiling the guard is the other set's Clopper-Pearson upper rate with each firing at the size the
    firings show (the concept set's, if the other set never fires), and says that it assumes unseen
    firings are no larger. The upper bound gets the mirror guard when the concept set never fires.
    """
    concept = np.asarray(concept, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    notes = []
    few = int((other > 0).sum()) < few_firings
    if few:
        # The other set's mean rests on a handful of firings and the bootstrap understates how much it
        # could move (calibration: a 95% bound missed ~2.5x too often at 4 firings in 100). A wider
        # bound, 1 - (1 - level) / 5, restores the nominal rate at a small cost in power.
        level = 1 - (1 - level) / 5
        notes.append(f"fewer than {few_firings} firings in the other set: {level:.0%} interval")
    interval = bootstrap_interval(lambda c, o: selectivity(concept[c].mean(-1), other[o].mean(-1)),
                                  [np.arange(concept.size), np.arange(other.size)], n_resamples=n_resamples,
                                  seed=seed, level=level)
    fires_c, fires_o = concept[concept > 0], other[other > 0]
    if not fires_c.size and not fires_o.size:
        return Interval(interval.estimate, 0.0, 1.0, level, "none", "the feature never fires on either set")
    low, high = interval.low, interval.high
    method = "BCa + Clopper-Pearson"
    largest_seen = float(max(fires_c.max(initial=0.0), fires_o.max(initial=0.0)))
    # Without a ceiling: the other set fires at its Clopper-Pearson upper rate, each firing at the size
    # the firings show (the concept set's, if the other set never fires): unseen firings assumed no larger.
    size = float(fires_o.mean()) if fires_o.size else float(fires_c.mean())
    rate_o = float(clopper_pearson(fires_o.size, other.size, level=level)[1])
    guard = float(selectivity(concept.mean(), rate_o * size))
    guard_method = "BCa + Clopper-Pearson"
    guard_text = (f"lower bound from the other set's exact rate bound ({fires_o.size} of {other.size} firing, up to "
                  f"{rate_o:.3f}, at {'its' if fires_o.size else 'the concept set' + chr(39) + 's'} mean firing "
                  f"magnitude")
    if few and ceiling is None:
        guard_text += "; no activation ceiling for this SAE: unseen firings are assumed no larger"
    elif few:
        # With a ceiling nothing is assumed about unseen firings but that none exceeds what the feature ever
        # did: a betting bound on the other set's mean over [0, ceiling] counts the firings seen at their
        # size and puts only the room the sample leaves at the ceiling. A firing above the recorded ceiling
        # shows the ceiling is no bound for this feature: the larger is used. The guard is never above the
        # one without a ceiling (the lower of two lower bounds is valid when either is), so a ceiling
        # can only lower the bound.
        bound = max(float(ceiling), largest_seen)
        mean_o_up = betting_upper_bound(other, ceiling=bound, delta=(1 - level) / 2, seed=seed)
        with_ceiling = float(selectivity(concept.mean(), mean_o_up))
        if with_ceiling <= guard:
            where = (f"every firing at most the ceiling {bound:.3g}" if largest_seen <= ceiling else
                     f"every firing at most {bound:.3g}, a firing seen here, above the recorded ceiling {ceiling:.3g}")
            guard, guard_method = with_ceiling, "BCa + betting"
            guard_text = (f"lower bound from a betting bound on the other set's mean ({fires_o.size} of {other.size} "
                          f"firing; mean up to {mean_o_up:.3g}, {where}")
        else:
            guard_text += "; lower than the betting bound the ceiling gives"
    guard_text += ")"
    if guard < low:
        low = guard
        notes.append(guard_text)
        method = guard_method
    if int(fires_c.size) < few_firings:
        # The mirror: the concept set's mean could hide unseen firings too (an upper bound kept too low
        # would refute a true claim).
        rate_c = float(clopper_pearson(fires_c.size, concept.size, level=level)[1])
        size_c = (max(float(ceiling), largest_seen) if ceiling is not None
                  else float(fires_c.mean()) if fires_c.size else float(fires_o.mean()))
        mirror = float(selectivity(rate_c * size_c, other.mean()))
        if mirror > high:
            high = mirror
            notes.append(f"the concept set fires on {fires_c.size} of {concept.size}: upper bound from its exact rate "
                         f"bound ({rate_c:.3f}, each firing at {size_c:.3g})")
    if notes:
        method = method if (low, high) != (interval.low, interval.high) else interval.method
        return Interval(interval.estimate, low, high, level, method, "; ".join(notes))
    return interval

