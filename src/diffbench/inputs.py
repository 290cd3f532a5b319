"""What a case feeds the pipeline: prompts and seeds for timing and quality, the input image."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from diffbench.case import Resolution
from diffbench.errors import OptionError
from diffbench.random_weights import fixtures_dir


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
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise OptionError(f"input image {str(path)!r} cannot be read as an image: {error}") from None
    return image.resize((resolution.width, resolution.height), Image.LANCZOS)
