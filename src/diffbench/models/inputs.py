"""What a case feeds the pipeline: prompts and seeds for timing and quality, the input and control images."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from diffbench.case import Resolution
from diffbench.errors import OptionError
from diffbench.models.fixture_files import fixtures_dir

# scikit-image's default smoothing before the gradient; larger values keep only the strongest edges.
CANNY_SIGMA = 1.0


@cache
def load_prompts(task: str) -> tuple[str, ...]:
    with open(fixtures_dir() / "prompts.json") as handle:
        return tuple(json.load(handle)[task])


def prompt_seed_pairs(task: str, count: int, seed: int, first_prompt: str | None) -> list[tuple[str, int]]:
    """`count` (prompt, seed) pairs: the first is what is timed; all of them feed the quality check."""
    prompts = list(load_prompts(task))
    if first_prompt:
        prompts[0] = first_prompt
    return [(prompts[i % len(prompts)], seed + i) for i in range(count)]


def default_input_image() -> Path:
    return fixtures_dir() / "images" / "astronaut.png"


@cache
def load_input_image(path: Path, resolution: Resolution) -> Image.Image:
    """The input image as RGB, resized (Lanczos, as the seed scripts do) to the case's size."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise OptionError(f"input image {str(path)!r} cannot be read as an image: {error}") from None
    return image.resize((resolution.width, resolution.height), Image.Resampling.LANCZOS)


@cache
def canny_edges(path: Path, resolution: Resolution, sigma: float = CANNY_SIGMA) -> Image.Image:
    """The Canny edge map of the input image at the case's size: RGB, every pixel 0 or 255 (edges white),
    what the SDXL canny ControlNets are trained on. scikit-image's Canny on the grayscale image."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    edges = canny(rgb2gray(np.asarray(load_input_image(path, resolution))), sigma=sigma)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=2).astype(np.uint8) * 255)


def control_image(control_path: Path | None, input_path: Path, resolution: Resolution) -> Image.Image:
    """`--control-image` resized to the case's size when given, else the Canny edges of the input image."""
    if control_path is not None:
        return load_input_image(control_path, resolution)
    return canny_edges(input_path, resolution)
