"""Whether two runs' timed rounds differ beyond their noise: a one-sided exact Mann-Whitney test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

SIGNIFICANCE = 0.05  # one-sided: the chance that noise alone orders the rounds at least this way
EXACT_LIMIT = 400  # rounds_a * rounds_b up to which the null distribution is counted exactly
MAX_ROUNDS_SUGGESTED = 50  # a side: past this, rounds ordered this loosely are called noise, not undecided


@dataclass(frozen=True)
class NoiseTest:
    """The outcome: `outside` the noise or not, the p-value where the test applies, and the rule used."""

    outside: bool
    p_value: float | None
    rule: str  # "mann-whitney", "separation" (too few rounds for the test) or "no rounds"
    rounds_needed: int | None = None  # not outside: rounds a side that would decide, if the rounds lean that way


@lru_cache(maxsize=None)
def _u_counts(after: int, before: int) -> tuple[int, ...]:
    """How many orderings of the pooled rounds give each U (pairs with the `after` round above)."""
    if after == 0 or before == 0:
        return (1,)
    # The largest pooled value is either an `after` round (it beats all `before` rounds) or a `before` one.
    from_after = (0,) * before + _u_counts(after - 1, before)
    from_before = _u_counts(after, before - 1)
    size = after * before + 1
    padded = [from_after + (0,) * (size - len(from_after)), from_before + (0,) * (size - len(from_before))]
    return tuple(a + b for a, b in zip(*padded))


def u_statistic(before: list[float], after: list[float]) -> float:
    """Pairs (before, after) where the after round is higher; ties count half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in after for b in before)


def p_value_higher(before: list[float], after: list[float]) -> float:
    """One-sided p-value that `after` rounds tend to be higher than `before` rounds."""
    return _p_value(u_statistic(before, after), len(after), len(before))


def _p_value(observed: float, n: int, m: int) -> float:
    """P(U >= observed) under no difference, for n `after` and m `before` rounds."""
    if n * m <= EXACT_LIMIT:
        counts = _u_counts(n, m)
        return sum(counts[math.ceil(observed) :]) / sum(counts)
    mean, spread = n * m / 2, math.sqrt(n * m * (n + m + 1) / 12)  # normal approximation, large samples
    return 0.5 * math.erfc((observed - mean - 0.5) / spread / math.sqrt(2))


def smallest_p_value(rounds_a: int, rounds_b: int) -> float:
    """The p-value of the most extreme ordering: 1 / C(a + b, a)."""
    return 1 / math.comb(rounds_a + rounds_b, rounds_a)


def rounds_to_decide(before: list[float], after: list[float]) -> int | None:
    """The fewest rounds a side at which rounds ordered like these (the same share of (before, after)
    pairs with the after round higher) would pass the test; None when the rounds do not lean that way
    enough for MAX_ROUNDS_SUGGESTED a side to decide."""
    share = u_statistic(before, after) / (len(before) * len(after))
    for rounds in range(max(len(before), len(after), 2), MAX_ROUNDS_SUGGESTED + 1):
        pairs = rounds * rounds
        if (
            smallest_p_value(rounds, rounds) <= SIGNIFICANCE
            and _p_value(math.floor(share * pairs), rounds, rounds) <= SIGNIFICANCE
        ):
            return rounds
    return None


def higher_beyond_noise(before: list[float] | None, after: list[float] | None) -> NoiseTest:
    """Whether `after` is higher than `before` beyond the rounds' noise.

    Mann-Whitney at SIGNIFICANCE where the rounds allow it (3 rounds a side and more); with fewer, no
    ordering is that unlikely, so every `after` round must lie above every `before` round; without
    rounds on a side there is no noise to judge and the answer is yes (the threshold alone decides)."""
    before, after = [x for x in before or [] if x is not None], [x for x in after or [] if x is not None]
    if not before or not after:
        return NoiseTest(True, None, "no rounds")
    if smallest_p_value(len(before), len(after)) > SIGNIFICANCE:
        separated = min(after) > max(before)
        return NoiseTest(separated, None, "separation", None if separated else rounds_to_decide(before, after))
    p_value = p_value_higher(before, after)
    outside = p_value <= SIGNIFICANCE
    return NoiseTest(outside, p_value, "mann-whitney", None if outside else rounds_to_decide(before, after))
