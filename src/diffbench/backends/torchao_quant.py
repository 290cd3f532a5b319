"""torchao quantization of the denoiser's Linear layers (int8, fp8), alone or followed by torch.compile."""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any, ClassVar

import torch

from diffbench.backends.base import Backend, own, register
from diffbench.backends.compile import CompileBackend
from diffbench.errors import OptionError, UnavailableError
from diffbench.measure.quality import QualityFloor
from diffbench.measure.stages import denoiser_name

logger = logging.getLogger(__name__)

COMPONENTS = ("denoiser", "text_encoder", "text_encoder_2", "text_encoder_3", "controlnet")
GRANULARITIES = ("auto", "row", "tensor")
FP8_MIN_CAPABILITY = (8, 9)  # torch._scaled_mm's float8 kernels start with Ada (8.9) and Hopper (9.0)
# torchao's recommended inductor settings for quantized matmuls (its recommended_inductor_config_setter).
# Its configs would set them process-wide and never undo them, changing every later compile case; given
# as this backend's own torch.compile options instead, they stay with this case.
TORCHAO_INDUCTOR_OPTIONS = {
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "force_fuse_int_mm_with_mul": True,
}


def _quantization_api() -> Any:
    try:
        return importlib.import_module("torchao.quantization")
    except ImportError as error:  # installed (unavailable_reason checked) but broken against this torch
        raise UnavailableError(
            f"torchao is installed but fails to import ({error}); install a build that matches torch "
            f"{torch.__version__}: pip install -U 'diffbench[torchao]'"
        ) from None


def fp8_device_reason(device: str) -> str | None:
    """Why fp8 matmuls cannot run on `device`, or None."""
    need = "fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper)"
    if not device.startswith("cuda"):
        return f"{need}; device is {device}"
    if not torch.cuda.is_available():
        return f"{need}; torch {torch.__version__} sees no CUDA GPU"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_MIN_CAPABILITY:
        return f"{need}; this one is {major}.{minor}"
    return None


def quantized_linear_count(module: torch.nn.Module) -> tuple[int, int]:
    """(Linear layers whose weight is a torchao quantized tensor, all Linear layers) of `module`."""
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return sum(type(m.weight) is not torch.nn.Parameter for m in linears), len(linears)


class TorchaoBackend(Backend):
    """Quantizes the Linear layers of private copies of the chosen components; subclasses pick the config."""

    requires = ("torchao",)
    install_hint = "pip install 'diffbench[torchao]'"
    lossy = True
    # Provisional, to be replaced by GPU measurements with hub weights: 8-bit rounding moves every step a
    # little and the trajectory drifts, so images stay alike but not equal (published int8/fp8 SDXL
    # comparisons look the same to the eye); a broken quantization (overflow, wrong scales) gives noise,
    # SSIM below 0.3 and PSNR near 10 dB. Tiny CPU models reach SSIM 0.9999 and 55 dB with int8.
    quality_floor = QualityFloor(ssim=0.80, psnr=20.0)
    option_keys = frozenset({"quantize", "min_features", "exclude"})
    default_options = {"quantize": ["denoiser"], "min_features": 0, "exclude": []}

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._validate_quantization()

    def _validate_quantization(self) -> None:
        quantize, min_features, exclude = (self.options[k] for k in ("quantize", "min_features", "exclude"))
        if not isinstance(quantize, list) or not quantize or any(c not in COMPONENTS for c in quantize):
            raise OptionError(
                f"{self.name} option quantize={quantize!r}: give a list of one or more of: {', '.join(COMPONENTS)}"
            )
        if not isinstance(min_features, int) or isinstance(min_features, bool) or min_features < 0:
            raise OptionError(
                f"{self.name} option min_features={min_features!r}: give a whole number >= 0 "
                "(Linear layers with fewer input or output features stay unquantized)"
            )
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            raise OptionError(
                f"{self.name} option exclude={exclude!r}: give a list of regular expressions "
                'matched against module names, e.g. ["time_embedding", "proj_out"]'
            )
        for pattern in exclude:
            try:
                re.compile(pattern)
            except re.error as error:
                raise OptionError(
                    f"{self.name} option exclude: {pattern!r} is not a regular expression ({error})"
                ) from None

    def lora_unsupported_reason(self, mode: str) -> str | None:
        return (
            f"backend {self.name!r} quantizes every Linear layer it selects, a LoRA adapter's own lora_A/lora_B "
            "layers and the layers peft wraps included, so the adapter would not run as loaded; LoRA with "
            "quantization is not measured yet"
        )

    def quantization_config(self, component: str, module: torch.nn.Module) -> Any:
        """The torchao config that `quantize_` applies to `module`'s chosen Linear layers."""
        raise NotImplementedError

    def apply(self, pipe: Any) -> Any:
        names = [denoiser_name(pipe) if c == "denoiser" else c for c in self.options["quantize"]]
        missing = [name for name in names if getattr(pipe, name, None) is None]
        if missing:
            raise UnavailableError(
                f"{self.name}: {type(pipe).__name__} has no {', '.join(missing)} to quantize; "
                f"choose from its components with the option quantize"
            )
        for name in names:
            own(pipe, name)  # quantize_ swaps weights in place: only ever on private copies
        pipe = super().apply(pipe)  # the identity, or CompileBackend's in-place work and its (lazy) torch.compile
        for name in names:
            module = getattr(pipe, name)
            # Inside torch.compile's wrapper the module is still the private copy: compiling waits for
            # the first call, so it sees the quantized weights.
            self._quantize(name, getattr(module, "_orig_mod", module))
        return pipe

    def _quantize(self, name: str, module: torch.nn.Module) -> None:
        min_features, exclude = self.options["min_features"], self.options["exclude"]

        def chosen(layer: torch.nn.Module, qualified_name: str) -> bool:
            return (
                isinstance(layer, torch.nn.Linear)
                and min(layer.in_features, layer.out_features) >= min_features
                and not any(re.search(pattern, qualified_name) for pattern in exclude)
            )

        api = _quantization_api()
        api.quantize_(module, self.quantization_config(name, module), filter_fn=chosen)
        quantized, total = quantized_linear_count(module)
        logger.info("%s: quantized %d of %d Linear layers of %s", self.name, quantized, total, name)
        if not quantized:
            raise UnavailableError(
                f"{self.name}: no Linear layer of {name} was quantized (min_features="
                f"{min_features}, exclude={exclude}; fp8 also leaves layers whose sizes do "
                "not divide by 16): nothing to measure"
            )


@register
class Int8Backend(TorchaoBackend):
    """int8 dynamic activations (per token) times int8 weights (per channel); runs on CPU and CUDA."""

    name = "int8"
    matmul_dtype = "int8"
    summary = "torchao int8 dynamic-activation, int8-weight quantization of the denoiser's Linear layers"

    def quantization_config(self, component: str, module: torch.nn.Module) -> Any:
        return _quantization_api().Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)


@register
class Fp8Backend(TorchaoBackend):
    """float8 (e4m3) dynamic activations times float8 weights; needs a GPU with fp8 matmuls."""

    name = "fp8"
    matmul_dtype = "float8_e4m3fn"
    summary = "torchao float8 dynamic-activation, float8-weight quantization (row-wise scales on bf16)"
    option_keys = TorchaoBackend.option_keys | {"granularity"}
    default_options = {**TorchaoBackend.default_options, "granularity": "auto"}

    def _validate_quantization(self) -> None:
        super()._validate_quantization()
        if self.options["granularity"] not in GRANULARITIES:
            raise OptionError(
                f"{self.name} option granularity={self.options['granularity']!r} is not one of: "
                f"{', '.join(GRANULARITIES)}"
            )

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        return fp8_device_reason(device) or super().unsupported_reason(case, spec, device)

    def granularity(self, component: str, dtype: torch.dtype) -> str:
        """`row` or `tensor` scales for weights of `dtype`: torchao 0.18 has row-wise only for bfloat16."""
        choice = self.options["granularity"]
        if choice == "auto":
            return "row" if dtype == torch.bfloat16 else "tensor"
        if choice == "row" and dtype != torch.bfloat16:
            raise UnavailableError(
                f"fp8 with row-wise scales needs bfloat16 weights (torchao asserts 'PerRow quantization only works "
                f"for bfloat16 precision input weight'); this {component} is {str(dtype).removeprefix('torch.')}: "
                "run with --dtype bfloat16, or use per-tensor scales: "
                '--backend-config \'fp8={"granularity": "tensor"}\''
            )
        return choice

    def quantization_config(self, component: str, module: torch.nn.Module) -> Any:
        api = _quantization_api()
        granularity = self.granularity(component, next(module.parameters()).dtype)
        logger.info("%s: %s scales for %s", self.name, granularity, component)
        scales = api.PerRow() if granularity == "row" else api.PerTensor()
        return api.Float8DynamicActivationFloat8WeightConfig(granularity=scales, set_inductor_config=False)


class QuantizedCompileBackend(CompileBackend):
    """torch.compile after quantization, with torchao's recommended inductor options for this compile only."""

    config_family: ClassVar[str | None] = "compile"
    option_keys = CompileBackend.option_keys | {"inductor_tuning"}
    default_options = {"inductor_tuning": True}

    def compile_kwargs(self) -> dict[str, Any]:
        kwargs = super().compile_kwargs()
        if not self.options.get("inductor_tuning", True) or kwargs["backend"] != "inductor":
            return kwargs
        if kwargs.get("mode", "default") != "default":
            # torch.compile takes a mode or options, not both; a named mode brings its own settings.
            logger.info("%s: mode %r; torchao's inductor options not added", self.name, kwargs["mode"])
            return kwargs
        kwargs.pop("mode", None)
        kwargs["options"] = {**TORCHAO_INDUCTOR_OPTIONS, **kwargs.get("options", {})}
        return kwargs


@register
class Int8CompileBackend(Int8Backend, QuantizedCompileBackend):
    name = "int8-compile"
    summary = "int8 quantization, then torch.compile (denoiser and VAE decoder; --compiler-config applies)"
    config_family: ClassVar[str | None] = "compile"
    option_keys = Int8Backend.option_keys | QuantizedCompileBackend.option_keys
    default_options = {**Int8Backend.default_options, **QuantizedCompileBackend.default_options}


@register
class Fp8CompileBackend(Fp8Backend, QuantizedCompileBackend):
    name = "fp8-compile"
    summary = "fp8 quantization, then torch.compile (denoiser and VAE decoder; --compiler-config applies)"
    config_family: ClassVar[str | None] = "compile"
    option_keys = Fp8Backend.option_keys | QuantizedCompileBackend.option_keys
    default_options = {**Fp8Backend.default_options, **QuantizedCompileBackend.default_options}
