"""DeepCache on UNets: the high-level features of a step reused over the next few (pip install DeepCache)."""

from __future__ import annotations

import logging
from typing import Any

from diffbench.backends.base import Backend, register
from diffbench.backends.caching import CACHING_FLOOR, UNET_FAMILIES, check_number, own_modules
from diffbench.errors import OptionError, UnavailableError
from diffbench.measure.stages import denoiser_name

logger = logging.getLogger(__name__)


def unet_reason(name: str, spec: Any) -> str | None:
    if spec.family not in UNET_FAMILIES:
        return f"{name} supports UNet pipelines only (SDXL, instruct-pix2pix); {spec.name} has a transformer denoiser"
    return None


@register
class DeepCacheBackend(Backend):
    """DeepCache: between full UNet passes, reuse the cached deep features and run only the shallow branch."""

    name = "deepcache"
    summary = "DeepCache on the UNet: a full pass every cache_interval steps, the shallow branch between"
    requires = ("DeepCache",)
    install_hint = "pip install 'diffbench[deepcache]'"
    lossy = True
    skips_work = True
    quality_floor = CACHING_FLOOR
    option_keys = frozenset({"cache_interval", "cache_layer_id", "cache_block_id"})
    default_options = {"cache_interval": 3, "cache_layer_id": 0, "cache_block_id": 0}  # the seeds' values

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        check_number(self.name, self.options, "cache_interval", 1)
        # DeepCache names a branch block * 3 + layer: a down block holds at most 3 layers (resnets, downsampler).
        check_number(self.name, self.options, "cache_layer_id", 0, 2)
        check_number(self.name, self.options, "cache_block_id", 0)

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        return unet_reason(self.name, spec) or super().unsupported_reason(case, spec, device)

    def apply(self, pipe: Any) -> Any:
        if denoiser_name(pipe) != "unet":
            raise UnavailableError(f"{self.name} supports UNet pipelines only; {type(pipe).__name__} has none")
        from DeepCache import DeepCacheSDHelper

        # DeepCache replaces the forward of the UNet and of its blocks: on private module objects only.
        unet = own_modules(pipe, "unet")
        block = self.options["cache_block_id"]
        if block >= len(unet.down_blocks):
            raise OptionError(
                f"{self.name} option cache_block_id={block}: this UNet has {len(unet.down_blocks)} "
                f"down blocks, so give 0..{len(unet.down_blocks) - 1}"
            )
        helper = DeepCacheSDHelper(pipe=pipe)  # reads pipe.scheduler: the copy's own
        helper.set_params(
            cache_interval=self.options["cache_interval"], cache_branch_id=block * 3 + self.options["cache_layer_id"]
        )
        helper.enable()
        if getattr(pipe, "controlnet", None) is not None:
            # DeepCache wraps the UNet only (DeepCache 0.1.1's helper knows no ControlNet): it still runs in
            # full every step, and on cached steps its deep residuals go unused. It works, but saves less.
            logger.info("%s: the ControlNet is not cached; it runs in full at every step", self.name)
        pipe._diffbench_deepcache = helper
        return pipe

    def restore(self, pipe: Any) -> None:
        helper = getattr(pipe, "_diffbench_deepcache", None)
        if helper is not None:  # drop the cached features (device memory) and the wrapped forwards now
            helper.disable()
            del pipe._diffbench_deepcache
