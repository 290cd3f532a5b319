"""Feature caching across denoising steps through diffusers' hooks: the shared machinery, PAB and TaylorSeer.

MagCache is in magcache.py, DeepCache in deepcache.py."""

from __future__ import annotations

import copy
import importlib
import logging
from typing import Any, ClassVar

import torch

from diffbench.backends.base import Backend, register
from diffbench.errors import OptionError, UnavailableError
from diffbench.measure.quality import QualityFloor
from diffbench.measure.stages import denoiser_name

logger = logging.getLogger(__name__)

UNET_FAMILIES = ("sdxl", "ip2p")  # the catalog's families whose denoiser is a UNet2DConditionModel
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Caching reuses whole features computed at an earlier step, so the image drifts further from eager
# than under quantization. Provisional, to be replaced by GPU measurements with hub weights: the floor
# catches broken reuse (stale or misplaced features give noise: SSIM below 0.3, PSNR near 10 dB).
CACHING_FLOOR = QualityFloor(ssim=0.70, psnr=18.0)


def own_modules(pipe: Any, component: str) -> Any:
    """Give `pipe` a copy of `component` with new module objects but the same parameters and buffers.

    For changes to modules (wrapped forwards, hooks), never to weights: the cached pipeline keeps its
    modules untouched, and the copy costs no device memory. Any: the component's own model class (a
    UNet's down_blocks, a transformer's blocks), which torch's Module types as Tensor | Module.
    """
    module = getattr(pipe, component)
    shared = {id(tensor): tensor for tensor in (*module.parameters(), *module.buffers())}
    private = copy.deepcopy(module, memo=shared)
    setattr(pipe, component, private)
    return private


def check_number(
    name: str,
    options: dict[str, Any],
    key: str,
    low: float,
    high: float | None = None,
    kind: type = int,
    nullable: bool = False,
) -> None:
    value = options[key]
    if value is None and nullable:
        return
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int)
    if wrong_type or value < low or (high is not None and value > high):
        valid = f"{low}..{high}" if high is not None else f">= {low}"
        what = "number" if kind is float else "whole number"
        raise OptionError(f"{name} option {key}={value!r}: give a {what} {valid}{' or null' if nullable else ''}")


class GenerationTracker:
    """Watches the denoiser's calls: the current timestep, and the start of each new generation.

    SDXL and SD3 pipelines of diffusers 0.42 expose no `current_timestep` and never reset or name the
    cache hooks' state (their denoisers lack CacheMixin), so a forward pre-hook does it: each call to
    `scheduler.set_timesteps` makes a new timesteps tensor, which marks a new generation.
    """

    def __init__(self, pipe: Any, denoiser: torch.nn.Module):
        self.pipe = pipe
        self.timestep: float | None = None
        self.on_new_generation: Any = lambda: None
        self._timesteps: torch.Tensor | None = None
        denoiser.register_forward_pre_hook(self._before_step, with_kwargs=True)

    def steps(self) -> int:
        """Denoiser calls in this generation: img2img starts part-way into the schedule."""
        scheduler = self.pipe.scheduler
        return len(scheduler.timesteps) - (getattr(scheduler, "begin_index", None) or 0)

    def _before_step(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        timesteps = self.pipe.scheduler.timesteps
        if timesteps is not self._timesteps:
            self._timesteps = timesteps
            self.on_new_generation()
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        self.timestep = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)


class DiffusersCacheBackend(Backend):
    """A diffusers cache hook applied to a private module tree of the denoiser; subclasses build the config."""

    lossy = True
    skips_work = True
    quality_floor = CACHING_FLOOR
    config_class: ClassVar[str]  # the class name in diffusers.hooks

    def unavailable_reason(self, device: str) -> str | None:
        hooks = importlib.import_module("diffusers.hooks")
        # The hooks' cache contexts (diffusers.hooks.hooks.CacheContext) came after 0.36; without them
        # the generation reset below cannot work (seen with 0.36.0 in .ci/onediff-env).
        needed = hasattr(hooks, self.config_class) and hasattr(
            importlib.import_module("diffusers.hooks.hooks"), "CacheContext"
        )
        if not needed:
            import diffusers

            return (
                f"backend {self.name!r} needs diffusers.hooks.{self.config_class} and cache contexts, which "
                f"diffusers {diffusers.__version__} lacks (0.42.1 has them): pip install -U diffusers"
            )
        return super().unavailable_reason(device)

    def unet_reason(self) -> str | None:
        """Why this cache cannot work on a UNet denoiser, or None."""
        return None

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        if spec.family in UNET_FAMILIES and self.unet_reason():
            return f"{self.name} on {spec.name}'s UNet: {self.unet_reason()}"
        return super().unsupported_reason(case, spec, device)

    def enable(self, denoiser: torch.nn.Module, tracker: GenerationTracker) -> Any:
        """Install the hooks on `denoiser` and return their config."""
        raise NotImplementedError

    def new_generation(self, denoiser: torch.nn.Module, config: Any, tracker: GenerationTracker) -> None:
        """Reset every hook's state and give the hooks a cache context, as pipelines with CacheMixin do."""
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        HookRegistry.check_if_exists_or_initialize(denoiser).reset_stateful_hooks()
        # CFG runs as one batched call per step here, so one context serves the whole generation.
        _set_cache_context(denoiser, CacheContext("inference"))

    def apply(self, pipe: Any) -> Any:
        name = denoiser_name(pipe)
        denoiser = own_modules(pipe, name)  # hooks replace module forwards: on private module objects only
        tracker = GenerationTracker(pipe, denoiser)
        config = self.enable(denoiser, tracker)
        tracker.on_new_generation = lambda: self.new_generation(denoiser, config, tracker)
        hooked = sum(bool(getattr(m, "_diffusers_hook", None) and m._diffusers_hook.hooks) for m in denoiser.modules())
        if not hooked:  # a cache that hooks nothing would be benchmarked as if it were one
            raise UnavailableError(
                f"{self.name}: {type(config).__name__} hooked no module of this "
                f"{type(denoiser).__name__}, so it would change nothing"
            )
        logger.info("%s: hooks on %d modules of the %s", self.name, hooked, name)
        return pipe

    def restore(self, pipe: Any) -> None:
        from diffusers.hooks import HookRegistry

        # The hooks live on the private module tree; only their cached features need freeing now.
        HookRegistry.check_if_exists_or_initialize(getattr(pipe, denoiser_name(pipe))).reset_stateful_hooks()


@register
class PyramidAttentionBroadcastBackend(DiffusersCacheBackend):
    """Pyramid Attention Broadcast: attention outputs reused for some steps in the middle of the schedule."""

    name = "pab"
    summary = "Pyramid Attention Broadcast (diffusers hook): attention outputs reused within a timestep range"
    config_class = "PyramidAttentionBroadcastConfig"
    option_keys = frozenset(
        {
            "spatial_attention_block_skip_range",
            "spatial_attention_timestep_skip_range",
            "cross_attention_block_skip_range",
            "cross_attention_timestep_skip_range",
        }
    )
    # diffusers' documented example: self-attention recomputed every 2nd step between timesteps 100 and 800.
    default_options = {
        "spatial_attention_block_skip_range": 2,
        "spatial_attention_timestep_skip_range": [100, 800],
        "cross_attention_block_skip_range": None,
        "cross_attention_timestep_skip_range": [100, 800],
    }

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        for kind in ("spatial", "cross"):
            check_number(self.name, self.options, f"{kind}_attention_block_skip_range", 1, nullable=True)
            span = self.options[f"{kind}_attention_timestep_skip_range"]
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, (int, float)) for v in span)):
                raise OptionError(
                    f"{self.name} option {kind}_attention_timestep_skip_range={span!r}: give "
                    "[low, high] timesteps, e.g. [100, 800]"
                )
        if (
            self.options["spatial_attention_block_skip_range"] is None
            and self.options["cross_attention_block_skip_range"] is None
        ):
            raise OptionError(
                f"{self.name}: set spatial_attention_block_skip_range or "
                "cross_attention_block_skip_range (both null would skip nothing)"
            )

    def enable(self, denoiser: torch.nn.Module, tracker: GenerationTracker) -> Any:
        from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

        settings: dict[str, Any] = {key: tuple(v) if isinstance(v, list) else v for key, v in self.options.items()}
        # diffusers types the callback's timestep int; it only compares it with the skip range, which a float
        # timestep (the scheduler's, as the tracker keeps it) does the same
        config = PyramidAttentionBroadcastConfig(**settings, current_timestep_callback=lambda: tracker.timestep)  # type: ignore[arg-type, return-value]
        apply_pyramid_attention_broadcast(denoiser, config)
        return config


@register
class TaylorSeerBackend(DiffusersCacheBackend):
    """TaylorSeer: between full steps, attention outputs predicted by a Taylor series of earlier ones."""

    name = "taylorseer"
    summary = "TaylorSeer cache (diffusers hook): attention outputs forecast from earlier steps"
    config_class = "TaylorSeerCacheConfig"
    option_keys = frozenset(
        {
            "cache_interval",
            "disable_cache_before_step",
            "disable_cache_after_step",
            "max_order",
            "taylor_factors_dtype",
            "use_lite_mode",
            "cache_identifiers",
        }
    )
    default_options = {
        "cache_interval": 5,
        "disable_cache_before_step": 3,
        "disable_cache_after_step": None,
        "max_order": 1,
        "taylor_factors_dtype": "bfloat16",
        "use_lite_mode": False,
        "cache_identifiers": None,
    }  # diffusers' defaults

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        check_number(self.name, self.options, "cache_interval", 1)
        check_number(self.name, self.options, "disable_cache_before_step", 0)
        check_number(self.name, self.options, "disable_cache_after_step", 0, nullable=True)
        check_number(self.name, self.options, "max_order", 0)
        if self.options["taylor_factors_dtype"] not in DTYPES:
            raise OptionError(
                f"{self.name} option taylor_factors_dtype={self.options['taylor_factors_dtype']!r}"
                f" is not one of: {', '.join(DTYPES)}"
            )
        patterns = self.options["cache_identifiers"]
        if patterns is not None and not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
            raise OptionError(
                f"{self.name} option cache_identifiers={patterns!r}: give a list of regular "
                "expressions that fully match module names, or null for diffusers' defaults"
            )

    def unet_reason(self) -> str | None:
        if self.options["cache_identifiers"] is not None:
            return None
        return (
            "TaylorSeer's default module patterns (^transformer_blocks.*attn and alike) match no UNet module, "
            "so it would change nothing; give UNet patterns, e.g. --backend-config "
            '\'taylorseer={"cache_identifiers": ["(down|up)_blocks\\\\..*attn1"]}\', or use deepcache or pab'
        )

    def enable(self, denoiser: torch.nn.Module, tracker: GenerationTracker) -> Any:
        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

        dtype = DTYPES[self.options["taylor_factors_dtype"]]
        config = TaylorSeerCacheConfig(**{**self.options, "taylor_factors_dtype": dtype})
        apply_taylorseer_cache(denoiser, config)
        return config
