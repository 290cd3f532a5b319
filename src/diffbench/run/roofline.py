"""How close a case runs to the hardware: FLOPs counted once per case group, over the measured step
time, against the matmul rate this device measurably reaches (`--roofline`)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from diffbench.backends.base import Backend
from diffbench.measure.flops import PipelineFlops, count_pipeline_flops, measured_matmul_tflops
from diffbench.measure.stages import denoiser_name

logger = logging.getLogger(__name__)

# GPU.md: an 8192^3 product is what reaches the H100's peak; on the CPU a small one says enough.
_CEILING_SIZE = {"cuda": 8192, "cpu": 512}


class Roofline:
    """Per run: one measured matmul ceiling per dtype, and one FLOP count per case group and computation
    (eager's for every backend that computes the same thing, its own for a backend that skips work)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._ceilings: dict[torch.dtype, float] = {}
        self._flops: dict[tuple, PipelineFlops] = {}

    def ceiling_tflops(self, dtype: torch.dtype) -> float:
        if dtype not in self._ceilings:
            size = _CEILING_SIZE["cuda" if self.device.startswith("cuda") else "cpu"]
            self._ceilings[dtype] = measured_matmul_tflops(self.device, dtype, size=size)
            logger.info(
                "matmul ceiling on %s in %s: %.1f TFLOP/s (%d^3)", self.device, dtype, self._ceilings[dtype], size
            )
        return self._ceilings[dtype]

    def count(self, key: tuple, pipe: Any, call: Callable[[], Any]) -> PipelineFlops:
        """FLOPs of one call of `pipe` (uncompiled), counted the first time `key` is seen."""
        if key not in self._flops:
            self._flops[key] = count_pipeline_flops(getattr(pipe, denoiser_name(pipe)), pipe.vae, call)
        return self._flops[key]

    def record(
        self, flops: PipelineFlops, backend: Backend, dtype: torch.dtype, its: float | None, e2e_s: float | None
    ) -> dict[str, Any]:
        """Achieved rates and utilisation: the denoiser's FLOPs per call times the measured denoiser
        calls per second (it/s), over the ceiling of the dtype the matmuls run in."""
        fields: dict[str, Any] = {
            "tflop_per_call": flops.total / 1e12,
            "tflop_per_denoiser_call": flops.denoiser_per_call / 1e12,
            "denoiser_calls_counted": flops.denoiser_calls,
            "tflop_vae_decode": flops.vae_decode / 1e12,
        }
        achieved = flops.denoiser_per_call * its / 1e12 if its else None
        fields.update(denoiser_tflops=achieved, e2e_tflops=flops.total / e2e_s / 1e12 if e2e_s else None)
        if backend.matmul_dtype is not None:  # e.g. fp8: its rate is not the pipeline dtype's
            fields.update(mfu=None, mfu_note=f"matmuls run in {backend.matmul_dtype}, whose ceiling is not measured")
            return fields
        ceiling = self.ceiling_tflops(dtype)
        fields.update(
            ceiling_tflops=ceiling,
            ceiling_dtype=str(dtype).replace("torch.", ""),
            mfu=achieved / ceiling if achieved is not None else None,
        )
        return fields
