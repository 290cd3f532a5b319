"""What the device and the host did while a case was timed: NVML samples and energy, the host's load,
the host's kernel-launch rate, and the host-device synchronizations of one call."""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, cast

import torch

logger = logging.getLogger(__name__)

# NVML's utilization is itself an average over 1/6 s or more; sampling faster only adds GIL hand-offs to
# a host-bound main thread (at 20 ms they cost about 1% of eager SDXL's rounds on the H200).
SAMPLE_INTERVAL_S = 0.1
HOST_BOUND_BUSY_PCT = 80.0  # the GPU busy less than this share of the rounds: the host holds it back
CONTENDED_OTHER_CPU = 0.25  # other processes used more than this share of all cores during the rounds
CONTENDED_STEAL = 0.05  # or the hypervisor took more than this share of the cores' time
SYNC_WARNING = (
    "synchronizing"  # torch's warning under set_sync_debug_mode("warn"): "called a synchronizing CUDA operation"
)


def _nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def _throttle_names(nvml: Any, mask: int) -> list[str]:
    names = []
    for attribute in dir(nvml):
        for prefix in ("nvmlClocksEventReason", "nvmlClocksThrottleReason"):
            if attribute.startswith(prefix) and attribute[len(prefix) :] not in ("All", "None", "Unknown"):
                bit = getattr(nvml, attribute)
                if isinstance(bit, int) and bit and mask & bit:
                    names.append(attribute[len(prefix) :])
    return sorted(set(names))


@dataclass
class _Window:
    label: str
    start: float
    end: float = 0.0
    energy_mj: float | None = None


@dataclass
class DeviceTelemetry:
    """NVML samples of the case's GPU every 100 ms on a thread, tagged by the windows (rounds) they fall in.

    `with telemetry: ...` runs the sampler; `with telemetry.window("backend"): <one round>` marks a round and
    reads the total-energy counter on both sides of it. Off CUDA, or without NVML, `available` is False
    and `note` says why: the record then says so instead of showing zeros."""

    device: str
    available: bool = False
    note: str | None = None
    samples: list[tuple[float, float, float, float, int]] = field(default_factory=list)
    windows: list[_Window] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._handle: Any = None  # NVML's device handle and the pynvml module, once NVML is up
        self._nvml: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.device.startswith("cuda") or not torch.cuda.is_available():
            self.note = (
                f"no telemetry: {self.device} is not a CUDA device"
                if not self.device.startswith("cuda")
                else "no telemetry: torch sees no CUDA device"
            )
            return
        try:
            nvml = _nvml()
            nvml.nvmlInit()
            self._handle, self._nvml = _device_handle(nvml, self.device), nvml
            self.available = True
        except Exception as error:  # no nvidia-ml-py, no driver: the record says so
            self.note = f"no telemetry: NVML unavailable ({type(error).__name__}: {error}); pip install nvidia-ml-py"

    def __enter__(self) -> "DeviceTelemetry":
        if self.available:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, name="diffbench-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _sample(self) -> None:
        nvml, handle = self._nvml, self._handle
        reasons = (
            getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                self.samples.append(
                    (
                        time.monotonic(),
                        float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                        float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
                        nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                        int(reasons(handle)),
                    )
                )
            except Exception as error:  # one failed read ends sampling, said once, not per sample
                self.note = f"NVML sampling stopped: {type(error).__name__}: {error}"
                return

    def _energy_mj(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:  # GPUs before Volta have no energy counter: energy is then left empty
            return None

    @contextmanager
    def window(self, label: str) -> Iterator[None]:
        if not self.available:
            yield
            return
        energy = self._energy_mj()
        window = _Window(label, time.monotonic())
        try:
            yield
        finally:
            window.end = time.monotonic()
            after = self._energy_mj()
            window.energy_mj = after - energy if after is not None and energy is not None else None
            self.windows.append(window)

    def summary(self, label: str, images: int) -> dict[str, Any]:
        """The record's telemetry fields over the windows named `label` (schema.FIELDS)."""
        if not self.available:
            return {"telemetry_note": self.note}
        windows = [w for w in self.windows if w.label == label]
        inside = [s for s in self.samples if any(w.start <= s[0] <= w.end for w in windows)]
        energies = [w.energy_mj for w in windows]
        record: dict[str, Any] = {"telemetry_samples": len(inside), "telemetry_note": self.note}
        if inside:
            busy = statistics.fmean(s[1] for s in inside)
            mask = 0
            for sample in inside:
                mask |= sample[4]
            record.update(
                gpu_util_pct=busy,
                sm_clock_mhz=statistics.median(s[2] for s in inside),
                sm_clock_min_mhz=min(s[2] for s in inside),
                power_w=statistics.fmean(s[3] for s in inside),
                throttle_reasons=_throttle_names(self._nvml, mask),
                host_bound=busy < HOST_BOUND_BUSY_PCT,
            )
        if windows and images and all(energy is not None for energy in energies):
            record["energy_per_image_j"] = sum(cast(list[float], energies)) / 1000.0 / images
        return record


def _device_handle(nvml: Any, device: str) -> Any:
    """NVML's handle of torch's `device`: by UUID (CUDA_VISIBLE_DEVICES renumbers), else by index."""
    index = torch.device(device).index or 0
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except Exception:
            logger.debug("NVML knows no GPU-%s; using index %d", uuid, index)
    return nvml.nvmlDeviceGetHandleByIndex(index)


class HostLoad:
    """`with HostLoad() as load: ...`, then `load.record()`: this process's CPU time per wall second, and
    the share of all cores that other processes (and the hypervisor's steal) took meanwhile (Linux)."""

    def __enter__(self) -> "HostLoad":
        self._stat, self._cpu, self._wall = _proc_stat(), time.process_time(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stat_end, self._cpu_end, self._wall_end = _proc_stat(), time.process_time(), time.monotonic()

    def record(self) -> dict[str, Any]:
        wall = self._wall_end - self._wall
        cores = os.cpu_count() or 1
        own = self._cpu_end - self._cpu
        result: dict[str, Any] = {
            "host_cpu_per_wall": own / wall if wall > 0 else None,
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
        if self._stat is None or self._stat_end is None or wall <= 0:
            return {**result, "host_other_cpu": None, "contended": None}
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (self._stat_end[0] - self._stat[0]) / ticks
        steal = (self._stat_end[1] - self._stat[1]) / ticks
        other = max(0.0, busy - own) / (wall * cores)
        steal_share = steal / (wall * cores)
        return {
            **result,
            "host_other_cpu": other,
            "host_steal": steal_share,
            "contended": other > CONTENDED_OTHER_CPU or steal_share > CONTENDED_STEAL,
        }


def _proc_stat() -> tuple[int, int] | None:
    """(busy ticks of all cores, steal ticks) from /proc/stat's first line; None off Linux."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def launch_probe(device: str, launches: int = 2000) -> dict[str, Any]:
    """Microseconds per launch of a tiny kernel (an in-place add on one element): the host's dispatch rate,
    which bounds eager pipelines; run at a run's start and end, so drift shows in run.json."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"us_per_launch": None, "note": f"not probed: {device} is not available"}
    tensor = torch.zeros(1, device=device)
    for _ in range(100):
        tensor.add_(1)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(launches):
        tensor.add_(1)
    _synchronize(device)
    return {
        "us_per_launch": (time.perf_counter() - start) / launches * 1e6,
        "launches": launches,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def count_host_syncs(device: str, call: Callable[[], Any]) -> int | None:
    """How many times one call made the host wait for the GPU (torch's sync debug mode warns once per
    synchronizing operation: a blocking copy, .item(), nonzero). None off CUDA."""
    if not device.startswith("cuda"):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum(SYNC_WARNING in str(warning.message) for warning in caught)
