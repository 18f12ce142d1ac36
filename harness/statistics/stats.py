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

from harness.core.errors import ConfigError, choices_error

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
    """mean_c / (mean_c + mean_o) for non-negative activations; 0.5 where both are zero.

    Means are clipped at 0 first: a mean obtained as (sum of all - sum of one group) can come out
    a few ulps below zero, which would put the ratio just outside [0, 1].
    """
    mean_concept = np.maximum(np.asarray(mean_concept, dtype=np.float64), 0.0)
    mean_other = np.maximum(np.asarray(mean_other, dtype=np.float64), 0.0)
    total = mean_concept + mean_other
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, mean_concept / np.where(total > 0, total, 1), 0.5)
    return np.clip(out, 0.0, 1.0)


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
    mean0 = np.maximum(sum_all - sum1, 0.0) / n0 if statistic == "selectivity" else (sum_all - sum1) / n0
    if statistic == "mean_difference":
        return mean1 - mean0
    return selectivity(mean1, mean0)


def two_sample_permutation_test(x, in_group, *, statistic: str = "mean_difference", n_resamples: int = 10_000,
                                seed: int, alternative: str = "greater", batch: int | None = None,
                                keep_null: bool = False, strata=None) -> PermutationResult:
    """Label-shuffle test of group 1 (`in_group` True) vs group 0, for every column of x at once.

    statistic: 'mean_difference' (mean1 - mean0) or 'selectivity' (mean1 / (mean1 + mean0)).
    strata: labels move only among rows of the same stratum (a conditional test given the stratum).
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
        shuffled = labels[_within_strata_permutations(rng, size, labels.size, _strata(strata, labels.size))]
        null = _two_sample_stat(shuffled.astype(np.float64) @ x, sum_all, n1, n0, statistic)
        counter.add(null)
        if keep_null:
            kept.append(null)
        done += size
    return PermutationResult(observed, counter.p_values(n_resamples), n_resamples, alternative,
                             np.concatenate(kept) if keep_null else None)


def _strata(strata, n: int) -> np.ndarray | None:
    if strata is None:
        return None
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ConfigError(f"strata must have one label per row ({n}); got shape {strata.shape}")
    return strata


def _centre_within(x: np.ndarray, strata: np.ndarray | None) -> np.ndarray:
    """x minus its mean within each stratum (the whole sample when strata is None)."""
    if strata is None:
        return x - x.mean(0, keepdims=True)
    out = np.empty_like(x)
    for value in np.unique(strata):
        rows = strata == value
        out[rows] = x[rows] - x[rows].mean(0, keepdims=True)
    return out


def _standardise(x: np.ndarray, strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centred (within strata) columns scaled to unit norm, and a mask of columns with no variation.

    Columns are first divided by their largest magnitude, so tiny values (1e-274) do not underflow
    when squared and huge ones do not overflow; a column is constant when what is left after
    centring is rounding dust relative to that scale.
    """
    magnitude = np.abs(x).max(0)
    scaled = x / np.where(magnitude > 0, magnitude, 1.0)
    centred = _centre_within(scaled, strata)
    norms = np.sqrt((centred**2).sum(0))
    constant = norms <= np.sqrt(x.shape[0]) * 1e-12
    return centred / np.where(constant, 1, norms), constant


def pearson(y, x, *, strata=None) -> np.ndarray:
    """Pearson r of y [P] with every column of x [P, M]; NaN where either side is constant.

    With `strata`, both are centred within each stratum first: the partial correlation given the
    stratum label (the co-firing that is left once the prompt set's effect is removed). A constant
    vector has no correlation with anything: it is not evaluable, never r = 0.
    """
    y = np.asarray(y, dtype=np.float64)
    strata = None if strata is None else np.asarray(strata)
    y_std, y_const = _standardise(y[:, None], strata)
    x = np.asarray(x).reshape(len(y), -1)
    r = np.empty(x.shape[1])
    # Columns are standardised one block at a time (each column on its own, so blocks change nothing):
    # 262K float64 columns at once would hold several [P x 262K] copies (GBs) at the same moment.
    step = max(1, MEMORY_FLOATS // max(1, 4 * len(y)))
    for start in range(0, x.shape[1], step):
        x_std, x_const = _standardise(x[:, start:start + step].astype(np.float64), strata)
        block = np.clip(y_std[:, 0] @ x_std, -1.0, 1.0)
        block[x_const | y_const[0]] = np.nan
        r[start:start + step] = block
    return r


def _within_strata_permutations(rng, size: int, n: int, strata: np.ndarray | None) -> np.ndarray:
    """[size, n] index arrays, each a permutation that moves rows only within their stratum.

    Permutations are the argsort of uniform keys, drawn row after row from one stream: the same
    seed gives the same shuffles whatever the batch size (`rng.permuted` on a batch does not).
    """
    keys = rng.random((size, n))
    if strata is None:
        return np.argsort(keys, axis=1)
    out = np.empty((size, n), dtype=np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        out[:, members] = members[np.argsort(keys[:, members], axis=1)]
    return out


def correlation_permutation_test(y, x, *, strata=None, n_resamples: int = 10_000, seed: int,
                                 alternative: str = "greater", batch: int | None = None,
                                 keep_null: bool = False) -> PermutationResult:
    """Pearson r of y with each column of x; null by shuffling y (the same shuffles for every column).

    `strata` (one label per row, e.g. the prompt set): the statistic is the correlation after
    centring within each stratum, and shuffles move prompts only within their stratum, so two
    features that merely prefer the same prompt set do not count as co-firing. Columns with no
    variation (within strata) get statistic and p NaN: not evaluable. `keep_null`: return the [B, F]
    null statistics too (for a step-down adjustment over the columns).
    """
    x, batch = _validate(x, n_resamples, alternative, batch, seed)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (x.shape[0],):
        raise ConfigError(f"y must have one entry per row of x ({x.shape[0]}); got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ConfigError("y contains NaN or infinite values")
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != y.shape:
            raise ConfigError(f"strata must have one label per row of x ({x.shape[0]}); got shape {strata.shape}")
    y_std, y_const = _standardise(y[:, None], strata)
    x_std, x_const = _standardise(x, strata)
    observed = np.clip(y_std[:, 0] @ x_std, -1, 1)
    constant = x_const | y_const[0]
    counter = _Counter(np.where(constant, 0.0, observed), alternative)
    rng = np.random.default_rng(seed)
    done = 0
    kept = []
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        null = y_std[:, 0][_within_strata_permutations(rng, size, y.size, strata)] @ x_std
        counter.add(null)
        if keep_null:
            kept.append(null)
        done += size
    p = counter.p_values(n_resamples)
    observed[constant] = np.nan
    p[constant] = np.nan
    return PermutationResult(observed, p, n_resamples, alternative,
                             np.concatenate(kept) if keep_null else None)


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
    method: str = "BCa"
    note: str = ""  # why the interval is not a plain bootstrap one (degenerate data, exact bound)

    def as_dict(self) -> dict:
        return {"value": self.estimate, "ci_low": self.low, "ci_high": self.high, "ci_level": self.level}


def bootstrap_interval(statistic: Callable[..., np.ndarray], groups: list[np.ndarray], *, n_resamples: int = 2000,
                       seed: int, level: float = 0.95, method: str = "BCa") -> Interval:
    """A `scipy.stats.bootstrap` interval (BCa by default), each group resampled within itself.

    `statistic(*index_arrays)` gets one index array per group, shaped [..., n_g], and returns one
    value per leading position (so it is vectorised over resamples and over BCa's jackknife). When
    every resample gives the same value (say a feature that never fires in one group) the bootstrap
    says nothing about the uncertainty: the interval is [estimate, estimate] with `note` set, and the
    caller must bound it another way (`clopper_pearson`), never report it as certain.
    """
    from scipy.stats import bootstrap

    if not 0 < level < 1:
        raise ConfigError(f"level must lie in (0, 1); got {level}")
    if seed is None:
        raise ConfigError("seed is required for bootstrap intervals")
    if method not in ("BCa", "percentile", "basic"):
        raise choices_error("bootstrap method", method, ("BCa", "percentile", "basic"))
    groups = [np.asarray(g) for g in groups]
    if any(g.size == 0 for g in groups):
        raise ConfigError("every bootstrap group needs at least one member")
    estimate = float(np.asarray(statistic(*[g[None, :] for g in groups])).reshape(-1)[0])
    if any(g.size < 2 for g in groups):
        return Interval(estimate, np.nan, np.nan, level, method, "a group has fewer than 2 members")

    def vectorised(*samples, axis=-1):
        return np.asarray(statistic(*[np.moveaxis(s, axis, -1) for s in samples]), dtype=np.float64)

    batch = max(1, min(n_resamples, MEMORY_FLOATS // max(1, sum(g.size for g in groups))))
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # degenerate data is handled below, not by a warning
        result = bootstrap(tuple(groups), vectorised, n_resamples=n_resamples, vectorized=True, method=method,
                           confidence_level=level, batch=batch, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    spread = float(np.nanstd(result.bootstrap_distribution))
    if not (np.isfinite(low) and np.isfinite(high)) or spread <= 1e-12 * max(1.0, abs(estimate)):
        return Interval(estimate, estimate, estimate, level, method, "every resample gave the same value")
    return Interval(estimate, low, high, level, method)


def partial_correlation_intervals(y, x, strata, *, level: float, n_resamples: int, seed: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """(r, low, high): BCa intervals of the within-strata correlation of y with every column of x.

    Prompts are resampled within each stratum (a prompt set keeps its size), all columns at once
    (`scipy.stats.bootstrap` with a vector-valued statistic). Pooled activations are zero-heavy:
    the normal-theory (Fisher z) interval is too narrow for them, this one is not.
    """
    from scipy.stats import bootstrap

    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(y.size, -1)
    strata = np.asarray(strata)
    if not (np.isfinite(y).all() and np.isfinite(x).all()):
        raise ConfigError("data contains NaN or infinite values")
    groups = [np.flatnonzero(strata == value) for value in np.unique(strata)]
    estimate = pearson(y, x, strata=strata)

    def statistic(*indices, axis=-1):
        num = 0.0
        ss_y = 0.0
        ss_x = 0.0
        for idx in indices:
            idx = np.moveaxis(idx, axis, -1)  # [..., n_g]
            yy = y[idx]
            yy = yy - yy.mean(-1, keepdims=True)  # [..., n_g]
            xx = x[idx]  # [..., n_g, F]
            xx = xx - xx.mean(-2, keepdims=True)
            num = num + np.einsum("...n,...nf->...f", yy, xx)
            ss_y = ss_y + (yy**2).sum(-1)[..., None]
            ss_x = ss_x + (xx**2).sum(-2)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = num / np.sqrt(ss_y * ss_x)
        return np.moveaxis(np.nan_to_num(r, nan=0.0), -1, 0)  # [F, ...]

    import warnings

    batch = max(1, MEMORY_FLOATS // max(1, y.size * x.shape[1]))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = bootstrap(tuple(groups), statistic, n_resamples=n_resamples, vectorized=True, method="BCa",
                           confidence_level=level, batch=batch, rng=np.random.default_rng(seed))
    low = np.asarray(result.confidence_interval.low, dtype=np.float64).reshape(-1)
    high = np.asarray(result.confidence_interval.high, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(estimate)
    low[bad] = np.nan
    high[bad] = np.nan
    return estimate, low, high


def clopper_pearson(k, n, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) two-sided interval for a rate of k events in n trials, vectorised.

    0 firings in 100 prompts is not a rate of 0: its upper bound at 95% is 3.6%.
    """
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    low, high = proportion_confint(k, n, alpha=1 - level, method="beta")
    return np.nan_to_num(np.asarray(low, dtype=np.float64), nan=0.0), np.nan_to_num(np.asarray(high, np.float64),
                                                                                     nan=1.0)


BETTING_STREAM = 0x62657473  # "bets": the orderings of a betting bound
MAX_STAKE = 0.99  # a bet never stakes more than 99% of what a draw at the ceiling could take


def betting_upper_bound(x, *, ceiling: float, delta: float, seed: int, orderings: int = 16) -> float:
    """An upper confidence bound, at confidence 1 - delta, for the mean of independent draws in [0, ceiling].

    A betting bound (Waudby-Smith and Ramdas 2024, "Estimating means of bounded random variables by
    betting", predictable plug-in bets): for a candidate mean m, a gambler who bets that the draws fall
    below m turns 1 into K(m) = prod_i (1 + lambda_i (m - y_i)), y = x / ceiling, each bet lambda_i
    sized from the draws before i and capped so that a draw at the ceiling never takes the whole capital.
    At the true mean K is a nonnegative martingale with expectation 1, so P(K >= 1 / delta) <= delta:
    every m with K(m) >= 1 / delta is rejected. Every factor grows with m (the cap's too), so K does and
    the bound is its root. Unlike a rate bound times the ceiling, draws seen well below the ceiling
    count at their size: only the room the sample leaves is put at the ceiling.

    The bets depend on the draws' order, which is arbitrary here: K is averaged over `orderings` seeded
    shuffles (an average of expectation-1 capitals still has expectation 1, so Markov's inequality keeps
    the guarantee) and the bound does not turn on one order.
    """
    if not ceiling > 0 or not np.isfinite(ceiling):
        raise ConfigError(f"betting_upper_bound: ceiling must be a positive number; got {ceiling!r}")
    if not 0 < delta < 1:
        raise ConfigError(f"betting_upper_bound: delta must lie in (0, 1); got {delta!r}")
    if int(orderings) < 1:
        raise ConfigError(f"betting_upper_bound: orderings must be at least 1; got {orderings!r}")
    y = np.asarray(x, dtype=np.float64).ravel() / ceiling
    if y.size == 0:
        return float(ceiling)
    if not np.isfinite(y).all() or np.any(y < 0) or np.any(y > 1 + 1e-12):
        raise ConfigError(f"betting_upper_bound: draws must lie in [0, ceiling={ceiling:.6g}]; "
                          f"got values in [{float(y.min() * ceiling):.6g}, {float(y.max() * ceiling):.6g}]")
    y = np.clip(y, 0.0, 1.0)
    n = y.size
    rng = np.random.default_rng(np.random.SeedSequence([seed, BETTING_STREAM]))
    y = np.sort(y)  # the bound depends on the values, not on the order they came in
    ordered = np.stack([rng.permutation(y) for _ in range(orderings)])  # [R, n]
    # Predictable plug-in: the running mean and variance of the draws before i (with a prior draw
    # at 1/2 and variance 1/4), the bet sized for the confidence wanted over n draws.
    seen = np.arange(1, n + 1)
    running_mean = (0.5 + np.cumsum(ordered, axis=1)) / (seen + 1)
    squared = (ordered - running_mean) ** 2
    var_before = (0.25 + np.cumsum(squared, axis=1) - squared) / seen
    bets = np.sqrt(2 * np.log(1 / delta) / (n * var_before))
    target = np.log(1 / delta)

    def log_capital(m: float) -> float:
        # A bet on "below m" loses lambda (1 - m) at a draw at the ceiling: capped at MAX_STAKE / (1 - m), so
        # the capital stays positive. With every draw at 0 the bound is then close to Clopper-Pearson's
        # 1 - delta^(1/n) (1-2% above it from 20 draws on; the first bets are small, so far above it for 1 or
        # 2 draws), and each factor 1 + lambda (m - y) still grows with m.
        stakes = np.minimum(bets, MAX_STAKE / max(1.0 - m, 1e-12))
        log_k = np.log1p(stakes * (m - ordered)).sum(axis=1)
        top = log_k.max()
        return float(top + np.log(np.mean(np.exp(log_k - top))))

    if log_capital(1.0) < target:
        return float(ceiling)
    low, high = 0.0, 1.0
    for _ in range(50):  # bisection to ~1e-15 of the ceiling
        mid = 0.5 * (low + high)
        if log_capital(mid) >= target:
            high = mid
        else:
            low = mid
    return float(high * ceiling)


# ---- verdicts ------------------------------------------------------------------------------------
VERDICTS = ("held", "refuted", "inconclusive")


def significant(p: float | None, alpha: float) -> bool:
    """The one rule for a p-value (or a BH q-value) against the level: p <= alpha. Every p here is valid
    in that sense (permutation and rank p count the observed statistic, (1 + b) / (N + 1)); a missing p
    (nothing was testable) is never significant."""
    return p is not None and bool(np.isfinite(p)) and float(p) <= alpha


def decide(low: float, high: float, threshold: float, comparison: str) -> str:
    """held: the interval clears the threshold; refuted: it lies wholly on the wrong side; else inconclusive.

    comparison is the claim's: '>' or '>=' (the quantity exceeds the threshold), '<' or '<=' (it stays below).
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if comparison in (">", ">="):
        if low > threshold or (comparison == ">=" and low >= threshold):
            return "held"
        return "refuted" if high < threshold or (comparison == ">" and high <= threshold) else "inconclusive"
    if comparison in ("<", "<="):
        if high < threshold or (comparison == "<=" and high <= threshold):
            return "held"
        return "refuted" if low > threshold or (comparison == "<" and low >= threshold) else "inconclusive"
    raise choices_error("comparison", comparison, (">", ">=", "<", "<="))


def combine(*verdicts: str) -> str:
    """A claim made of several parts holds when every part holds and is refuted when any part is."""
    if all(v == "held" for v in verdicts):
        return "held"
    return "refuted" if "refuted" in verdicts else "inconclusive"


def prompts_to_decide(interval: Interval, threshold: float, n_per_group: int, *, power: float = 0.8) -> int | None:
    """Prompts per set that would decide a straddling claim at `power`, from the observed effect and spread.

    A normal approximation, for intervals whose width shrinks as 1/sqrt(n): the side of the interval
    that must move past the threshold (the lower side when the estimate lies above it, else the upper)
    gives the standard error at n; the answer is the n at which |estimate - threshold| is
    (z_level + z_power) standard errors. None when the estimate sits on the threshold or the interval
    is unusable. Built-in families whose intervals are capped or guarded use
    `harness.statistics.planning.plan_prompts` instead, which simulates the claim's own interval.
    """
    from scipy.stats import norm

    gap = abs(interval.estimate - threshold)
    side = interval.estimate - interval.low if interval.estimate > threshold else interval.high - interval.estimate
    if not (np.isfinite(side) and side > 0 and gap > 0 and n_per_group > 0):
        return None
    z_level = norm.ppf(0.5 + interval.level / 2)
    se_one = side / z_level * np.sqrt(n_per_group)  # standard error at n = 1
    return int(np.ceil(((z_level + norm.ppf(power)) * se_one / gap) ** 2))


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


@dataclass(frozen=True)
class DirectionNull:
    """What directions with no relation to a dictionary look like against it."""

    max_cosine: np.ndarray  # [B] the largest cosine each null direction reaches with any row
    count_beyond: np.ndarray  # [B] rows at or beyond `cutoff` per null direction
    cutoff: float
    sample: np.ndarray  # null cosines (a subsample) for histograms
    kind: str = "anisotropic Gaussian (the rows' own covariance)"


def anisotropic_null(directions_FD, *, n_null: int, cutoff: float, seed: int, chunk: int = 16_384,
                     sample_size: int = 20_000) -> DirectionNull:
    """Null directions drawn with the dictionary's own second-moment matrix, against every row.

    A direction g = sum_i z_i w_i with z ~ N(0, 1) is Gaussian with covariance W^T W, so it shares the
    decoder's anisotropy (rows crowd into a low-dimensional cone: an isotropic null would make their
    cosines look too large). Rows are processed in chunks, so no [B, F] matrix beyond one chunk exists.
    The stream is keyed by purpose, so it never replays another draw made with the same seed.
    """
    w = np.asarray(directions_FD)
    if w.ndim != 2 or w.shape[0] < 2:
        raise ConfigError(f"directions must be [rows, d_model] with at least 2 rows; got shape {w.shape}")
    if n_null < 1:
        raise ConfigError(f"n_null must be >= 1; got {n_null}")
    rng = np.random.default_rng([seed, RANDOM_DIRECTION_STREAM])
    n_rows = w.shape[0]
    g = np.zeros((n_null, w.shape[1]))
    for start in range(0, n_rows, chunk):
        block = w[start:start + chunk].astype(np.float64)
        g += rng.standard_normal((n_null, block.shape[0])) @ block
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    best = np.full(n_null, -1.0)
    count = np.zeros(n_null, np.int64)
    samples = []
    per_chunk = max(1, sample_size // max(1, -(-n_rows // chunk)))
    for start in range(0, n_rows, chunk):
        block = w[start:start + chunk].astype(np.float64)
        block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        cos = g @ block.T
        best = np.maximum(best, cos.max(1))
        count += (cos >= cutoff).sum(1)
        flat = cos.reshape(-1)
        samples.append(flat[rng.choice(flat.size, size=min(per_chunk, flat.size), replace=False)])
    return DirectionNull(best, count, float(cutoff), np.concatenate(samples))


def quantile_interval(values, q: float, *, level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the q-quantile of `values` by order statistics (distribution-free)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    tail = (1 - level) / 2
    lo = int(binom.ppf(tail, n, q))
    hi = int(binom.ppf(1 - tail, n, q))
    return float(np.quantile(x, q)), float(x[max(lo - 1, 0)]), float(x[min(hi, n - 1)])


@dataclass(frozen=True)
class FacetResult:
    statistic: np.ndarray  # [F] max over facets of (facet mean - mean of the other facets)
    facet: np.ndarray  # [F] index of the facet that attains it
    p_value: np.ndarray  # [F] permutation p of the max (the choice of facet is part of the statistic)
    facet_means: np.ndarray  # [K, F]
    n_resamples: int


def _facet_contrasts(sums_KF: np.ndarray, total_F: np.ndarray, counts_K: np.ndarray) -> np.ndarray:
    """Facet mean minus the mean of the other facets, for [..., K, F] sums."""
    n = counts_K.sum()
    inside = sums_KF / counts_K[:, None]
    outside = (total_F - sums_KF) / (n - counts_K)[:, None]
    return inside - outside


def parent_residuals(x, parent) -> np.ndarray:
    """Each column of x minus its monotone (non-decreasing) regression on `parent`: what a sub-feature
    does beyond any increasing function of its parent's activation (proportional, thresholded,
    squared, ...). Prompts with equal parent values are pooled first, so they get one fitted value."""
    from scipy.optimize import isotonic_regression

    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1)
    levels, inverse, counts = np.unique(np.asarray(parent, dtype=np.float64), return_inverse=True,
                                        return_counts=True)
    fitted = np.empty((levels.size, x.shape[1]))
    for j in range(x.shape[1]):
        means = np.bincount(inverse, weights=x[:, j], minlength=levels.size) / counts
        fitted[:, j] = isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x
    return x - fitted[inverse]


def parent_bands(parent, n_bands: int) -> np.ndarray:
    """Band labels 0..n_bands-1 by the parent's rank (equal-count bands; ties share a band)."""
    parent = np.asarray(parent, dtype=np.float64)
    ranks = rankdata(parent, method="min") - 1
    return np.minimum((ranks * n_bands) // max(parent.size, 1), n_bands - 1).astype(np.int64)


def facet_permutation_test(x, facets, *, n_resamples: int = 10_000, seed: int, batch: int | None = None,
                           strata=None) -> FacetResult:
    """Does each column of x prefer one facet? Max-facet statistic, facet labels shuffled among the rows.

    Statistic per feature: max over facets k of (mean over facet k - mean over the other facets); the
    null shuffles the labels (the same shuffles for every feature), so picking the best facet is paid
    for in the p-value. One-sided: a facet the feature fires on more, never less. With `strata`,
    labels move only within a stratum (e.g. a band of the parent's activation).
    """
    x, batch = _validate(x, n_resamples, "greater", batch, seed)
    labels = np.asarray(facets)
    if labels.shape != (x.shape[0],):
        raise ConfigError(f"facets must have one label per row of x ({x.shape[0]}); got shape {labels.shape}")
    names, codes = np.unique(labels, return_inverse=True)
    if names.size < 2:
        raise ConfigError(f"a facet test needs at least 2 facets; got {list(names)}")
    counts = np.bincount(codes, minlength=names.size).astype(np.float64)
    batch = max(1, min(batch, MEMORY_FLOATS // (names.size * (codes.size + x.shape[1]))))
    onehot = np.eye(names.size)[codes].T  # [K, N]
    total = x.sum(0)
    # The observed statistic goes through the same einsum as the null: different summation orders
    # would round differently around 0 and turn exact ties into "extreme" values.
    contrasts = _facet_contrasts(np.einsum("kbn,nf->bkf", onehot[:, None, :], x)[0], total, counts)
    observed = contrasts.max(0)
    counter = _Counter(observed, "greater")
    counter.gamma = np.maximum(counter.gamma, 1e-9 * np.abs(x).max(0))  # ties on the data's own scale
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        size = min(batch, n_resamples - done)
        shuffled = onehot[:, _within_strata_permutations(rng, size, codes.size, _strata(strata, codes.size))]
        sums = np.einsum("kbn,nf->bkf", shuffled, x)
        counter.add(_facet_contrasts(sums, total, counts).max(1))
        done += size
    p_values = counter.p_values(n_resamples)
    p_values[np.ptp(x, axis=0) == 0] = 1.0  # a constant column prefers nothing
    return FacetResult(observed, contrasts.argmax(0), p_values, (onehot @ x) / counts[:, None], n_resamples)


@dataclass(frozen=True)
class StepDownResult:
    """Westfall-Young step-down min-P over features that share their resamples."""

    adjusted_p: np.ndarray  # [F] family-wise adjusted p-values
    p_value: np.ndarray  # [F] each feature's own permutation p
    rejected: np.ndarray  # [F] adjusted p <= alpha
    alpha: float

    @property
    def true_discovery_bound(self) -> int:
        """With probability >= 1 - alpha, at least this many features are truly non-null."""
        return int(self.rejected.sum())


def step_down_min_p(observed, null_distribution, *, alpha: float, alternative: str = "greater") -> StepDownResult:
    """Step-down min-P adjustment (Westfall & Young 1993) from a shared resampling distribution.

    `null_distribution` [B, F] holds each feature's statistic under the same B resamples (the same
    shuffles for every column, as `correlation_permutation_test(..., keep_null=True)` keeps them), so
    the dependence between features is the data's own. The observed statistics count as one more
    resample (the identity), so every p is >= 1 / (B + 1) and the test is exact under exchangeability.

    It is a shortcut for closed testing with min-P local tests, so its number of rejections is a
    simultaneous (1 - alpha) lower bound on how many features are non-null (Goeman & Solari 2011):
    "at least k true" is decided with error <= alpha whatever the others do, where counting
    Benjamini-Hochberg discoveries controls only their expected false share.
    """
    observed = np.asarray(observed, dtype=np.float64).reshape(-1)
    null = np.asarray(null_distribution, dtype=np.float64)
    if null.ndim != 2 or null.shape[1] != observed.size:
        raise ConfigError(f"null_distribution must be [resamples, {observed.size}]; got shape {null.shape}")
    if not (0 < alpha < 1):
        raise ConfigError(f"alpha {alpha} must lie in (0, 1)")
    if alternative not in ("greater", "less"):
        raise choices_error("alternative", alternative, ("greater", "less"))
    n_features = observed.size
    if n_features == 0:
        empty = np.zeros(0)
        return StepDownResult(empty, empty, np.zeros(0, bool), alpha)
    if not (np.isfinite(observed).all() and np.isfinite(null).all()):
        raise ConfigError("observed and null statistics must be finite (drop features that are not evaluable)")
    stats_BF = np.vstack([observed[None], null])
    if alternative == "less":
        stats_BF = -stats_BF
    n_draws = stats_BF.shape[0]
    # Each draw's own p within its column: the share of draws at least as extreme (ties within scipy's
    # relative tolerance count as extreme, as in every other test here).
    ordered = np.sort(stats_BF, axis=0)
    p_BF = np.empty_like(stats_BF)
    for j in range(n_features):
        below = stats_BF[:, j] - np.abs(np.finfo(np.float64).eps * 100 * stats_BF[:, j])
        p_BF[:, j] = (n_draws - np.searchsorted(ordered[:, j], below, side="left")) / n_draws
    p_obs = p_BF[0].copy()
    order = np.lexsort((-stats_BF[0], p_obs))  # smallest p first; ties: larger statistic first
    # For step i the remaining set is order[i:]; its min-P under every draw is a suffix minimum.
    suffix_min = np.minimum.accumulate(p_BF[:, order][:, ::-1], axis=1)[:, ::-1]
    adjusted_sorted = np.maximum.accumulate((suffix_min <= p_obs[order][None, :] * (1 + 1e-12)).mean(0))
    adjusted = np.empty(n_features)
    adjusted[order] = adjusted_sorted
    return StepDownResult(adjusted, p_obs, adjusted <= alpha, alpha)
