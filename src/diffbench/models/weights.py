"""Where a model's weights come from: the hub cache, a local folder or file, random, or tiny."""

from __future__ import annotations

import inspect
import logging
import os
import re
from pathlib import Path
from typing import Any, cast

import diffusers
import torch

from diffbench.errors import OptionError, UnavailableError
from diffbench.models.catalog import ModelSpec

logger = logging.getLogger(__name__)


def pipeline_class(spec: ModelSpec, task: str | None = None) -> type[Any]:
    """The diffusers pipeline class of `spec` for `task` (default: its first task)."""
    return getattr(diffusers, spec.pipelines[task or spec.tasks[0]])


def _loading_kwargs(cls: type[Any], torch_dtype: torch.dtype, variant: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if variant:
        kwargs["variant"] = variant
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        # Benchmarks time the model, not the NSFW filter (and random weights would trip it).
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    return kwargs


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # OWNER/NAME, as on the Hugging Face hub


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def load_from_hub(spec: ModelSpec, torch_dtype: torch.dtype, variant: str | None) -> Any:
    """The model's pipeline from the user's Hugging Face cache (downloading only when online and not cached)."""
    cls = pipeline_class(spec)
    how_to = (
        f"download them with `hf download {spec.hub_id}`, or pass --weights {spec.name}=/path/to/local "
        "(a folder or a single .safetensors file), or --weights random for random full-size weights"
    )
    return from_hub(
        cls,
        cast(str, spec.hub_id),  # tiny models, the ones without, always load as "tiny"
        f"{spec.name} ({spec.hub_id})",
        how_to,
        "model_index.json",
        **_loading_kwargs(cls, torch_dtype, variant),
    )


def from_hub(cls: type[Any], hub_id: str, label: str, how_to: str, marker: str = "config.json", **kwargs: Any) -> Any:
    """`cls.from_pretrained(hub_id)` from the Hugging Face cache (downloading only when online and not cached):
    a repo absent offline (no `marker` file cached) or absent or partial online is an UnavailableError
    naming `label` and saying `how_to` get it."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(hub_id, marker), str)
    if not cached and hub_offline():
        raise UnavailableError(
            f"{label} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: {how_to}"
        )
    try:
        return cls.from_pretrained(hub_id, local_files_only=hub_offline(), **kwargs)
    except (OSError, ValueError) as error:  # diffusers reports absent or partial repos this way
        raise UnavailableError(f"could not load {label} ({type(error).__name__}: {error}); {how_to}") from error


def load_local(spec: ModelSpec, path: Path, torch_dtype: torch.dtype, variant: str | None) -> Any:
    """From a saved pipeline folder, or a single-file checkpoint (as RealVisXL is shipped)."""
    cls = pipeline_class(spec)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise OptionError(f"--weights folder {str(path)!r} has no model_index.json: not a saved diffusers pipeline")
        return cls.from_pretrained(str(path), local_files_only=True, **_loading_kwargs(cls, torch_dtype, variant))
    from diffbench.models.random_weights import materialize_config_folder
    from diffbench.models.single_file import load_single_file

    config_folder = materialize_config_folder(spec.arch, _config_cache_dir() / spec.arch)
    return load_single_file(cls, path, config_folder, torch_dtype)


def _config_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "diffbench" / "configs"


def load_pipeline(
    spec: ModelSpec, weights: str, torch_dtype: torch.dtype, device: str, variant: str | None = None
) -> Any:
    """The model's first-task pipeline on `device`, with the catalog's scheduler swapped in."""
    from diffbench.models.random_weights import build_random_pipeline

    if weights in ("random", "tiny"):
        arch = spec.tiny_arch if weights == "tiny" else spec.arch
        pipe = build_random_pipeline(arch, torch_dtype, device, pipeline_cls=pipeline_class(spec))
    elif weights == "hub":
        pipe = load_from_hub(spec, torch_dtype, variant).to(device)
    else:
        pipe = load_local(spec, Path(weights), torch_dtype, variant).to(device)
    if spec.scheduler:
        pipe.scheduler = make_scheduler(spec, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_scheduler(spec: ModelSpec, base_config: Any) -> Any:
    """The catalog's scheduler for spec, from the pipeline's scheduler config plus spec's overrides. A
    scheduler whose package is missing (diffusers then exports a stand-in that raises ImportError naming
    it: DPMSolverSDEScheduler needs torchsde) is an UnavailableError."""
    try:
        scheduler = cast(str, spec.scheduler)  # called for a spec that names one
        return getattr(diffusers, scheduler).from_config(base_config, **spec.scheduler_config)
    except ImportError as error:
        raise UnavailableError(
            f"{spec.name} uses {spec.scheduler}, which needs a package not installed here "
            f"(for torchsde, the 'sde' extra: pip install -e '.[sde]'): {error}"
        ) from None
