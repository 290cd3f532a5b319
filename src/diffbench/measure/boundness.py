"""Whether a case waits on the host (launch-bound) or on the GPU: the GPU's idle fraction during one
pipeline call, from the kernel intervals torch's profiler records (`--roofline`)."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

# The stated criterion. Idle at least this share of the call's wall time: the GPU waits for the host to
# launch work (small resolutions, eager Python overhead). Otherwise the GPU is the limit, and the MFU
# says whether it is busy with arithmetic (at least ARITHMETIC_MFU of the matmul ceiling) or not.
LAUNCH_BOUND_IDLE = 0.20
ARITHMETIC_MFU = 0.40


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: overlapping kernels (streams) count once."""
    total, covered_to = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= covered_to:
            continue
        total += end - max(start, covered_to)
        covered_to = end
    return total


def gpu_activity(device: str, call: Callable[[], Any], unprofiled_wall_s: float) -> dict[str, float | None] | None:
    """The GPU's busy time in one profiled call (the union of its kernel intervals) and its idle fraction
    against `unprofiled_wall_s`, the same call's timed median; None off CUDA.

    Not against the profiled call's own wall time: tracing slows the host that launches the kernels
    (on the H100 an eager SDXL call came out 63% idle that way), while the kernels' own durations hardly
    change. Only CUDA activity is traced, to keep that slowdown small."""
    if not device.startswith("cuda"):
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        torch.cuda.synchronize(device)
        profiled_wall = time.perf_counter() - start
    kernels = [
        (event.time_range.start / 1e6, event.time_range.end / 1e6)
        for event in profiler.events()
        if event.device_type == DeviceType.CUDA
    ]
    if not kernels:
        return None
    busy = busy_seconds(kernels)
    return {
        "gpu_busy_s": busy,
        "profiled_wall_s": profiled_wall,
        "gpu_idle_fraction": idle_fraction(busy, unprofiled_wall_s),
    }


def idle_fraction(busy_s: float, wall_s: float) -> float | None:
    """1 - busy / wall, kept within [0, 1] (busy can exceed a wall measured in another call by noise)."""
    if wall_s <= 0:
        return None
    return min(1.0, max(0.0, 1.0 - busy_s / wall_s))


def classify(idle_fraction: float | None, mfu: float | None) -> str | None:
    """`launch-bound`, `arithmetic-bound` or `GPU-bound below the matmul ceiling`, by the criterion above."""
    if idle_fraction is None:
        return None
    if idle_fraction >= LAUNCH_BOUND_IDLE:
        return "launch-bound"
    if mfu is not None and mfu >= ARITHMETIC_MFU:
        return "arithmetic-bound"
    return "GPU-bound below the matmul ceiling"
