"""MagCache through diffusers' hooks: skip a denoiser call while the accumulated magnitude-ratio error of
the skipped residuals stays under a threshold (the shared hook machinery is in caching.py)."""

from __future__ import annotations

from typing import Any

import torch

from diffbench.backends.base import register
from diffbench.backends.caching import DiffusersCacheBackend, GenerationTracker, check_number
from diffbench.errors import OptionError


@register
class MagCacheBackend(DiffusersCacheBackend):
    """MagCache: whole steps skipped while the predicted change of the residual stays small."""

    name = "magcache"
    summary = "MagCache (diffusers hook): transformer steps skipped by residual-magnitude ratios"
    config_class = "MagCacheConfig"
    option_keys = frozenset({"threshold", "max_skip_steps", "retention_ratio", "mag_ratios"})
    # diffusers' defaults. Its only shipped ratios are Flux's; ratios depend on the checkpoint, so give
    # your model's as a list (obtain them with "calibrate", which skips nothing and prints them).
    default_options = {"threshold": 0.06, "max_skip_steps": 3, "retention_ratio": 0.2, "mag_ratios": "flux"}

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        check_number(self.name, self.options, "threshold", 0.0, kind=float)
        check_number(self.name, self.options, "retention_ratio", 0.0, 1.0, kind=float)
        check_number(self.name, self.options, "max_skip_steps", 0)
        ratios = self.options["mag_ratios"]
        if ratios not in ("flux", "calibrate") and not (
            isinstance(ratios, list) and ratios and all(isinstance(r, (int, float)) for r in ratios)
        ):
            raise OptionError(
                f'{self.name} option mag_ratios={ratios!r}: give "flux", "calibrate" or a list of '
                "numbers (one per step of a calibration run)"
            )

    def unet_reason(self) -> str | None:
        return (
            "MagCache skips the blocks of a transformer's transformer_blocks list, which a UNet lacks; "
            "it works on transformer denoisers (SD3); use deepcache or pab on UNets"
        )

    def _source_ratios(self) -> torch.Tensor | None:
        if self.options["mag_ratios"] == "calibrate":
            return None
        if self.options["mag_ratios"] == "flux":
            from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

            return FLUX_MAG_RATIOS
        return torch.tensor(self.options["mag_ratios"], dtype=torch.float32)

    def enable(self, denoiser: torch.nn.Module, tracker: GenerationTracker) -> Any:
        from diffusers.hooks import MagCacheConfig, apply_mag_cache

        ratios = self._source_ratios()
        config = MagCacheConfig(
            threshold=self.options["threshold"],
            max_skip_steps=self.options["max_skip_steps"],
            retention_ratio=self.options["retention_ratio"],
            mag_ratios=ratios,
            calibrate=ratios is None,
        )
        apply_mag_cache(denoiser, config)
        return config

    def new_generation(self, denoiser: torch.nn.Module, config: Any, tracker: GenerationTracker) -> None:
        # MagCache must know the step count (apply does not): read it from the schedule, and fit the
        # ratios to it as MagCacheConfig does when built.
        from diffusers.hooks.mag_cache import nearest_interp

        config.num_inference_steps = tracker.steps()
        source = self._source_ratios()
        if source is not None:
            config.mag_ratios = nearest_interp(source, config.num_inference_steps)
        super().new_generation(denoiser, config, tracker)
