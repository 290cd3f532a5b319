"""Run settings parsed from the command line and validated up front, plus the matrix they expand to."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from diffbench.backends.base import get_backend_class, registry
from diffbench.case import DEFAULT_TASKS, TASKS, Case, Resolution
from diffbench.config.options import DEFAULT_ROUNDS
from diffbench.config.parsers import (
    check_device,
    check_image,
    check_positive,
    choose,
    parse_backend_options,
    parse_lora_options,
    parse_quality_floors,
    parse_weights,
    positive_ints,
    split_values,
)
from diffbench.config.resume import check_resume_folder
from diffbench.errors import OptionError
from diffbench.measure.quality import QualityFloor
from diffbench.models.catalog import MODELS, ModelSpec
from diffbench.models.controlnet import RANDOM, parse_controlnet_source
from diffbench.models.lora import LoraSpec
from diffbench.results.shard import Shard, parse_shard

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
    rounds: int = DEFAULT_ROUNDS
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


def build_settings(raw: dict[str, Any]) -> RunSettings:
    """Validate the raw option values (strings as typed, None when absent) into RunSettings."""
    models = choose(split_values(raw.get("models")) or list(MODELS), list(MODELS), "model")
    tasks = choose(split_values(raw.get("tasks")) or list(DEFAULT_TASKS), list(TASKS), "task")
    backends = choose(split_values(raw.get("backends")) or list(DEFAULT_BACKENDS), list(registry()), "backend")
    resolutions = tuple(Resolution.parse(r) for r in split_values(raw.get("resolutions"))) or None
    for name in ("steps", "warmups", "max_warmups", "rounds", "batch", "prompts"):
        check_positive(name, raw.get(name), minimum=0 if name == "warmups" else 1)
    dtype = DTYPE_ALIASES.get(raw.get("dtype") or "auto", raw.get("dtype") or "auto")
    if dtype not in ("auto", *DTYPES):
        raise OptionError(f"unknown --dtype {raw['dtype']!r}; valid: auto, {', '.join(DTYPES)}")
    device = check_device(raw.get("device") or "auto")
    generator = choose([raw.get("generator") or "device"], list(GENERATORS), "--generator value")[0]
    pairing = choose([raw.get("pairing") or "auto"], list(PAIRINGS), "--pairing value")[0]
    input_image = check_image(raw.get("input_image"))
    default_weights, per_model_weights = parse_weights(raw.get("weights"))
    backend_options = parse_backend_options(
        raw.get("backend_config"), raw.get("compiler_config"), raw.get("compile_mode"), backends
    )
    timeout = raw.get("case_timeout")
    if timeout is not None and timeout <= 0:
        raise OptionError(f"--case-timeout must be a positive number of seconds, got {timeout}")
    # Construct each backend once now, so bad options fail before any work: also those given options
    # with --backend-config but not selected, whose options would otherwise go unread.
    for name in dict.fromkeys([*backends, *backend_options]):
        get_backend_class(name)(backend_options.get(name))
    settings = RunSettings(
        models=models,
        tasks=tasks,
        resolutions=resolutions,
        backends=backends,
        backend_options=backend_options,
        weights=per_model_weights,
        default_weights=default_weights,
        variant=raw.get("variant"),
        steps=raw.get("steps"),
        warmups=_or(raw.get("warmups"), 1),
        max_warmups=_or(raw.get("max_warmups"), 5),
        rounds=_or(raw.get("rounds"), DEFAULT_ROUNDS),
        batch=_or(raw.get("batch"), 1),
        seed=_or(raw.get("seed"), 333),
        prompt=raw.get("prompt"),
        prompts=_or(raw.get("prompts"), 3),
        dtype=dtype,
        device=device,
        generator=generator,
        pairing=pairing,
        input_image=input_image,
        controlnet=parse_controlnet_source(raw.get("controlnet")),
        control_image=check_image(raw.get("control_image"), "--control-image"),
        quality_floors=parse_quality_floors(raw.get("quality_floor")),
        results_dir=Path(raw.get("results_dir") or "reports/runs"),
        isolate=bool(raw.get("isolate")),
        case_timeout_s=_or(timeout, 1800.0),
        roofline=bool(raw.get("roofline")),
        compile_cache_check=bool(raw.get("compile_cache_check")),
        shard=parse_shard(raw.get("shard")),
        resume=check_resume_folder(raw.get("resume")),
        steps_sweep=positive_ints("--steps-sweep", raw.get("steps_sweep")),
        resolution_sweep=tuple(Resolution.parse(r) for r in split_values(raw.get("resolution_sweep"))),
        batch_sweep=positive_ints("--batch-sweep", raw.get("batch_sweep")),
        **parse_lora_options(raw),
    )
    if settings.steps_sweep and len(set(settings.steps_sweep)) < 2:
        raise OptionError(
            f"--steps-sweep needs at least two different step counts to fit a line, got {raw.get('steps_sweep')}"
        )
    for model in settings.models:  # a sweep size must suit every model selected, as --resolutions must
        model_resolutions(replace(settings, resolutions=settings.resolution_sweep or None), MODELS[model])
    expand_matrix(settings)  # raises for an empty matrix or a size a model cannot take
    return settings


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def model_resolutions(settings: RunSettings, spec: ModelSpec) -> tuple[Resolution, ...]:
    """The sizes a model runs at; each must divide by the model's latent/patch factor."""
    sizes = settings.resolutions or tuple(Resolution.parse(r) for r in spec.default_resolutions)
    for size in sizes:
        if size.height % spec.resolution_multiple or size.width % spec.resolution_multiple:
            raise OptionError(
                f"resolution {size} does not divide by {spec.resolution_multiple}, which {spec.name} "
                f"needs; use e.g. {size.height // spec.resolution_multiple * spec.resolution_multiple}"
            )
    return sizes


def expand_matrix(settings: RunSettings) -> list[Case]:
    """Every case model x task x resolution x backend, in the order that builds each model once."""
    # Eager first in each group: its timing makes the speedups and its images the reference.
    backends = sorted(settings.backends, key=lambda name: name != "eager")
    cases: list[Case] = []
    lora = settings.lora.label if settings.lora else None
    for model in settings.models:
        spec = MODELS[model]
        for task in settings.tasks:
            if task not in spec.tasks:
                continue  # e.g. ip2p has no text-to-image pipeline: no case, not a skip
            for resolution in model_resolutions(settings, spec):
                for lora_mode in settings.lora_modes or (None,):
                    cases.extend(Case(model, task, resolution, backend, lora, lora_mode) for backend in backends)
    if not cases:
        supported = "; ".join(f"{m}: {', '.join(MODELS[m].tasks)}" for m in settings.models)
        raise OptionError(f"no case to run: the models selected support only these tasks: {supported}")
    return cases
