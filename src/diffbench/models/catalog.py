"""The models diffbench knows: one ModelSpec entry per model, looked up by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffbench.errors import OptionError


@dataclass(frozen=True)
class ModelSpec:
    """What it takes to build and call one model for each task it supports."""

    name: str
    family: str  # sdxl | ip2p | sd3: models of a family share pipelines and configs
    hub_id: str | None  # None for tiny models, which exist only as committed configs
    arch: str  # folder under fixtures/models with the full-size (or tiny) component configs
    tiny_arch: str  # the family's tiny configs, used by `--weights tiny`
    pipelines: dict[str, str]  # task -> diffusers pipeline class name
    default_steps: int
    default_resolutions: tuple[str, ...]
    gpu_dtype: str = "float16"
    scheduler: str | None = None  # scheduler class to swap in, as the seed scripts do
    scheduler_config: dict[str, Any] = field(default_factory=dict)  # overrides for that scheduler
    resolution_multiple: int = 8  # VAE factor x patch size: sizes must divide by it
    call_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> extra call args

    @property
    def is_tiny(self) -> bool:
        return self.arch == self.tiny_arch

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.pipelines)


_SDXL_PIPELINES = {
    "t2i": "StableDiffusionXLPipeline",
    "i2i": "StableDiffusionXLImg2ImgPipeline",
    "controlnet": "StableDiffusionXLControlNetPipeline",
}
# 0.5: the conditioning scale diffusers' SDXL ControlNet example recommends "for good generalization".
_CONTROLNET_CALL = {"controlnet_conditioning_scale": 0.5}
_SDXL_CALL = {"i2i": {"strength": 0.8}, "controlnet": _CONTROLNET_CALL}
_IP2P_PIPELINES = {"i2i": "StableDiffusionInstructPix2PixPipeline"}
_IP2P_CALL = {"i2i": {"image_guidance_scale": 1.5}}
_SD3_PIPELINES = {"t2i": "StableDiffusion3Pipeline"}
_EULER_A = "EulerAncestralDiscreteScheduler"
# RealVisXL V4.0 Lightning's model card: DPM++ SDE Karras, 4-6+ steps, CFG 1-2. diffusers' name for
# "DPM++ SDE Karras" is DPMSolverSDEScheduler with Karras sigmas (a second-order solver: two UNet
# calls per step but the first, so 5 steps make 9 UNet calls); it needs the torchsde package.
_LIGHTNING_STEPS = 5
_LIGHTNING_CALL = {
    "t2i": {"guidance_scale": 1.5},
    "i2i": {"strength": 0.8, "guidance_scale": 1.5},
    "controlnet": {**_CONTROLNET_CALL, "guidance_scale": 1.5},
}


def _sdxl(name: str, hub_id: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="sdxl",
        hub_id=hub_id,
        arch="sdxl",
        tiny_arch="tiny-sdxl",
        pipelines=_SDXL_PIPELINES,
        default_steps=10,
        default_resolutions=("512", "1024"),
        scheduler=_EULER_A,
        call_kwargs=_SDXL_CALL,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _sdxl("sdxl", "stabilityai/stable-diffusion-xl-base-1.0"),
        _sdxl("realvisxl", "SG161222/RealVisXL_V4.0"),
        _sdxl("realvisxl-lightning", "SG161222/RealVisXL_V4.0_Lightning"),
        ModelSpec(  # the same weights at the model card's own few-step settings (the row above uses the seeds')
            name="realvisxl-lightning-5step",
            family="sdxl",
            hub_id="SG161222/RealVisXL_V4.0_Lightning",
            arch="sdxl",
            tiny_arch="tiny-sdxl",
            pipelines=_SDXL_PIPELINES,
            default_steps=_LIGHTNING_STEPS,
            default_resolutions=("512", "1024"),
            scheduler="DPMSolverSDEScheduler",
            scheduler_config={"use_karras_sigmas": True},
            call_kwargs=_LIGHTNING_CALL,
        ),
        ModelSpec(
            name="ip2p",
            family="ip2p",
            hub_id="timbrooks/instruct-pix2pix",
            arch="sd15-ip2p",
            tiny_arch="tiny-ip2p",
            pipelines=_IP2P_PIPELINES,
            default_steps=10,
            default_resolutions=("512", "1024"),
            scheduler=_EULER_A,
            call_kwargs=_IP2P_CALL,
        ),
        ModelSpec(
            name="sd35-large",
            family="sd3",
            hub_id="stabilityai/stable-diffusion-3.5-large",
            arch="sd35-large",
            tiny_arch="tiny-sd3",
            pipelines=_SD3_PIPELINES,
            default_steps=28,
            default_resolutions=("1024",),
            gpu_dtype="bfloat16",
            resolution_multiple=16,
        ),
        ModelSpec(
            name="tiny-sdxl",
            family="sdxl",
            hub_id=None,
            arch="tiny-sdxl",
            tiny_arch="tiny-sdxl",
            pipelines=_SDXL_PIPELINES,
            default_steps=4,
            default_resolutions=("128",),
            scheduler=_EULER_A,
            call_kwargs=_SDXL_CALL,
        ),
        ModelSpec(
            name="tiny-ip2p",
            family="ip2p",
            hub_id=None,
            arch="tiny-ip2p",
            tiny_arch="tiny-ip2p",
            pipelines=_IP2P_PIPELINES,
            default_steps=4,
            default_resolutions=("128",),
            scheduler=_EULER_A,
            call_kwargs=_IP2P_CALL,
        ),
        ModelSpec(
            name="tiny-sd3",
            family="sd3",
            hub_id=None,
            arch="tiny-sd3",
            tiny_arch="tiny-sd3",
            pipelines=_SD3_PIPELINES,
            default_steps=4,
            default_resolutions=("128",),
            gpu_dtype="bfloat16",
            resolution_multiple=16,
        ),
    )
}


def get_model(name: str) -> ModelSpec:
    """The spec called `name`, or an OptionError listing the models that exist."""
    try:
        return MODELS[name]
    except KeyError:
        raise OptionError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}") from None
