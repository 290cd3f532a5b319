"""One timed round, as every round of the suite (and of `diffbench selfcheck`) is timed, and their summary.

A round is one synchronized pipeline call with the per-step timer as its step-end callback and the
stage timer's marks; the peak-memory counter is reset before it and read after it, the energy counter
read on both sides of it (outside the host clock's interval). Nothing is printed, saved or copied
inside the interval.
"""

from __future__ import annotations

import statistics
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from diffbench.measure.stages import StageTimer, summarize_stages
from diffbench.measure.telemetry import DeviceTelemetry
from diffbench.measure.timing import (
    StepTimer,
    host_rss_gib,
    peak_memory_gib,
    peak_reserved_gib,
    reset_peak_memory,
    timed,
)

PERCENTILES_FROM = 10  # rounds needed before p50/p90/p99 are recorded


@dataclass
class Rounds:
    """What the timed rounds of one side (the backend, or eager between them) produced."""

    seconds: list[float] = field(default_factory=list)
    its: list[float] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    peaks_gib: list[float] = field(default_factory=list)
    reserved_gib: list[float] = field(default_factory=list)
    loop_iterations: int | None = None  # step-end callbacks in one call
    first_images: np.ndarray | None = None  # of the first call (warmup or round 1), for determinism
    last_images: np.ndarray | None = None


def one_round(
    device: str,
    pipe: Any,
    call: Callable[..., Any],
    pair: tuple[str, int],
    rounds: Rounds,
    telemetry: DeviceTelemetry | None = None,
    label: str = "backend",
    stages: bool = True,
) -> None:
    """Time one call of `pipe` (made by `call(prompt, seed, callback)`) into `rounds`.

    `stages=False` leaves the modules unhooked: eager's rounds inside a compiled backend's case share the
    denoiser module that the compiled wrapper holds, and hooks added to it would change dynamo's guards."""
    timer = StepTimer(device)
    stage_timer = StageTimer(pipe, device) if stages else None
    reset_peak_memory(device)
    with telemetry.window(label) if telemetry is not None else nullcontext(), stage_timer or nullcontext():
        seconds, images = timed(device, call, *pair, callback=timer)
    rounds.seconds.append(seconds)
    its = timer.iterations_per_second()
    if its is not None:
        rounds.its.append(its)
    if stage_timer is not None:
        rounds.stages.append(stage_timer.times(seconds))
    peak, reserved = peak_memory_gib(device), peak_reserved_gib(device)
    rounds.peaks_gib += [peak] if peak is not None else []
    rounds.reserved_gib += [reserved] if reserved is not None else []
    rounds.loop_iterations = len(timer.marks)
    if rounds.first_images is None:
        rounds.first_images = images
    rounds.last_images = images


def timing_summary(rounds: Rounds) -> dict[str, Any]:
    """The record's timing fields of `rounds` (schema.FIELDS declares the newer ones)."""
    seconds = rounds.seconds
    quartiles = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else [seconds[0]] * 3
    summary = {
        "e2e_s": statistics.median(seconds),
        "e2e_min_s": min(seconds),
        "e2e_max_s": max(seconds),
        "e2e_stdev_s": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
        "e2e_iqr_s": quartiles[2] - quartiles[0],
        "e2e_rounds_s": seconds,
        "its": statistics.median(rounds.its) if rounds.its else None,
        "its_rounds": rounds.its,
        # denoising-loop iterations per call, which it/s counts: steps x strength for img2img,
        # about twice the steps for a second-order scheduler (DPM++ SDE)
        "loop_iterations": rounds.loop_iterations,
        "peak_mem_gib": max(rounds.peaks_gib) if rounds.peaks_gib else None,
        "peak_reserved_gib": max(rounds.reserved_gib) if rounds.reserved_gib else None,
        "host_rss_gib": host_rss_gib(),
    }
    if len(seconds) >= PERCENTILES_FROM:
        p50, p90, p99 = np.percentile(seconds, [50, 90, 99])
        summary.update(e2e_p50_s=float(p50), e2e_p90_s=float(p90), e2e_p99_s=float(p99))
    summary.update(summarize_stages(rounds.stages))
    return summary
