"""Speedups that host drift cannot bend: eager and a backend alternated round by round, the speedup the
median of the per-pair ratios with a bootstrap 95% interval; or, where they cannot alternate, eager timed
again after the backend and the drift between the two eager medians flagged."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from diffbench.results.cells import DRIFT_FLAG

RESAMPLES = 10_000
CONFIDENCE = 0.95


def paired_order(rounds: int) -> list[str]:
    """The order of the timed calls of a paired case: eager, backend, eager, backend, ..."""
    return ["eager", "backend"] * rounds


def _interval(statistic: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(statistic, [tail, 100 - tail])
    return float(low), float(high)


def paired_speedup(eager_s: list[float], backend_s: list[float], seed: int = 0) -> dict[str, Any]:
    """Median of eager_i / backend_i over pairs, and its bootstrap interval (pairs resampled together)."""
    if len(eager_s) != len(backend_s) or not eager_s:
        raise ValueError(
            f"paired rounds must be as many on both sides and at least one: {len(eager_s)} eager, "
            f"{len(backend_s)} backend"
        )
    ratios = np.asarray(eager_s, dtype=float) / np.asarray(backend_s, dtype=float)
    rng = np.random.default_rng(seed)
    resampled = np.median(rng.choice(ratios, size=(RESAMPLES, len(ratios)), replace=True), axis=1)
    low, high = _interval(resampled)
    return {
        "speedup": float(np.median(ratios)),
        "speedup_low": low,
        "speedup_high": high,
        "speedup_pair_ratios": ratios.tolist(),
        "pairing": "paired",
    }


def unpaired_speedup(
    eager_s: list[float], backend_s: list[float], eager_after_s: list[float] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Eager's median / the backend's, with a bootstrap interval resampling each side on its own; with
    `eager_after_s` (eager timed again after the backend) the drift of eager's median between the two."""
    rng = np.random.default_rng(seed)
    eager, backend = np.asarray(eager_s, dtype=float), np.asarray(backend_s, dtype=float)
    ratio = np.median(rng.choice(eager, size=(RESAMPLES, len(eager))), axis=1) / np.median(
        rng.choice(backend, size=(RESAMPLES, len(backend))), axis=1
    )
    low, high = _interval(ratio)
    result: dict[str, Any] = {
        "speedup": statistics.median(eager_s) / statistics.median(backend_s),
        "speedup_low": low,
        "speedup_high": high,
        "pairing": "unpaired",
    }
    if eager_after_s:
        drift = statistics.median(eager_after_s) / statistics.median(eager_s) - 1.0
        result.update(
            pairing="eager-after",
            eager_after_e2e_s=statistics.median(eager_after_s),
            eager_after_rounds_s=list(eager_after_s),
            eager_drift=drift,
            speedup_drift_flagged=abs(drift) > DRIFT_FLAG,
        )
    return result


def half_width(record: dict[str, Any]) -> float | None:
    """The interval's larger distance from the speedup, relative to it (0.03: within +-3%)."""
    speedup, low, high = record.get("speedup"), record.get("speedup_low"), record.get("speedup_high")
    if not speedup or low is None or high is None:
        return None
    return max(speedup - low, high - speedup) / speedup
