"""`fastest` and `fastest-lossy`: the strongest recipes measured so far, as backends (README, Backends)."""

from __future__ import annotations

from diffbench.backends.base import register
from diffbench.backends.compile import CudaGraphsBackend
from diffbench.backends.torchao_quant import Fp8CompileBackend


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


@register
class FastestLossyBackend(Fp8CompileBackend):
    """`fastest` plus float8 (torchao) quantization of the denoiser's Linear layers, under fp8's floor.

    Caching is not part of it: DeepCache and diffusers' cache hooks replace module forwards per step,
    which torch.compile with CUDA graphs would either trace through once or recompile around; they are
    measured as their own backends (deepcache, pab, taylorseer, magcache) instead.
    """

    name = "fastest-lossy"
    summary = "lossy recipe: fp8 (torchao, compute capability 8.9+) + the fastest recipe's compile"
    config_family = None
    default_options = {**Fp8CompileBackend.default_options, **FastestBackend.default_options}
