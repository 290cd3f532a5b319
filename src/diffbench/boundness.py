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


def gpu_idle_fraction(device: str, call: Callable[[], Any]) -> float | None:
    """1 - (time some kernel ran) / (wall time of `call`), from one profiled call; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    kernels = [(event.time_range.start / 1e6, event.time_range.end / 1e6) for event in profiler.events()
               if event.device_type == DeviceType.CUDA]
    if not kernels or wall <= 0:
        return None
    return max(0.0, 1.0 - busy_seconds(kernels) / wall)


def classify(idle_fraction: float | None, mfu: float | None) -> str | None:
    """`launch-bound`, `arithmetic-bound` or `GPU-bound below the matmul ceiling`, by the criterion above."""
    if idle_fraction is None:
        return None
    if idle_fraction >= LAUNCH_BOUND_IDLE:
        return "launch-bound"
    if mfu is not None and mfu >= ARITHMETIC_MFU:
        return "arithmetic-bound"
    return "GPU-bound below the matmul ceiling"
