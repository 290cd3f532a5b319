"""Timing and memory: device synchronization, per-step timing, peak CUDA memory, host RSS."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

GIB = 1024**3


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a host clock read after it covers that work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(device: str, function, *args, **kwargs) -> tuple[float, Any]:
    """(seconds, result) of one call, synchronized on both sides."""
    synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return time.perf_counter() - start, result


SETTLE_TOLERANCE = 0.10  # two warmup calls this close (relative to the faster) count as settled


def settled(seconds: list[float], tolerance: float = SETTLE_TOLERANCE) -> bool:
    """Whether the last two calls' times agree within `tolerance` of the faster one: warmup goes on until
    they do (on an H100 a fresh eager SDXL 1024 process's calls ran 3.64, 0.93, 0.83, 0.89 s)."""
    return len(seconds) >= 2 and abs(seconds[-1] - seconds[-2]) <= tolerance * min(seconds[-2:])


class StepTimer:
    """A `callback_on_step_end` that times denoiser steps, like the seeds' IterationProfiler.

    It marks the end of every step (CUDA events on a GPU, so no synchronization perturbs the run)
    and reports steps per second between the first and the last step end: the first step, which
    pays for text encoding and set-up, is excluded, as in the seeds.
    """

    def __init__(self, device: str):
        self.device = device
        self.marks: list[Any] = []

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        if self.device.startswith("cuda"):
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        return callback_kwargs

    def iterations_per_second(self) -> float | None:
        if len(self.marks) < 2:
            return None
        first, last = self.marks[0], self.marks[-1]
        if self.device.startswith("cuda"):
            last.synchronize()
            seconds = first.elapsed_time(last) / 1000.0
        else:
            seconds = last - first
        return (len(self.marks) - 1) / seconds if seconds > 0 else None


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: str) -> float | None:
    """Peak allocated CUDA memory since the last reset (the seeds' 'Max used CUDA memory')."""
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_allocated(device) / GIB


def allocated_gib(device: str) -> float | None:
    """CUDA memory held by live tensors now; None on the CPU."""
    if not device.startswith("cuda"):
        return None
    return torch.cuda.memory_allocated(device) / GIB


def peak_reserved_gib(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    return torch.cuda.max_memory_reserved(device) / GIB


def host_rss_gib() -> float:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / GIB
    except (OSError, ValueError):
        return 0.0
