"""Fits for the scaling analyses: pipeline time against the number of denoising steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffbench.errors import OptionError


@dataclass(frozen=True)
class StepsFit:
    """time = per_step_s * steps + fixed_s, by least squares, and how well that line fits (R^2)."""

    per_step_s: float
    fixed_s: float
    r_squared: float
    points: int

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.per_step_s if self.per_step_s > 0 else float("inf")

    def as_record(self) -> dict[str, float]:
        return {
            "per_step_s": self.per_step_s,
            "fixed_s": self.fixed_s,
            "fit_r_squared": self.r_squared,
            "fitted_steps_per_s": self.steps_per_s,
            "fit_points": self.points,
        }


def fit_steps(steps: list[int], seconds: list[float]) -> StepsFit:
    """The per-step cost and the fixed overhead (text encoding, VAE decode, launch) of a steps sweep."""
    if len(steps) != len(seconds):
        raise OptionError(f"a steps fit needs one time per step count; got {len(steps)} counts, {len(seconds)} times")
    if len(set(steps)) < 2:
        raise OptionError(f"a steps fit needs at least two different step counts; got {sorted(set(steps))}")
    x, y = np.asarray(steps, dtype=float), np.asarray(seconds, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (slope * x + intercept)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - residual / total if total > 0 else 1.0
    return StepsFit(float(slope), float(intercept), r_squared, len(steps))
