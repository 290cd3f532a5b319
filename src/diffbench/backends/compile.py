"""torch.compile of the denoiser and the VAE decoder, configured from `--compiler-config`."""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar, cast

import torch

from diffbench.backends.base import Backend, own, register
from diffbench.errors import OptionError
from diffbench.measure.quality import QualityFloor
from diffbench.measure.stages import denoiser_name

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# "controlnet" applies where the pipeline has one (controlnet cases) and is left out elsewhere.
COMPONENTS = ("denoiser", "vae", "controlnet")
MEMORY_FORMATS = ("contiguous", "channels_last")
# The dtype every compiled denoiser gets its timestep in (canonical_inputs). Schedulers differ (Euler A
# float32, DPM++ SDE float64, DDIM int64), and a new input dtype is a new graph, a cold compile again; the
# denoisers turn the timestep into float32 before its embedding anyway (`get_timestep_embedding`), so the
# cast changes no value.
TIMESTEP_DTYPE = torch.float32


@register
class CompileBackend(Backend):
    """torch.compile with the mode and options a user gives; lossless, so a tight quality floor."""

    name = "compile"
    summary = "torch.compile (inductor) of the denoiser, VAE decoder and ControlNet; options from --compiler-config"
    config_family: ClassVar[str | None] = "compile"
    # Measured on an H100 (reports/gpu-2026-11-22-sdxl-t2i): SSIM 1.0000, PSNR 68.2 dB vs eager for
    # random-weight SDXL at 512 and 1024. Real weights carry small differences further along the
    # trajectory, hence the margin; anything below this is not a lossless compile.
    quality_floor = QualityFloor(ssim=0.98, psnr=35.0)
    option_keys = frozenset(
        {"mode", "fullgraph", "dynamic", "backend", "options", "components", "memory_format", "fuse_qkv_projections"}
    )

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._validate()

    def _validate(self) -> None:
        mode = self.options.get("mode", "default")
        if mode not in MODES:
            raise OptionError(f"compile mode {mode!r} is not one of: {', '.join(MODES)}")
        if "options" in self.options and self.options.get("mode") not in (None, "default"):
            raise OptionError("torch.compile takes either 'mode' or 'options' (inductor options), not both")
        components = self.options.get("components", list(COMPONENTS))
        bad = [c for c in components if c not in COMPONENTS]
        if bad or not components:
            raise OptionError(f"compile components {bad or components} invalid; choose from: {', '.join(COMPONENTS)}")
        memory_format = self.options.get("memory_format", "contiguous")
        if memory_format not in MEMORY_FORMATS:
            raise OptionError(f"memory_format {memory_format!r} is not one of: {', '.join(MEMORY_FORMATS)}")

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        uses_cuda_graphs = self.options.get("mode") == "reduce-overhead"
        if uses_cuda_graphs and not device.startswith("cuda"):
            return "compile mode 'reduce-overhead' uses CUDA graphs and needs a CUDA device"
        return None

    def lora_unsupported_reason(self, mode: str) -> str | None:
        if self.options.get("fuse_qkv_projections"):
            return (
                f"backend {self.name!r} fuses to_q/to_k/to_v into one to_qkv layer, which the LoRA adapter's "
                "layers (on to_q, to_k, to_v) no longer reach; run LoRA cases without fuse_qkv_projections"
            )
        return None

    def compile_kwargs(self) -> dict[str, Any]:
        """The keyword arguments passed to torch.compile."""
        kwargs: dict[str, Any] = {
            "fullgraph": bool(self.options.get("fullgraph", False)),
            "dynamic": self.options.get("dynamic"),
            "backend": self.options.get("backend", "inductor"),
        }
        if "options" in self.options:
            kwargs["options"] = self.options["options"]
        else:
            kwargs["mode"] = self.options.get("mode", "default")
        return kwargs

    def apply(self, pipe: Any) -> Any:
        denoiser = denoiser_name(pipe)
        components = self.options.get("components", list(COMPONENTS))
        in_place = self.options.get("fuse_qkv_projections") or (self.options.get("memory_format") == "channels_last")
        # A ControlNet runs beside the UNet at every step, on the same latents at nearly the UNet's cost
        # (1.25B parameters against 2.6B for SDXL): compiling the UNet alone would leave a third of each
        # step eager. Compiling both is what diffusers' ControlNet docs and users do.
        controlnet = getattr(pipe, "controlnet", None) is not None
        if in_place:  # these change weights in place: work on private copies
            for name in (denoiser, "vae", *(("controlnet",) if controlnet else ())):
                module = own(pipe, name)
                if self.options.get("fuse_qkv_projections"):
                    module.fuse_qkv_projections()
                if self.options.get("memory_format") == "channels_last":
                    module.to(memory_format=torch.channels_last)
        kwargs = self.compile_kwargs()
        if "denoiser" in components:
            compiled = torch.compile(getattr(pipe, denoiser), **kwargs)
            canonical_inputs(cast(torch.nn.Module, compiled))
            setattr(pipe, denoiser, compiled)
        if "controlnet" in components and controlnet:
            pipe.controlnet = torch.compile(pipe.controlnet, **kwargs)
        if "vae" in components:
            compile_vae_decode(pipe, kwargs, in_place)
        return pipe


def canonical_inputs(compiled: torch.nn.Module) -> None:
    """Give the compiled denoiser its inputs in one form, so one graph serves every scheduler and task.

    - `timestep` as TIMESTEP_DTYPE (float32): DPM++ SDE's float64 timesteps recompiled the UNet cold.
    - the latents (the first argument: `sample`, `hidden_states`) contiguous: img2img's latents come from
      the VAE encoder, in channels_last where `fastest` made the VAE channels_last, and new strides are a
      new graph (the i2i `fastest` case compiled cold after t2i's, 107 s on the H200); one copy of the
      latents per call (256 KB at SDXL 1024) costs nothing next to a step.
    The hook sits on torch.compile's wrapper (an OptimizedModule), whose pre-hooks run eagerly before the
    compiled frame; arguments given by position are found through the wrapped module's signature."""
    module = getattr(compiled, "_orig_mod", compiled)
    names = list(inspect.signature(module.forward).parameters)
    changes = {"timestep": _as_timestep_dtype, names[0]: _contiguous} if names else {}
    positions = {name: names.index(name) for name in changes if name in names}

    def canonical(_module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        values = list(args)
        for name, change in changes.items():
            if name in kwargs:
                kwargs[name] = change(kwargs[name])
            elif positions.get(name, len(values)) < len(values):
                values[positions[name]] = change(values[positions[name]])
        return tuple(values), kwargs

    compiled.register_forward_pre_hook(canonical, with_kwargs=True)


def _as_timestep_dtype(timestep: Any) -> Any:
    if isinstance(timestep, torch.Tensor) and timestep.dtype != TIMESTEP_DTYPE:
        return timestep.to(TIMESTEP_DTYPE)
    return timestep


def _contiguous(latents: Any) -> Any:
    return latents.contiguous() if isinstance(latents, torch.Tensor) else latents


def compile_vae_decode(pipe: Any, kwargs: dict[str, Any], in_place: bool) -> None:
    """Compile `pipe.vae.decode` (pipelines call decode, not forward). Unless the VAE is already the case's
    own copy (`in_place`), a shallow copy carries the compiled method without touching the cached VAE."""
    vae = pipe.vae if in_place else copy.copy(pipe.vae)
    vae.decode = torch.compile(vae.decode, **kwargs)
    pipe.vae = vae


@register
class MaxAutotuneBackend(CompileBackend):
    """Inductor autotunes matmul/conv kernels and uses CUDA graphs: long compiles, fastest kernels."""

    name = "compile-max-autotune"
    summary = "torch.compile mode max-autotune (autotuned kernels + CUDA graphs; minutes to compile)"
    default_options = {"mode": "max-autotune"}

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        if not device.startswith("cuda"):
            return f"compile mode {self.options.get('mode')!r} autotunes GPU kernels and needs a CUDA device"
        return super().unsupported_reason(case, spec, device)


@register
class MaxAutotuneNoCudagraphsBackend(MaxAutotuneBackend):
    name = "compile-max-autotune-no-cudagraphs"
    summary = "torch.compile mode max-autotune-no-cudagraphs (autotuned kernels, no CUDA graphs)"
    default_options = {"mode": "max-autotune-no-cudagraphs"}


@register
class CudaGraphsBackend(CompileBackend):
    """CUDA graphs remove the per-kernel launch cost that dominates small resolutions."""

    name = "compile-cudagraphs"
    summary = "torch.compile mode reduce-overhead (CUDA graphs)"
    default_options = {"mode": "reduce-overhead"}


@register
class DynamicCompileBackend(CompileBackend):
    """One graph for all sizes: against `compile`, shows what a new resolution costs a static compile."""

    name = "compile-dynamic"
    summary = "torch.compile with dynamic=True (symbolic sizes: fewer recompiles when the resolution changes)"
    default_options = {"dynamic": True}
