"""Sequential looks: a researcher who reads "inconclusive, ~N more prompts", adds them and reruns has
looked twice at growing data. Deciding each look at the full alpha would inflate the error, so a
profile that declares `looks = K` in advance spends its alpha across them (Lan & DeMets spending
functions, indexed by look k / K): look k decides at the increment alpha_k = f(k/K) - f((k-1)/K).
The increments add up to alpha, so by the union bound the chance of a wrong verdict at any look is
at most alpha whatever the dependence between looks (the data are nested), with no assumption on
how many prompts each look adds. Conservative by design: it never needs the looks' joint law.
"""

from __future__ import annotations

import math

from scipy.stats import norm

from harness.core.errors import choices_error

# The profile's `analysis.spending` choices (harness.core.config.Spending; a test checks they agree).
SPENDING = ("pocock", "obrien-fleming", "even")


def spent(alpha: float, fraction: float, spending: str) -> float:
    """Alpha spent by the time `fraction` (0..1) of the declared looks is done."""
    if spending not in SPENDING:
        raise choices_error("analysis.spending", spending, SPENDING)
    if fraction <= 0:
        return 0.0
    fraction = min(fraction, 1.0)
    if spending == "pocock":  # spends early looks generously: a clear effect stops early
        return alpha * math.log(1 + (math.e - 1) * fraction)
    if spending == "obrien-fleming":  # keeps almost everything for the last look
        return float(2 * (1 - norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(fraction))))
    return alpha * fraction


def look_alpha(alpha: float, look: int, looks: int, spending: str) -> float:
    """The alpha look `look` of `looks` decides at (the whole alpha when there is one look)."""
    if looks <= 1:
        return alpha
    return spent(alpha, look / looks, spending) - spent(alpha, (look - 1) / looks, spending)
