"""How many prompts would decide an inconclusive claim: simulated through the claim's own interval.

An interval's width does not always shrink as 1/sqrt(n): a selectivity interval capped at 1 with a
Clopper-Pearson guard on a silent set shrinks with that set alone, a ratio of sums over all
prompts counts both sets together. So the advice is not read off a normal approximation: each set
is resampled (with replacement, from the prompts this run saw) at a larger size, the claim's own
interval function is called on it, and the advice is the smallest size at which the verdict is
decided (held or refuted) in at least `power` of the simulations. For claims over two sets, growing
either set alone and both together are tried; the cheapest in prompts is the advice, so the ledger
says which set needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from harness.statistics.stats import Interval, decide

FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # sizes tried, as multiples of the present size
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


def plan_prompts(samples: Mapping[str, np.ndarray], interval_of: Callable[..., Interval], threshold: float,
                 comparison: str, *, seed: int, power: float = 0.8, simulations: int = SIMULATIONS,
                 factors: tuple[float, ...] = FACTORS) -> PromptPlan | None:
    """The cheapest growth of `samples` (name -> per-prompt rows) at which `interval_of(*samples)`
    decides the claim in >= `power` of simulations; None when no size up to the largest factor does.

    Every size is simulated on the same seed (common random numbers), so the rates along the sizes
    of one option are comparable."""
    arrays = {name: np.asarray(values) for name, values in samples.items()}
    now = {name: len(values) for name, values in arrays.items()}
    if any(n < 2 for n in now.values()):
        return None
    names = list(arrays)
    options = [tuple(names)] + ([(name,) for name in names] if len(names) > 1 else [])
    best: PromptPlan | None = None
    for grow in options:
        for factor in factors:
            sizes = {name: math.ceil(factor * now[name]) if name in grow else now[name] for name in names}
            added = sum(sizes.values()) - sum(now.values())
            if best is not None and added >= sum(best.needed.values()) - sum(best.now[n] for n in best.needed):
                break
            rate = decided_rate(arrays, sizes, interval_of, threshold, comparison, seed=seed, simulations=simulations)
            if rate >= power:
                best = PromptPlan({name: sizes[name] for name in grow}, now, rate)
                break
    return best


def decided_rate(arrays: Mapping[str, np.ndarray], sizes: Mapping[str, int], interval_of: Callable[..., Interval],
                 threshold: float, comparison: str, *, seed: int, simulations: int) -> float:
    """Share of resampled datasets (each set drawn with replacement at its size) whose interval decides."""
    rng = np.random.default_rng([seed, 0x706C616E])
    decided = 0
    for _ in range(simulations):
        drawn = {name: values[rng.integers(0, len(values), sizes[name])] for name, values in arrays.items()}
        interval = interval_of(*drawn.values())
        decided += decide(interval.low, interval.high, threshold, comparison) != "inconclusive"
    return decided / simulations
