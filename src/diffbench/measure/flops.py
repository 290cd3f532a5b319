"""FLOPs a pipeline call executes, split into denoiser calls and the VAE decode (torch's FlopCounterMode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffbench.measure.timing import timed


@dataclass(frozen=True)
class PipelineFlops:
    """What one pipeline call executed. `denoiser_per_call` is an average: a caching backend (DeepCache)
    runs part of the network on some steps, and this counts what actually ran."""

    total: int
    denoiser: int
    denoiser_calls: int
    vae_decode: int

    @property
    def denoiser_per_call(self) -> float:
        return self.denoiser / self.denoiser_calls if self.denoiser_calls else 0.0

    def as_record(self) -> dict[str, float]:
        return {
            "flops_total": self.total,
            "flops_denoiser_per_call": self.denoiser_per_call,
            "denoiser_calls_counted": self.denoiser_calls,
            "flops_vae_decode": self.vae_decode,
        }


def count_pipeline_flops(denoiser: torch.nn.Module, vae: Any, call: Callable[[], Any]) -> PipelineFlops:
    """Run `call()` once under FlopCounterMode, attributing FLOPs to `denoiser` forward calls and to
    `vae.decode` through hooks that are removed afterwards (instance-level, nothing global changes)."""
    spans = {"denoiser": 0, "vae": 0, "calls": 0}
    with FlopCounterMode(display=False) as counter:
        starts: list[int] = []

        def before(*_: Any) -> None:
            starts.append(counter.get_total_flops())

        def after(*_: Any) -> None:
            spans["denoiser"] += counter.get_total_flops() - starts.pop()
            spans["calls"] += 1

        handles = [denoiser.register_forward_pre_hook(before), denoiser.register_forward_hook(after)]
        own_decode = vae.__dict__.get("decode")  # e.g. a compiled decode a backend set on this instance
        original_decode = vae.decode

        def counted_decode(*args: Any, **kwargs: Any) -> Any:
            start = counter.get_total_flops()
            try:
                return original_decode(*args, **kwargs)
            finally:
                spans["vae"] += counter.get_total_flops() - start

        vae.decode = counted_decode
        try:
            call()
        finally:
            for handle in handles:
                handle.remove()
            if own_decode is not None:
                vae.decode = own_decode
            else:
                del vae.decode  # the class's method shows through again
        total = counter.get_total_flops()
    return PipelineFlops(total, spans["denoiser"], spans["calls"], spans["vae"])


def measured_matmul_tflops(device: str, dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    """Dense matmul throughput this device reaches (TFLOP/s): the ceiling that utilisation is taken
    against, measured rather than read from a datasheet. Synchronized; the first product warms up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timed(device, torch.matmul, a, b)
    seconds, _ = timed(device, lambda: [torch.matmul(a, b) for _ in range(repeats)])
    return 2 * size**3 * repeats / seconds / 1e12
