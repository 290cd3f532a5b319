"""The ControlNet of `controlnet` cases: where it comes from (`--controlnet`), built once per model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from diffbench.errors import OptionError, UnavailableError
from diffbench.models.catalog import ModelSpec
from diffbench.models.fixture_files import fixtures_dir
from diffbench.models.random_weights import build_model_from_folder
from diffbench.models.weights import HUB_ID

logger = logging.getLogger(__name__)

RANDOM = "random"
TASK = "controlnet"
EXAMPLE_HUB_ID = "diffusers/controlnet-canny-sdxl-1.0"
# Settings a ControlNet must share with the UNet it feeds: its residuals are added to the UNet's features.
MATCHING_CONFIG_KEYS = ("block_out_channels", "cross_attention_dim", "in_channels")


def parse_controlnet_source(text: str | None) -> str:
    """`--controlnet`: `random` (default), a folder written by save_pretrained, or a hub id OWNER/NAME."""
    value = (text or RANDOM).strip()
    if value == RANDOM:
        return value
    valid = (
        f"give `random` (random weights from the committed configs), a folder written by "
        f"ControlNetModel.save_pretrained, or a hub id such as {EXAMPLE_HUB_ID}"
    )
    path = Path(value).expanduser()
    if path.exists():
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise OptionError(f"--controlnet {value!r} is not a ControlNet folder (no config.json in it); {valid}")
        return str(path)
    if HUB_ID.match(value):
        return value
    raise OptionError(
        f"--controlnet {value!r} is neither `random`, an existing folder, nor a hub id OWNER/NAME; {valid}"
    )


def config_folder(spec: ModelSpec, weights: str) -> Path:
    """The committed ControlNet config that matches the model's UNet: `<arch>-controlnet` in fixtures/models."""
    arch = spec.tiny_arch if weights == "tiny" else spec.arch
    folder = fixtures_dir() / "models" / f"{arch}-controlnet"
    if not (folder / "config.json").is_file():
        raise UnavailableError(
            f"{spec.name} has no committed ControlNet config ({folder}/config.json missing): "
            f"pass --controlnet {EXAMPLE_HUB_ID} or a local folder"
        )
    return folder


def undo_zero_initialization(controlnet: Any) -> None:
    """Give the ControlNet's zero convolutions random weights: diffusers initialises them to zero (so that
    training starts from the plain UNet), which would make a random ControlNet add nothing at all."""
    zero_convs = [
        controlnet.controlnet_cond_embedding.conv_out,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]
    for conv in zero_convs:
        conv.reset_parameters()


def build_random_controlnet(folder: Path, torch_dtype: torch.dtype, device: str, seed: int = 0) -> Any:
    """A ControlNetModel with seeded random weights (none zero), built directly on device in torch_dtype."""
    from diffusers import ControlNetModel

    logger.info("building a random ControlNet from %s (%s, %s)", folder, torch_dtype, device)
    return build_model_from_folder(
        folder, "controlnet", ControlNetModel, torch_dtype, device, seed, initialize=undo_zero_initialization
    )


def load_from_hub(hub_id: str, torch_dtype: torch.dtype) -> Any:
    """From the user's Hugging Face cache (downloading only when online and not cached)."""
    from diffusers import ControlNetModel

    from diffbench.models.weights import from_hub

    how_to = (
        f"download it with `hf download {hub_id}`, or pass --controlnet /path/to/folder, or "
        "--controlnet random for random weights"
    )
    return from_hub(ControlNetModel, hub_id, f"the ControlNet {hub_id}", how_to, torch_dtype=torch_dtype)


def load_controlnet(source: str, spec: ModelSpec, weights: str, torch_dtype: torch.dtype, device: str) -> Any:
    """The ControlNet `source` names, on device in torch_dtype."""
    if source == RANDOM:
        if weights not in ("random", "tiny"):
            logger.warning(
                "%s: trained weights (%s) with a random ControlNet: timing is faithful, images are "
                "not; pass --controlnet %s for a trained one",
                spec.name,
                weights,
                EXAMPLE_HUB_ID,
            )
        return build_random_controlnet(config_folder(spec, weights), torch_dtype, device)
    if Path(source).is_dir():
        from diffusers import ControlNetModel

        model = ControlNetModel.from_pretrained(source, torch_dtype=torch_dtype, local_files_only=True)
    else:
        model = load_from_hub(source, torch_dtype)
    return model.to(device).eval()


def check_matches_unet(controlnet: Any, unet: Any, source: str, model: str) -> None:
    """Fail before the first call when the ControlNet was made for another UNet (its residuals would not fit)."""
    different = [
        key
        for key in MATCHING_CONFIG_KEYS
        if list(_as_list(controlnet.config.get(key))) != list(_as_list(unet.config.get(key)))
    ]
    if different:
        details = ", ".join(f"{key} {controlnet.config.get(key)} against {unet.config.get(key)}" for key in different)
        raise OptionError(
            f"--controlnet {source!r} does not fit {model}'s UNet ({details}): give a ControlNet "
            f"trained for this model (e.g. {EXAMPLE_HUB_ID} for the full-size SDXL family), or "
            "--controlnet random"
        )


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def task_components(task: str, spec: ModelSpec, settings: Any, device: str) -> dict[str, Callable[[Any], Any]]:
    """Components a task adds to the model's shared ones, as builders taking the loaded base pipeline."""
    if task != TASK:
        return {}
    weights = settings.weights_for(spec)
    dtype = settings.torch_dtype(spec, device)

    def build(base: Any) -> Any:
        controlnet = load_controlnet(settings.controlnet, spec, weights, dtype, device)
        check_matches_unet(controlnet, base.unet, settings.controlnet, spec.name)
        return controlnet

    return {"controlnet": build}


def control_record(case: Any, settings: Any, run_folder: Any, load_s: float | None) -> dict[str, Any]:
    """What a controlnet case adds to its record: the ControlNet's source and load time, and the control
    image, saved into the run folder once per group."""
    from diffbench.models.inputs import control_image, default_input_image

    name = f"{case.model}-{case.task}-{case.resolution.label}-control"
    if not (run_folder.images / f"{name}.png").is_file():
        image = control_image(settings.control_image, settings.input_image or default_input_image(), case.resolution)
        run_folder.save_image(name, np.asarray(image, dtype=np.float32) / 255.0)
    return {"controlnet": settings.controlnet, "controlnet_load_s": load_s, "control_image": f"images/{name}.png"}
