"""Statistics, vectorised over features: permutation tests, bootstrap intervals, AUROC, BH-FDR.

Conventions (scipy.stats.permutation_test's): keyword-only options, an explicit seed,
a `batch` that bounds memory, p = (1 + #{null at least as extreme}) / (1 + B), and ties
within a relative tolerance counted as extreme. The same label shuffles serve every
feature at once, so a family of features is tested in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from harness.errors import ConfigError, choices_error

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES = ("greater", "less", "two-sided")
TWO_SAMPLE_STATISTICS = ("mean_difference", "selectivity")
RANDOM_DIRECTION_STREAM = 0x6E756C6C  # "null"
MEMORY_FLOATS = 1 << 23  # about 32 MB of float32 per batch of null statistics


@dataclass(frozen=True)
class PermutationResult:
    statistic: np.ndarray  # [F] observed
    p_value: np.ndarray  # [F]
    n_resamples: int
    alternative: str
    null_distribution: np.ndarray | None = None  # [B, F] when keep_null=True


def selectivity(mean_concept, mean_other):
    """mean_c / (mean_c + mean_o) for non-negative activations; 0.5 where both are zero."""
    mean_concept = np.asarray(mean_concept, dtype=np.float64)
    mean_other = np.asarray(mean_other, dtype=np.float64)
    total = mean_concept + mean_other
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, mean_concept / np.where(total > 0, total, 1), 0.5)
    return out


def _validate(x, n_resamples: int, alternative: str, batch: int | None, seed) -> tuple[np.ndarray, int]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ConfigError(f"data must be [prompts] or [prompts, features]; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError("data contains NaN or infinite values")
    if int(n_resamples) < 1:
        raise ConfigError(f"n_resamples must be >= 1; got {n_resamples}")
    if alternative not in ALTERNATIVES:
        raise choices_error("alternative", alternative, ALTERNATIVES)
    if seed is None:
        raise ConfigError("seed is required: permutation tests in this harness are reproducible")
    if batch is None:
        batch = max(1, MEMORY_FLOATS // max(1, x.shape[1]))
    if int(batch) < 1:
        raise ConfigError(f"batch must be >= 1; got {batch}")
    return x, int(batch)


class _Counter:
    """Accumulates how many null statistics are at least as extreme as the observed ones."""

    def __init__(self, observed: np.ndarray, alternative: str) -> None:
        self.observed = observed
        self.alternative = alternative
        # scipy's tolerance: values within 100 ulps of the observed statistic count as ties.
        self.gamma = np.abs(np.finfo(np.float64).eps * 100 * observed)
        self.greater = np.zeros(observed.shape, np.int64)
        self.less = np.zeros(observed.shape, np.int64)

    def add(self, null_BF: np.ndarray) -> None:
        self.greater += (null_BF >= self.observed - self.gamma).sum(0)
        self.less += (null_BF <= self.observed + self.gamma).sum(0)

    def p_values(self, n_resamples: int) -> np.ndarray:
        p_greater = (1 + self.greater) / (1 + n_resamples)
        p_less = (1 + self.less) / (1 + n_resamples)
        if self.alternative == "greater":
            return p_greater
        if self.alternative == "less":
            return p_less
        return np.minimum(1.0, 2 * np.minimum(p_greater, p_less))


def _two_sample_stat(sum1, sum_all, n1, n0, statistic: str):
    mean1 = sum1 / n1
    mean0 = (sum_all - sum1) / n0
    if statistic == "mean_difference":
        return mean1 - mean0
    return selectivity(mean1, mean0)


def two_sample_permutation_test(x, in_group, *, statistic: str = "mean_difference", n_resamples: int = 10_000,
                                seed: int, alternative: str = "greater", batch: int | None = None,
                                keep_null: bool = False) -> PermutationResult:
    """Label-shuffle test of group 1 (`in_group` True) vs group 0, for every column of x at once.

    statistic: 'mean_difference' (mean1 - mean0) or 'selectivity' (mean1 / (mean1 + mean0)).
    """
    x, batch = _validate(x, n_resamples, alternative, batch, seed)
    labels = np.asarray(in_group, dtype=bool)
    if labels.shape != (x.shape[0],):
        raise ConfigError(f"in_group must have one entry per row of x ({x.shape[0]}); got shape {labels.shape}")
    if statistic not in TWO_SAMPLE_STATISTICS:
        raise choices_error("statistic", statistic, TWO_SAMPLE_STATISTICS)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if n1 == 0 or n0 == 0:
        raise ConfigError(f"both groups need members; got {n1} in group 1 and {n0} in group 0")
    sum_all = x.sum(0)
    observed = _two_sample_stat(labels.astype(np.float64) @ x, sum_all, n1, n0, statistic)
    counter = _Counter(observed, alternative)
    rng = np.random.default_rng(seed)
    kept = []
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        shuffled = rng.permuted(np.broadcast_to(labels, (size, labels.size)), axis=1)
        null = _two_sample_stat(shuffled.astype(np.float64) @ x, sum_all, n1, n0, statistic)
        counter.add(null)
        if keep_null:
            kept.append(null)
        done += size
    return PermutationResult(observed, counter.p_values(n_resamples), n_resamples, alternative,
                             np.concatenate(kept) if keep_null else None)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = x - x.mean(0, keepdims=True)
    norms = np.sqrt((centred**2).sum(0))
    constant = norms == 0
    return centred / np.where(constant, 1, norms), constant


def pearson(y, x) -> np.ndarray:
    """Pearson r of y [P] with every column of x [P, M]; 0 where either side is constant."""
    y_std, y_const = _standardise(np.asarray(y, dtype=np.float64)[:, None])
    x_std, x_const = _standardise(np.asarray(x, dtype=np.float64).reshape(len(y), -1))
    r = (y_std[:, 0] @ x_std)
    r[x_const | y_const[0]] = 0.0
    return np.clip(r, -1.0, 1.0)


def correlation_permutation_test(y, x, *, n_resamples: int = 10_000, seed: int, alternative: str = "greater",
                                 batch: int | None = None) -> PermutationResult:
    """Pearson r of y with each column of x; null by shuffling y (the same shuffles for every column)."""
    x, batch = _validate(x, n_resamples, alternative, batch, seed)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (x.shape[0],):
        raise ConfigError(f"y must have one entry per row of x ({x.shape[0]}); got shape {y.shape}")
    y_std, y_const = _standardise(y[:, None])
    x_std, x_const = _standardise(x)
    observed = np.clip(y_std[:, 0] @ x_std, -1, 1)
    constant = x_const | y_const[0]
    observed[constant] = 0.0
    counter = _Counter(observed, alternative)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        shuffled = rng.permuted(np.broadcast_to(y_std[:, 0], (size, y.size)), axis=1)
        null = shuffled @ x_std
        null[:, constant] = 0.0
        counter.add(null)
        done += size
    p = counter.p_values(n_resamples)
    p[constant] = 1.0  # a constant feature carries no evidence of co-firing
    return PermutationResult(observed, p, n_resamples, alternative)


def paired_sign_flip_test(differences, *, n_resamples: int = 10_000, seed: int, alternative: str = "greater",
                          batch: int | None = None) -> PermutationResult:
    """Mean of paired differences [P, F]; null by flipping the sign of each pair."""
    d, batch = _validate(differences, n_resamples, alternative, batch, seed)
    observed = d.mean(0)
    counter = _Counter(observed, alternative)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, d.shape[0]))
        counter.add(signs @ d / d.shape[0])
        done += size
    return PermutationResult(observed, counter.p_values(n_resamples), n_resamples, alternative)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float

    def as_dict(self) -> dict:
        return {"value": self.estimate, "ci_low": self.low, "ci_high": self.high, "ci_level": self.level}


def bootstrap_interval(statistic: Callable[..., np.ndarray], groups: list[np.ndarray], *, n_resamples: int = 2000,
                       seed: int, level: float = 0.95) -> Interval:
    """Percentile interval; each group is resampled with replacement within itself (stratified).

    `statistic(*index_arrays)` gets one [B, n_g] index array per group and returns [B] values;
    it is also called once with the identity indices ([1, n_g]) for the point estimate.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must lie in (0, 1); got {level}")
    if seed is None:
        raise ConfigError("seed is required for bootstrap intervals")
    groups = [np.asarray(g) for g in groups]
    if any(g.size == 0 for g in groups):
        raise ConfigError("every bootstrap group needs at least one member")
    rng = np.random.default_rng(seed)
    estimate = float(np.asarray(statistic(*[g[None, :] for g in groups])).reshape(-1)[0])
    values = []
    batch = max(1, min(n_resamples, MEMORY_FLOATS // max(1, sum(g.size for g in groups))))
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        draws = [g[rng.integers(0, g.size, size=(size, g.size))] for g in groups]
        values.append(np.asarray(statistic(*draws), dtype=np.float64).reshape(size))
        done += size
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2
    low, high = (np.quantile(values, [tail, 1 - tail]) if values.size else (np.nan, np.nan))
    return Interval(estimate, float(low), float(high), level)


def auroc(x, labels) -> np.ndarray:
    """Area under the ROC curve of each column of x for separating labels True from False (ties = 0.5)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    labels = np.asarray(labels, dtype=bool)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if n1 == 0 or n0 == 0:
        raise ConfigError(f"AUROC needs both classes; got {n1} positives and {n0} negatives")
    ranks = rankdata(x, axis=0)
    u = ranks[labels].sum(0) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def benjamini_hochberg(p_values, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, q-values) by statsmodels' Benjamini-Hochberg."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return np.zeros(0, bool), np.zeros(0)
    if ((p <= 0) | (p > 1)).any():
        raise ConfigError("p-values must lie in (0, 1]")
    rejected, q, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
    return rejected, q


def cosine_matrix(a_AD, b_BD) -> np.ndarray:
    """Cosine of every row of a with every row of b."""
    a = np.asarray(a_AD, dtype=np.float64)
    b = np.asarray(b_BD, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.clip(a @ b.T, -1, 1)


def random_direction_cosines(directions_FD, n_random: int, *, seed: int) -> np.ndarray:
    """Cosines of `n_random` random Gaussian directions with every row: the geometric null.

    The stream is keyed by purpose as well as seed, so it never replays another draw made with
    the same seed (which would put copies of real rows into the null).
    """
    rng = np.random.default_rng([seed, RANDOM_DIRECTION_STREAM])
    d = np.asarray(directions_FD).shape[1]
    random = rng.standard_normal((n_random, d))
    return cosine_matrix(random, directions_FD).reshape(-1)
