"""The pipeline cache: one model on the device at a time, task pipelines sharing its components."""

from __future__ import annotations

import gc
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from diffbench.measure.timing import timed
from diffbench.models.catalog import ModelSpec
from diffbench.models.weights import load_pipeline, pipeline_class

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    key: tuple
    pipe: Any
    load_s: float
    task_pipes: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # components only some tasks use (a ControlNet)
    extra_load_s: dict[str, float] = field(default_factory=dict)


class PipelineCache:
    """Holds the last model built; asking for another releases it first (GPU memory is finite)."""

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self.loads = 0  # how many times a model was built: tests check nothing is built twice

    def get(
        self, spec: ModelSpec, weights: str, torch_dtype: torch.dtype, device: str, variant: str | None = None
    ) -> LoadedModel:
        key = (spec.name, weights, str(torch_dtype), device, variant)
        if self._loaded is None or self._loaded.key != key:
            self.release()
            logger.info("building %s (weights=%s, %s, %s)", spec.name, weights, torch_dtype, device)
            load_s, pipe = timed(device, load_pipeline, spec, weights, torch_dtype, device, variant)
            self._loaded = LoadedModel(key, pipe, load_s)
            self.loads += 1
        return self._loaded

    def task_pipeline(
        self,
        loaded: LoadedModel,
        spec: ModelSpec,
        task: str,
        extra_builders: dict[str, Callable[[Any], Any]] | None = None,
    ) -> Any:
        """The pipeline for `task` over the loaded model's components (built once per task), plus the
        components only this task uses, each built once per model by its builder (given the base
        pipeline) and released with the model."""
        if task not in loaded.task_pipes:
            extras = {name: self._extra(loaded, name, build) for name, build in (extra_builders or {}).items()}
            cls = pipeline_class(spec, task)
            pipe = loaded.pipe if isinstance(loaded.pipe, cls) else share_components(loaded.pipe, cls, extras)
            pipe.set_progress_bar_config(disable=True)
            loaded.task_pipes[task] = pipe
        return loaded.task_pipes[task]

    def _extra(self, loaded: LoadedModel, name: str, build: Callable[[Any], Any]) -> Any:
        if name not in loaded.extras:
            loaded.extra_load_s[name], loaded.extras[name] = timed(str(loaded.key[3]), build, loaded.pipe)
        return loaded.extras[name]

    def release(self) -> None:
        """Drop the cached model and return its memory to the device."""
        if self._loaded is None:
            return
        self._loaded = None
        release_memory()


def share_components(pipe: Any, cls: type[Any], extras: dict[str, Any] | None = None) -> Any:
    """A `cls` pipeline over `pipe`'s very modules (and `extras`, components `pipe` lacks), dtypes untouched.

    Not `cls.from_pipe(pipe)`: in diffusers 0.42 it casts every shared module to float32 in place
    unless given a dtype, which silently turned an fp16 SDXL into fp32 for every later case.
    """
    accepted = inspect.signature(cls.__init__).parameters
    components = {name: module for name, module in {**pipe.components, **(extras or {})}.items() if name in accepted}
    return cls(**components)


def shallow_copy(pipe: Any) -> Any:
    """A new pipeline object of the same class over the same modules, with a fresh scheduler: what a
    backend may change without touching the cached pipeline (see backends.base.own for in-place work)."""
    clone = share_components(pipe, type(pipe))
    if pipe.scheduler is not None:
        clone.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    clone.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return clone


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
