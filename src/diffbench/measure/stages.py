"""Where one pipeline call's time goes: text encoding, each denoiser (and ControlNet) call, VAE decode.

CUDA events on a GPU (recorded on the stream as the host reaches each point, so nothing waits), host
clocks on the CPU. Instruments only what the case owns or can undo: `encode_prompt` and the image
processor's `postprocess` are patched on the case's own pipeline object (private to it), and the
denoiser gets forward hooks on its outermost module (a compiled denoiser's wrapper, so dynamo never
sees them), all removed when the call ends.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, cast

import torch

from diffbench.results.schema import STAGES

ENCODERS = ("encode_prompt", "_encode_prompt")  # the SDXL/SD3 pipelines', instruct-pix2pix's


def denoiser_name(pipe: Any) -> str:
    """`unet` or `transformer`, whichever denoises in this pipeline."""
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


class _Mark:
    """A point in time: a CUDA event on a GPU, the host clock elsewhere."""

    def __init__(self, cuda: bool):
        if cuda:
            self.event: torch.cuda.Event | None = torch.cuda.Event(enable_timing=True)
            self.event.record()
        else:
            self.event, self.time = None, time.perf_counter()

    def ms_until(self, other: "_Mark") -> float:
        if self.event is not None:
            return self.event.elapsed_time(cast(torch.cuda.Event, other.event))  # one timer's marks are alike
        return (other.time - self.time) * 1000.0


class StageTimer:
    """`with StageTimer(pipe, device) as stages: pipe(...)`, then `stages.times()`: ms per stage."""

    def __init__(self, pipe: Any, device: str):
        self.pipe, self.cuda = pipe, device.startswith("cuda")
        self.marks: dict[str, list[tuple[_Mark, _Mark | None]]] = {"text_encode": [], "denoiser": [], "controlnet": []}
        self.postprocess: _Mark | None = None
        self._undo: list[Any] = []

    def __enter__(self) -> "StageTimer":
        pipe = self.pipe
        encoder = next((name for name in ENCODERS if hasattr(pipe, name)), None)
        if encoder is not None:
            self._wrap(pipe, encoder, "text_encode")
        processor = getattr(pipe, "image_processor", None)
        if processor is not None and hasattr(processor, "postprocess"):
            original = processor.postprocess

            def postprocess(*args: Any, **kwargs: Any) -> Any:
                self.postprocess = self.postprocess or _Mark(self.cuda)
                return original(*args, **kwargs)

            self._patch(processor, "postprocess", postprocess)
        for stage, name in (("denoiser", denoiser_name(pipe)), ("controlnet", "controlnet")):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                self._hook(module, stage)
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed_stage(*args: Any, **kwargs: Any) -> Any:
            start = _Mark(self.cuda)
            try:
                return original(*args, **kwargs)
            finally:
                self.marks[stage].append((start, _Mark(self.cuda)))

        self._patch(owner, name, timed_stage)

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        """Set `name` on the instance `owner` (its class and other instances untouched), undone on exit."""
        missing = object()
        previous = owner.__dict__.get(name, missing)
        setattr(owner, name, value)
        self._undo.append(
            lambda: owner.__dict__.pop(name, None) if previous is missing else setattr(owner, name, previous)
        )

    def _hook(self, module: torch.nn.Module, stage: str) -> None:
        calls = self.marks[stage]

        def before(*_: Any) -> None:
            calls.append((_Mark(self.cuda), None))

        def after(*_: Any) -> None:
            calls[-1] = (calls[-1][0], _Mark(self.cuda))

        handles = (module.register_forward_pre_hook(before), module.register_forward_hook(after))

        def undo() -> None:
            for handle in handles:
                handle.remove()

        self._undo.append(undo)

    def times(self, e2e_s: float) -> dict[str, Any]:
        """Stage times of the call just made (after a synchronize), in ms; `other_ms` is E2E minus them."""
        spans = {
            stage: [start.ms_until(end) for start, end in marks if end is not None]
            for stage, marks in self.marks.items()
        }
        denoiser = self.marks["denoiser"]
        vae = None
        if denoiser and denoiser[-1][1] is not None and self.postprocess is not None:
            vae = denoiser[-1][1].ms_until(self.postprocess)
        result: dict[str, Any] = {
            "text_encode_ms": sum(spans["text_encode"]) if spans["text_encode"] else None,
            "denoiser_ms": sum(spans["denoiser"]) if spans["denoiser"] else None,
            "denoiser_call_ms": spans["denoiser"],
            "controlnet_ms": sum(spans["controlnet"]) if spans["controlnet"] else None,
            "vae_decode_ms": vae,
        }
        known = sum(result[key] or 0.0 for key in STAGES[:-1])
        result["other_ms"] = e2e_s * 1000.0 - known
        return result


def summarize_stages(per_round: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of each stage, and the median denoiser call over all calls of all rounds."""
    if not per_round:
        return {}
    summary: dict[str, Any] = {}
    for key in STAGES:
        values = [times[key] for times in per_round if times.get(key) is not None]
        summary[key] = statistics.median(values) if values else None
    calls = [ms for times in per_round for ms in times.get("denoiser_call_ms", [])]
    summary["denoiser_ms_per_step"] = statistics.median(calls) if calls else None
    summary["denoiser_calls"] = len(per_round[-1].get("denoiser_call_ms", []))
    return summary
