"""LoRA adapters for `--lora`: parsing the spec, and seeded random adapters made offline as diffusers state dicts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from diffbench.errors import OptionError, UnavailableError
from diffbench.models.weights import HUB_ID

# The attention projections, as diffusers' own LoRA training scripts target them.
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
B_STD = 0.02  # lora_B's spread: a visible change to the image that does not swamp the weights
LORA_FORMS = (
    "random:RANK (e.g. random:64)",
    "a local .safetensors file or a folder holding one",
    "a Hugging Face hub id such as latent-consistency/lcm-lora-sdxl",
)
MODES = ("unfused", "fused", "hotswap")  # --lora-modes (diffbench.run.lora_case applies them)
DEFAULT_MODES = ("unfused", "fused")
SWITCHES = ("swap", "scale", "unload")  # --lora-switch's scenarios, in their default order (diffbench.run.lora_switch)
PEFT_HINT = "LoRA cases need peft: pip install peft (or the 'lora' extra: pip install -e '.[lora]')"


@dataclass(frozen=True)
class LoraSpec:
    """What `--lora` names: kind `random` (rank and seed), `file` (a path) or `hub` (a repo id)."""

    kind: str = "random"
    rank: int | None = None  # random adapters only; a file's or hub adapter's rank is read once loaded
    source: str | None = None  # the path or repo id
    seed: int = 0

    @property
    def adapter_name(self) -> str:
        return f"random-r{self.rank}-s{self.seed}" if self.kind == "random" else self.label

    @property
    def label(self) -> str:
        """The adapter's part of case ids: `r64` for random:64, else a slug of the file or repo name."""
        if self.kind == "random":
            return f"r{self.rank}"
        name = Path(str(self.source)).stem if self.kind == "file" else str(self.source).split("/")[-1]
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "adapter"

    def __str__(self) -> str:
        return f"random:{self.rank}" if self.kind == "random" else str(self.source)


def parse_lora(text: str) -> LoraSpec:
    """`random:RANK`, an existing .safetensors file or folder, or a hub id `owner/name`."""
    text = text.strip()
    forms = "; ".join(LORA_FORMS)
    if text.startswith("random"):
        value = text.partition(":")[2]
        if not value.isdigit() or int(value) <= 0:
            raise OptionError(f"--lora {text!r}: write random:RANK with a positive rank, e.g. random:64")
        return LoraSpec(rank=int(value))
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".safetensors":
        return LoraSpec(kind="file", source=str(path))
    if path.is_dir():
        if not any(path.glob("*.safetensors")):
            raise OptionError(f"--lora folder {text!r} holds no .safetensors file")
        return LoraSpec(kind="file", source=str(path))
    if path.suffix == ".safetensors" or text.startswith((".", "/", "~")) or path.exists():
        raise OptionError(f"--lora {text!r} is not an existing .safetensors file or folder; --lora takes {forms}")
    if HUB_ID.match(text):
        return LoraSpec(kind="hub", source=text)
    raise OptionError(f"--lora {text!r} is not understood; --lora takes {forms}")


def projection_shapes(denoiser: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """(in, out) features of the denoiser's attention projections by module name, read through any
    LoRA layers already there (peft wraps the original Linear as `base_layer`)."""
    shapes = {}
    for name, module in denoiser.named_modules():
        name = name.removesuffix(".base_layer")
        if isinstance(module, torch.nn.Linear) and name.endswith(ATTENTION_PROJECTIONS) and ".lora_" not in name:
            shapes[name] = (module.in_features, module.out_features)
    return shapes


def _draw(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """lora_A as peft's Kaiming-uniform init (bound 1/sqrt(fan_in)); lora_B from N(0, B_STD^2), not
    peft's zeros, which make an adapter that changes nothing."""
    if "lora_A" in key or "lora_down" in key:
        bound = 1.0 / math.sqrt(shape[-1])
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return torch.randn(shape, generator=generator) * B_STD


def random_lora_state_dict(denoiser: torch.nn.Module, rank: int, seed: int, prefix: str) -> dict[str, torch.Tensor]:
    """A rank-`rank` LoRA on the attention projections, in the state-dict format `load_lora_weights`
    takes (`{prefix}.{module}.lora_A.weight`), on the CPU in the denoiser's dtype, as a file would load."""
    generator = torch.Generator("cpu").manual_seed(seed)
    dtype = next(denoiser.parameters()).dtype
    state_dict = {}
    for name, (features_in, features_out) in sorted(projection_shapes(denoiser).items()):
        for key, shape in (
            (f"{prefix}.{name}.lora_A.weight", (rank, features_in)),
            (f"{prefix}.{name}.lora_B.weight", (features_out, rank)),
        ):
            state_dict[key] = _draw(key, shape, generator).to(dtype)
    if not state_dict:
        raise UnavailableError(
            f"{type(denoiser).__name__} has no attention projection ({', '.join(ATTENTION_PROJECTIONS)}) "
            "for a random LoRA"
        )
    return state_dict


def random_like(state_dict: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """An adapter with the keys and shapes of `state_dict` and new random values: what a swap loads."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return {
        key: _draw(key, tuple(value.shape), generator).to(value.dtype) if value.ndim > 1 else value.clone()
        for key, value in sorted(state_dict.items())
    }


def lora_rank(state_dict: dict[str, Any]) -> int:
    """The highest rank in a LoRA state dict (lora_B's inner dimension; lora_up / lora.up in kohya's naming)."""
    ranks = [
        value.shape[1]
        for key, value in state_dict.items()
        if any(part in key for part in ("lora_B", "lora_up", "lora.up")) and getattr(value, "ndim", 0) > 1
    ]
    if not ranks:
        raise UnavailableError(
            "the LoRA state dict has no lora_B/lora_up matrix: not a LoRA adapter diffbench can read"
        )
    return max(ranks)


def add_random_lora(denoiser: Any, spec: LoraSpec) -> str:
    """Add `spec`'s random adapter straight through peft (no pipeline); returns its adapter name."""
    try:
        from peft import LoraConfig, set_peft_model_state_dict
    except ImportError:
        raise UnavailableError(PEFT_HINT) from None
    rank = cast(int, spec.rank)  # a random spec always has one (parse_lora)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(ATTENTION_PROJECTIONS))
    state_dict = random_lora_state_dict(denoiser, rank, spec.seed, prefix="")
    denoiser.add_adapter(config, adapter_name=spec.adapter_name)
    set_peft_model_state_dict(denoiser, {k.lstrip("."): v for k, v in state_dict.items()}, spec.adapter_name)
    return spec.adapter_name


def lora_layer_count(denoiser: Any) -> int:
    """Modules that carry a LoRA adapter (fused or not)."""
    return sum(1 for module in denoiser.modules() if hasattr(module, "lora_A") and len(module.lora_A))
