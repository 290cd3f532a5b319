"""Regional compilation: torch.compile of each repeated block of the denoiser instead of the whole model.

The blocks that repeat (SDXL's 70 BasicTransformerBlocks in 11 Transformer2DModels, SD3.5-large's 38
JointTransformerBlocks) share one Python code object, so dynamo traces and inductor compiles each block
kind once per input shape, and every other instance reuses the graph: a shorter cold compile than
compiling the whole denoiser, for the steps between the blocks (convolutions, norms, the time embedding)
left eager. The blocks are the ones the model declares (`_repeated_blocks`, diffusers'
`compile_repeated_blocks`); a model that declares none gets the entries of its ModuleLists whose entries
are all of one class (the outermost such lists: a transformer's `transformer_blocks`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from diffbench.backends.base import own, register
from diffbench.backends.compile import CompileBackend, compile_vae_decode
from diffbench.errors import OptionError
from diffbench.measure.stages import denoiser_name


def repeated_block_names(model: torch.nn.Module) -> list[str]:
    """The class names of `model`'s repeated blocks: its `_repeated_blocks`, else the classes of the
    outermost ModuleLists holding two or more entries that are all of one class."""
    declared = list(getattr(model, "_repeated_blocks", None) or ())
    if declared:
        return declared
    found: Counter[str] = Counter()
    _uniform_lists(model, found)
    return sorted(found)


def _uniform_lists(module: torch.nn.Module, found: Counter[str]) -> None:
    for child in module.children():
        if isinstance(child, torch.nn.ModuleList):
            kinds = {type(entry).__name__ for entry in child}
            if len(kinds) == 1 and len(child) >= 2:
                found[kinds.pop()] += len(child)
                continue
        _uniform_lists(child, found)


def compile_blocks(model: torch.nn.Module, names: list[str], kwargs: dict[str, Any]) -> int:
    """`Module.compile` (in place) of every submodule whose class is in `names`; returns how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in names:
            module.compile(**kwargs)
            count += 1
    return count


@register
class RegionalCompileBackend(CompileBackend):
    """torch.compile of the denoiser's repeated blocks (the VAE decoder and a ControlNet whole, as `compile`)."""

    name = "compile-regional"
    summary = (
        "torch.compile of each repeated block of the denoiser (regional compilation: each block kind "
        "compiled once), the VAE decoder and ControlNet whole; options from --compiler-config"
    )
    # Fused projections and channels_last change the blocks' weights in place: 'compile' and 'fastest' do that.
    option_keys = CompileBackend.option_keys - {"fuse_qkv_projections", "memory_format"}

    def apply(self, pipe: Any) -> Any:
        components = self.options.get("components", ["denoiser", "vae", "controlnet"])
        kwargs = self.compile_kwargs()
        if "denoiser" in components:
            # Module.compile works in place: on the case's own copy, never on the cached denoiser.
            denoiser = own(pipe, denoiser_name(pipe))
            names = repeated_block_names(denoiser)
            if not names or not compile_blocks(denoiser, names, kwargs):
                raise OptionError(
                    f"backend {self.name!r}: {type(denoiser).__name__} has no repeated blocks to "
                    "compile (no _repeated_blocks and no ModuleList of one block class); use 'compile'"
                )
            pipe.__dict__["_diffbench_regional_blocks"] = names
        if "controlnet" in components and getattr(pipe, "controlnet", None) is not None:
            pipe.controlnet = torch.compile(pipe.controlnet, **kwargs)
        if "vae" in components:
            compile_vae_decode(pipe, kwargs, in_place=False)
        return pipe
