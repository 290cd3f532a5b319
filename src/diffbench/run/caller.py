"""The call a case times: (prompt, seed, callback=None) -> images, with the case's steps, size, batch and inputs."""

from __future__ import annotations

from typing import Any, Callable, Protocol, cast

import numpy as np
import torch

from diffbench.case import Case, Resolution
from diffbench.config.settings import RunSettings
from diffbench.models.catalog import ModelSpec
from diffbench.models.controlnet import TASK as CONTROLNET_TASK
from diffbench.models.inputs import control_image, default_input_image, load_input_image


class CaseCall(Protocol):
    """What case_caller returns: the call, with the keyword arguments it passes the pipeline."""

    arguments: dict[str, Any]

    def __call__(self, prompt: str, seed: int, callback: Callable | None = None) -> np.ndarray: ...


def case_caller(
    settings: RunSettings,
    generator_device: str,
    pipe: Any,
    spec: ModelSpec,
    case: Case,
    steps: int | None = None,
    resolution: Resolution | None = None,
    batch: int | None = None,
) -> CaseCall:
    """A function (prompt, seed, callback=None) -> images (B x H x W x C floats in [0, 1]); steps,
    resolution and batch default to the case's (the sweeps change one of them)."""
    size = resolution or case.resolution
    fixed: dict[str, Any] = dict(spec.call_kwargs.get(case.task, {}))
    fixed.update(
        num_inference_steps=steps or settings.steps_for(spec),
        num_images_per_prompt=batch or settings.batch,
        output_type="np",
    )
    input_image = settings.input_image or default_input_image()
    if case.task == "i2i":
        fixed["image"] = load_input_image(input_image, size)
    else:
        fixed.update(height=size.height, width=size.width)
    if case.task == CONTROLNET_TASK:
        fixed["image"] = control_image(settings.control_image, input_image, size)

    def call(prompt: str, seed: int, callback: Callable | None = None) -> np.ndarray:
        # On the case's device by default: a CPU generator makes ancestral and SDE schedulers draw each
        # step's noise on the host and copy it over with a blocking copy (a host sync every step).
        generator = torch.Generator(generator_device).manual_seed(seed)
        torch.manual_seed(seed)  # for schedulers that draw from the global RNG (DPM++ SDE's Brownian tree)
        extra = {"callback_on_step_end": callback} if callback else {}
        return pipe(prompt=prompt, generator=generator, **fixed, **extra).images

    case_call = cast(CaseCall, call)
    case_call.arguments = fixed  # what `diffbench selfcheck`'s bare loop passes too
    return case_call
