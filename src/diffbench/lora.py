"""LoRA adapters on the denoiser without a download: `random:RANK` makes one with peft (issue 8, first part)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffbench.errors import OptionError, UnavailableError

# The attention projections, as diffusers' own LoRA training scripts target them.
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass(frozen=True)
class LoraSpec:
    """`random:RANK` for now; a hub id or a local file are the next kinds."""

    rank: int
    seed: int = 0

    @property
    def adapter_name(self) -> str:
        return f"random-r{self.rank}-s{self.seed}"


def parse_lora(text: str) -> LoraSpec:
    kind, _, value = text.partition(":")
    if kind != "random" or not value.isdigit() or int(value) <= 0:
        raise OptionError(f"--lora takes random:RANK with a positive rank, e.g. random:64; got {text!r}")
    return LoraSpec(rank=int(value))


def add_random_lora(denoiser: torch.nn.Module, spec: LoraSpec, scale_std: float = 0.02) -> str:
    """Add a rank-`spec.rank` LoRA on the attention projections of `denoiser` and return its adapter name.

    Both matrices are random and non-zero (peft's default zero-inits B, which makes an adapter that
    changes nothing): A keeps peft's Kaiming init, B is drawn from N(0, scale_std^2) so the change is
    visible but does not swamp the weights. Seeded, so the same spec gives the same adapter."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise UnavailableError("LoRA cases need peft: pip install peft (or the 'lora' extra: pip install -e '.[lora]')") from None
    config = LoraConfig(r=spec.rank, lora_alpha=spec.rank, target_modules=list(ATTENTION_PROJECTIONS),
                        init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        denoiser.add_adapter(config, adapter_name=spec.adapter_name)
        generator = torch.Generator("cpu").manual_seed(spec.seed + 1)
        with torch.no_grad():
            for name, parameter in denoiser.named_parameters():
                if "lora_B" in name and spec.adapter_name in name:
                    values = torch.randn(parameter.shape, generator=generator) * scale_std
                    parameter.copy_(values.to(parameter.device, parameter.dtype))
    return spec.adapter_name


def lora_layer_count(denoiser: Any) -> int:
    """Modules that carry a LoRA (unfused) adapter."""
    return sum(1 for module in denoiser.modules() if hasattr(module, "lora_A") and len(module.lora_A))
