"""How a case ends: why it cannot run here (a skip reason to act on), the status and message an exception
gives it, and its quality against eager's reference images."""

from __future__ import annotations

from typing import Any, Callable, cast

import numpy as np
import torch

from diffbench.backends.base import Backend
from diffbench.case import Case, Status
from diffbench.config.settings import RunSettings
from diffbench.errors import UnavailableError
from diffbench.measure.nonfinite import first_non_finite
from diffbench.measure.quality import QualityFloor, QualityResult, assess
from diffbench.measure.rounds import Rounds
from diffbench.measure.stages import denoiser_name
from diffbench.models.catalog import ModelSpec
from diffbench.run.isolated_case import Reference


def images_of(batch: np.ndarray) -> list[np.ndarray]:
    """A batch of images (B x H x W x C) as a list of single images."""
    return [np.asarray(image) for image in batch]


def skip_reason(settings: RunSettings, device: str, backend: Backend, case: Case, spec: ModelSpec) -> str | None:
    """Why `case` cannot run here, precisely enough to act on; None if it can."""
    cuda = torch.cuda.is_available()
    if device.startswith("cuda") and not cuda:
        return f"--device {device}, but torch {torch.__version__} sees no CUDA GPU"
    if settings.weights_for(spec) != "tiny" and not device.startswith("cuda"):
        return (
            (
                f"no supported GPU: {spec.name} is a full-size model and needs a CUDA GPU "
                f"(torch {torch.__version__} sees none); the tiny-* models run on the CPU, "
                "or force the CPU with --device cpu"
            )
            if settings.device == "auto"
            else None
        )
    return (
        backend.unavailable_reason(device)
        or backend.unsupported_reason(case, spec, device)
        # a LoRA case always has its mode (expand_matrix)
        or (backend.lora_unsupported_reason(cast(str, case.lora_mode)) if case.lora else None)
    )


def outcome(backend: Backend, error: Exception) -> dict[str, str]:
    """The status and message an exception ends a case with, here or in an isolated child: a
    skip, an out-of-memory result, or a failure led by the backend's explanation of it."""
    if isinstance(error, UnavailableError):
        return {"status": Status.SKIPPED, "message": str(error)}
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return {"status": Status.OOM, "message": str(error).splitlines()[0] if str(error) else "out of memory"}
    explanation = backend.explain(str(error))
    # The explanation first: compilers' own messages can run to pages.
    return {
        "status": Status.FAILED,
        "message": (f"{explanation} " if explanation else "") + f"{type(error).__name__}: {error}",
    }


def quality_against_eager(
    case: Case,
    floor: QualityFloor,
    outputs: list[np.ndarray],
    rounds: Rounds,
    record: dict[str, Any],
    references: dict[tuple, Reference],
) -> QualityResult:
    """Eager must match itself from call to call and becomes the reference; any other backend is assessed
    against that reference, and takes its speedup from it when it was not paired."""
    if case.backend == "eager":
        # Eager is the reference; what it must pass is matching itself from call to call.
        first, last = cast(np.ndarray, rounds.first_images), cast(np.ndarray, rounds.last_images)  # the rounds ran
        determinism = assess(images_of(first), images_of(last), floor)
        record.update(deterministic=bool(determinism.passed and min(determinism.ssim, default=0) == 1.0), speedup=1.0)
        references[case.reference_key] = Reference(outputs, record["e2e_s"], record["e2e_rounds_s"])
        return determinism
    reference = references[case.reference_key]
    if reference.e2e_s and record.get("speedup") is None:  # a paired case has its own, from the pairs
        record["speedup"] = reference.e2e_s / record["e2e_s"]
    return assess(reference.images, outputs, floor)


def non_finite_origin(pipe: Any, outputs: list[np.ndarray], call: Callable[[], Any]) -> list[str]:
    """Where a NaN/inf in the outputs starts (diffbench.measure.nonfinite), as a line for the quality gate's
    failure: one more call, eager, with the denoiser, a ControlNet and the VAE watched; nothing when every
    output is finite."""
    if all(np.isfinite(image).all() for image in outputs):
        return []
    names = [denoiser_name(pipe), "controlnet", "vae"]
    models = {name: getattr(pipe, name) for name in names if isinstance(getattr(pipe, name, None), torch.nn.Module)}
    found = first_non_finite(models, call)
    if found is None:
        return ["the same call run eagerly (torch.compile off) stays finite: the compiled code makes the NaN/inf"]
    return [found.describe() + " (the same call run eagerly, torch.compile off)"]
