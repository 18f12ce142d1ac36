"""How many prompts would decide an inconclusive claim: simulated through the claim's own interval.

An interval's width does not always shrink as 1/sqrt(n): a selectivity interval capped at 1 with a
Clopper-Pearson guard on a silent set shrinks with that set alone, a ratio of sums over all
prompts counts both sets together. So the advice is not read off a normal approximation: each set
is redrawn at a larger size (by default resampled with replacement from the prompts this run saw;
zero-heavy activations are drawn from their posterior predictive, see `zero_heavy_draw`), the
claim's own interval function is called on it, and the advice is the smallest size at which the verdict is
decided (held or refuted) in at least `power` of the simulations. For claims over two sets, growing
either set alone and both together are tried; the cheapest in prompts is the advice, so the ledger
says which set needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from harness.statistics.stats import Interval, decide, prompts_to_decide

STEP = 1.5  # the search's step between sizes (multiples of the present size)
MAX_FACTOR = 16.0  # beyond 16x the present prompts the advice is "more than that": no plan
SIMULATIONS = 24  # resampled datasets per size: the advice is a plan, not a verdict


@dataclass(frozen=True)
class PromptPlan:
    """Prompts each set needs in all (only the sets that must grow), and the simulated rate of a
    decided verdict at that size."""

    needed: dict[str, int]
    now: dict[str, int]
    decided: float

    def text(self) -> str:
        sets = ", ".join(f"{total} {name} prompts (now {self.now[name]})" for name, total in self.needed.items())
        return f"about {sets} would decide it ({self.decided:.0%} of simulations at that size)"


Draw = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]


def resample(rng: np.random.Generator, values: np.ndarray, size: int) -> np.ndarray:
    """Rows drawn with replacement: the plug-in world."""
    return values[rng.integers(0, len(values), size)]


def zero_heavy_draw(fallback_firings: np.ndarray | None = None) -> Draw:
    """Pooled activations as a firing rate and a firing size: the rate from its posterior given the
    firings seen (Jeffreys Beta(k + 1/2, n - k + 1/2)), the sizes resampled from the firings seen
    (or from `fallback_firings` when there were none). Resampling rows would assume a set that never
    fired never will; with more prompts the unseen firings show up, and the advice must expect them."""
    def draw(rng: np.random.Generator, values: np.ndarray, size: int) -> np.ndarray:
        firings = values[values > 0]
        pool = firings if firings.size else (fallback_firings if fallback_firings is not None else np.zeros(0))
        rate = rng.beta(firings.size + 0.5, values.size - firings.size + 0.5)
        out = np.zeros(size)
        if pool.size:
            fires = rng.random(size) < rate
            out[fires] = pool[rng.integers(0, pool.size, int(fires.sum()))]
        return out
    return draw


def plan_prompts(samples: Mapping[str, np.ndarray], interval_of: Callable[..., Interval], threshold: float,
                 comparison: str, *, seed: int, power: float = 0.8, simulations: int = SIMULATIONS,
                 max_factor: float = MAX_FACTOR, draws: Mapping[str, Draw] | None = None) -> PromptPlan | None:
    """The cheapest growth of `samples` (name -> per-prompt rows) at which `interval_of(*samples)`
    decides the claim in >= `power` of simulations; None when no size up to `max_factor` times the
    present one does.

    The search starts at the normal approximation's size (`prompts_to_decide` on the present interval),
    steps by STEP up or down until the rate crosses `power`, then bisects once. Every size is simulated
    on the same seed (common random numbers), so the rates along one search are comparable."""
    arrays = {name: np.asarray(values) for name, values in samples.items()}
    now = {name: len(values) for name, values in arrays.items()}
    if any(n < 2 for n in now.values()):
        return None
    present = interval_of(*arrays.values())
    names = list(arrays)
    options = [tuple(names)] + ([(name,) for name in names] if len(names) > 1 else [])
    guess = prompts_to_decide(present, threshold, 1, power=power)  # at n = 1: a factor
    start = min(max(float(guess), STEP) if guess else 2.0, max_factor)
    best: PromptPlan | None = None
    for grow in options:
        def sizes_at(factor, grow=grow):
            return {name: math.ceil(factor * now[name]) if name in grow else now[name] for name in names}

        def rate_at(factor):
            return decided_rate(arrays, sizes_at(factor), interval_of, threshold, comparison, seed=seed,
                                simulations=simulations, draws=draws)

        passing, failing = None, 1.0  # the smallest factor seen to decide, the largest seen not to
        factor = start
        while passing is None or factor > failing * 1.01:
            rate = rate_at(factor)
            if rate >= power:
                passing = (factor, rate)
                if factor / STEP <= failing:
                    break
                factor /= STEP
            else:
                failing = factor
                if passing is not None or factor >= max_factor:
                    break
                factor = min(factor * STEP, max_factor)
        if passing is None:
            continue
        factor, rate = passing
        middle = math.sqrt(failing * factor)  # one bisection step: within ~20% of the crossing
        if failing < middle < factor:
            middle_rate = rate_at(middle)
            if middle_rate >= power:
                factor, rate = middle, middle_rate
        sizes = sizes_at(factor)
        if best is None or sum(sizes.values()) - sum(now.values()) < _added(best):
            best = PromptPlan({name: sizes[name] for name in grow}, now, rate)
    return best


def _added(plan: PromptPlan) -> int:
    return sum(plan.needed.values()) - sum(plan.now[name] for name in plan.needed)


def decided_rate(arrays: Mapping[str, np.ndarray], sizes: Mapping[str, int], interval_of: Callable[..., Interval],
                 threshold: float, comparison: str, *, seed: int, simulations: int,
                 draws: Mapping[str, Draw] | None = None) -> float:
    """Share of redrawn datasets (each set at its size) whose interval decides."""
    rng = np.random.default_rng([seed, 0x706C616E])
    draws = draws or {}
    decided = 0
    for _ in range(simulations):
        drawn = {name: draws.get(name, resample)(rng, values, sizes[name]) for name, values in arrays.items()}
        interval = interval_of(*drawn.values())
        decided += decide(interval.low, interval.high, threshold, comparison) != "inconclusive"
    return decided / simulations
