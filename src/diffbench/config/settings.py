"""A run's settings: RunSettings, whose field defaults are the options' defaults (diffbench.config.options
renders them in the help; diffbench.config.matrix.build_settings fills the fields from the command line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffbench.backends.base import get_backend_class
from diffbench.case import DEFAULT_TASKS, Resolution
from diffbench.measure.quality import QualityFloor
from diffbench.models.catalog import MODELS, ModelSpec
from diffbench.models.controlnet import RANDOM
from diffbench.models.lora import LoraSpec
from diffbench.results.shard import Shard

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32"}
DEFAULT_BACKENDS = ("eager", "compile")
GENERATORS = ("device", "cpu")
PAIRINGS = ("auto", "eager-after", "off")


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs besides the case itself; one instance per pytest run."""

    models: tuple[str, ...] = tuple(MODELS)
    tasks: tuple[str, ...] = DEFAULT_TASKS
    resolutions: tuple[Resolution, ...] | None = None  # None: each model's defaults
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # model -> hub|random|tiny|path
    default_weights: str = "hub"
    variant: str | None = None
    steps: int | None = None
    warmups: int = 1
    max_warmups: int = 5  # more warmup calls, until two agree (measure.settled), up to this many in all
    # Six timed rounds, not three: `diffbench compare`'s exact test (p <= 0.05) then still decides a clear
    # change with one stray round on either side (p = 0.03), where 3 a side decide only when every round is
    # ordered (one slow BASE round hid a 3x slowdown at p = 0.35).
    rounds: int = 6
    batch: int = 1
    seed: int = 333
    prompt: str | None = None
    prompts: int = 3
    dtype: str = "auto"
    device: str = "auto"
    generator: str = "device"  # --generator: where the timed call's torch.Generator lives
    pairing: str = "auto"  # --pairing: eager alternated with each backend, or timed again after it, or neither
    input_image: Path | None = None
    controlnet: str = RANDOM  # --controlnet: random, a folder or a hub id
    control_image: Path | None = None  # --control-image; None: Canny edges of the input image
    quality_floors: dict[str, QualityFloor] = field(default_factory=dict)
    results_dir: Path = Path("reports/runs")
    isolate: bool = False
    case_timeout_s: float = 1800.0
    roofline: bool = False
    compile_cache_check: bool = False
    steps_sweep: tuple[int, ...] = ()
    resolution_sweep: tuple[Resolution, ...] = ()
    batch_sweep: tuple[int, ...] = ()
    resume: Path | None = None  # --resume: the run folder to go on with
    shard: Shard | None = None  # --shard: run only this share of the selected cases
    lora: LoraSpec | None = None  # --lora: every case runs with this adapter, in each of lora_modes
    lora_modes: tuple[str, ...] = ()
    lora_switch: tuple[str, ...] = ()  # --lora-switch: the switching scenarios run after compiled LoRA cases

    def weights_for(self, spec: ModelSpec) -> str:
        if spec.is_tiny:
            return "tiny"
        return self.weights.get(spec.name, self.default_weights)

    def steps_for(self, spec: ModelSpec) -> int:
        return self.steps or spec.default_steps

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def generator_device(self, device: str) -> str:
        """The device of the timed call's torch.Generator: the case's (`--generator device`) or the CPU."""
        return device if self.generator == "device" else "cpu"

    def torch_dtype(self, spec: ModelSpec, device: str) -> torch.dtype:
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        return DTYPES[spec.gpu_dtype] if device.startswith("cuda") else torch.float32

    def quality_floor(self, backend: str) -> QualityFloor:
        return self.quality_floors.get(backend) or get_backend_class(backend).quality_floor
