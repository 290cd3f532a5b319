"""`fastest`: the strongest lossless recipe measured so far, as one backend (see README, Backends)."""

from __future__ import annotations

from diffbench.backends.compile import CudaGraphsBackend
from diffbench.backends.base import register


@register
class FastestBackend(CudaGraphsBackend):
    """torch.compile with CUDA graphs, fused QKV projections and channels_last, denoiser and VAE.

    On the H100 (reports/gpu/2026-11-22-h100) this beat plain compile at SDXL 1024 (0.573 s against
    0.691 s) with SSIM 1.0 against eager. Not `--compiler-config`'s: a recipe is fixed, and
    `--backend-config fastest=...` changes it explicitly.
    """

    name = "fastest"
    summary = "lossless recipe: torch.compile reduce-overhead (CUDA graphs) + fused QKV + channels_last"
    config_family = None
    default_options = {"mode": "reduce-overhead", "fuse_qkv_projections": True, "memory_format": "channels_last"}
