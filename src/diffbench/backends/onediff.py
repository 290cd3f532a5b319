"""OneDiff's onediffx.compile_pipe with the nexfort compiler (optionally fp8-quantized) or with OneFlow."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import torch

from diffbench.backends.base import Backend, own, register
from diffbench.backends.onediff_failures import ENV_SCRIPT, ONEFLOW_INSTALL, explain_failure
from diffbench.errors import OptionError
from diffbench.measure.quality import QualityFloor

# The seeds' nexfort options (their text_to_image.py --compiler-config).
SEED_NEXFORT_OPTIONS = {
    "mode": "max-optimize:max-autotune:low-precision",
    "memory_format": "channels_last",
    "dynamic": True,
}
FP8_QUANTIZE = {"quant_type": "fp8_e4m3_e4m3_dynamic"}
FP8_MIN_CAPABILITY = (8, 9)  # fp8 matmuls (torch._scaled_mm) exist from Ada (sm_89) and Hopper (sm_90) on
# What onediffx 1.2.0's compile_pipe and quantize_pipe change in place (fuse QKV, channels_last, upcast,
# quantize) or wrap: each present one is deep-copied first, so the cached pipeline and eager stay untouched.
TOUCHED_COMPONENTS = (
    "text_encoder",
    "text_encoder_2",
    "image_encoder",
    "unet",
    "controlnet",
    "fast_unet",
    "prior",
    "decoder",
    "transformer",
    "vqgan",
    "vae",
)


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_folder(package: str) -> Path | None:
    """Where `package` would be imported from, found without importing it (its __init__ may kill us)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _check_disabled(variable: str) -> bool:
    """nexfort skips a version check when its environment variable says so (nexfort.utils.env_var)."""
    value = os.environ.get(variable)
    return value is not None and value.lower() not in ("1", "true", "yes", "on", "y")


def nexfort_pins() -> dict[str, str]:
    """The exact torch and triton versions nexfort's import insists on, read from its source, e.g.
    {"torch": "2.4.0+cu121", "triton": "3.0.0"}; empty where the file or the check is absent."""
    folder = _package_folder("nexfort")
    source = folder / "check_compiled_env_meta.py" if folder else None
    if source is None or not source.is_file():
        return {}
    text = source.read_text(errors="replace")
    pins = {}
    for name in ("torch", "triton"):
        found = re.search(rf"{name}_version == ['\"]([^'\"]+)['\"]", text)
        if found:
            pins[name] = found.group(1)
    return pins


def nexfort_torch_problem() -> str | None:
    """Why nexfort's import would refuse this torch (or triton), as a sentence with the fix; or None."""
    pins = nexfort_pins()
    nexfort = _installed("nexfort")
    fix = (
        f"make a separate environment for it with `{ENV_SCRIPT}` (.venv-onediff: torch==2.4.0, "
        "diffusers 0.36, onediffx, onediff, nexfort) and run pytest from that venv"
    )
    if not pins:  # a nexfort without the exact-pin check: fall back to its declared requirement
        return _declared_torch_problem(nexfort, fix)
    if "torch" in pins and not _check_disabled("NEXFORT_FORCE_CHECK_TORCH_VERSION"):
        if torch.__version__ != pins["torch"]:
            return (
                f"nexfort {nexfort} is a binary build for exactly torch {pins['torch']} and its import raises "
                f"for any other, but this environment has torch {torch.__version__}: {fix}"
            )
    if "triton" in pins and not _check_disabled("NEXFORT_FORCE_CHECK_TRITON_VERSION"):
        triton = _installed("triton")
        if triton != pins["triton"]:
            return (
                f"nexfort {nexfort} checks for exactly triton {pins['triton']} on import, but this environment "
                f"has {'triton ' + triton if triton else 'no triton'}: pip install triton=={pins['triton']} "
                f"(torch 2.4.0 brings it), or {fix}"
            )
    return None


def _declared_torch_problem(nexfort: str | None, fix: str) -> str | None:
    from packaging.requirements import Requirement

    for line in importlib.metadata.requires("nexfort") or []:
        requirement = Requirement(line)
        if requirement.name == "torch" and requirement.marker is None:
            if not requirement.specifier.contains(torch.__version__.split("+")[0], prereleases=True):
                return (
                    f"nexfort {nexfort} requires torch{requirement.specifier}, but this environment has torch "
                    f"{torch.__version__}: {fix}"
                )
    return None


def oneflow_problem() -> str | None:
    """Why OneFlow cannot be used here (absent, or PyPI's placeholder), found without importing it; or None."""
    version = _installed("oneflow")
    folder = _package_folder("oneflow")
    if version is None or folder is None:
        return f"OneFlow is not installed, and PyPI has no real build of it: {ONEFLOW_INSTALL}"
    # A real OneFlow ships its C++ core as oneflow/_oneflow_internal*.so; the PyPI placeholder (0.6.0,
    # 0.7.0) is pure Python whose __init__ raises "This package is a placeholder".
    if not any(folder.glob("_oneflow_internal*")):
        return (
            f"the installed oneflow {version} is PyPI's placeholder (no _oneflow_internal extension; its import "
            f"raises 'This package is a placeholder'): pip uninstall -y oneflow, then {ONEFLOW_INSTALL}"
        )
    return None


class OneDiffBackend(Backend):
    """onediffx.compile_pipe on private copies of what it changes; subclasses pick the compiler."""

    name = "onediff-base"  # not registered: only the subclasses below are
    compiler = "oneflow"
    requires: ClassVar[tuple[str, ...]] = ("onediffx", "onediff")
    option_keys = frozenset({"options", "fuse_qkv_projections", "ignores"})

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        for key in ("options", "quantize"):
            value = self.options.get(key)
            if value is not None and not isinstance(value, dict):
                raise OptionError(f"backend {self.name!r}: {key!r} must be a JSON object, got {value!r}")
        ignores = self.options.get("ignores", [])
        if not isinstance(ignores, list) or not all(isinstance(part, str) for part in ignores):
            raise OptionError(f"backend {self.name!r}: 'ignores' must be a list of component names, got {ignores!r}")

    def unavailable_reason(self, device: str) -> str | None:
        if _installed("onediffx") is None:
            return f"backend {self.name!r} needs onediffx, not installed: {self.install_hint}"
        if _installed("onediff") is None:
            return (
                f"backend {self.name!r}: onediffx {_installed('onediffx')} imports onediff without declaring "
                "it as a dependency, and it is not installed: pip install onediff"
            )
        return self._compiler_problem()

    def _compiler_problem(self) -> str | None:
        problem = oneflow_problem()
        return f"backend {self.name!r} compiles with OneFlow: {problem}" if problem else None

    def explain(self, message: str) -> str | None:
        return explain_failure(message)

    def lora_unsupported_reason(self, mode: str) -> str | None:
        return (
            f"backend {self.name!r}: onediffx compiles the modules it knows and has its own LoRA loader "
            "(onediffx.lora), not peft's adapter layers, which diffbench's LoRA cases load"
        )

    def apply(self, pipe: Any) -> Any:
        import onediffx

        ignores = list(self.options.get("ignores", []))
        for component in TOUCHED_COMPONENTS:
            if component not in ignores and getattr(pipe, component, None) is not None:
                own(pipe, component)
        if self.options.get("quantize"):
            # quantize_pipe pops keys from its kwargs: hand it a copy, never our options.
            pipe = onediffx.quantize_pipe(pipe, ignores=ignores, **copy.deepcopy(self.options["quantize"]))
        compile_options = self.options.get("options")
        # compile_pipe deletes "memory_format" from the options it gets: a copy, so every case sees them all.
        return onediffx.compile_pipe(
            pipe,
            backend=self.compiler,
            ignores=ignores,
            options=copy.deepcopy(compile_options) if compile_options is not None else None,
            fuse_qkv_projections=bool(self.options.get("fuse_qkv_projections", False)),
        )


@register
class NexfortBackend(OneDiffBackend):
    """The seeds' onediffx.compile_pipe(pipe, backend="nexfort", options=..., fuse_qkv_projections=True)."""

    name = "nexfort"
    summary = (
        "OneDiff nexfort compiler via onediffx.compile_pipe (needs torch 2.4.0: .ci/onediff-env); "
        "options: options (nexfort's, replaced whole), fuse_qkv_projections, quantize, ignores"
    )
    compiler = "nexfort"
    requires = ("onediffx", "onediff", "nexfort")
    install_hint = f"pip install onediffx onediff nexfort (with torch 2.4.0: `{ENV_SCRIPT}`)"
    # Mode jit on the CPU reproduces eager bit for bit (reports/onediff-cpu); the seeds' low-precision
    # modes on a GPU allow reduced-precision accumulation and are not measured yet, hence the margin.
    quality_floor = QualityFloor(ssim=0.95, psnr=30.0)
    option_keys = OneDiffBackend.option_keys | {"quantize"}
    default_options = {"options": SEED_NEXFORT_OPTIONS, "fuse_qkv_projections": True}

    @property
    def isolated(self) -> bool:
        # nexfort's quantized kernels check a license key when they first run and, without one, end
        # the interpreter ("Key is empty.", exit 1; seen on the CPU with int8): only a child survives that.
        return bool(self.options.get("quantize"))

    def _compiler_problem(self) -> str | None:
        if _installed("nexfort") is None:
            return f"backend {self.name!r} needs nexfort, not installed: {self.install_hint}"
        problem = nexfort_torch_problem()
        return f"backend {self.name!r}: {problem}" if problem else None

    def unsupported_reason(self, case, spec, device: str) -> str | None:
        quant_type = str((self.options.get("quantize") or {}).get("quant_type", ""))
        if not quant_type.startswith("fp8"):
            return None
        # Checked here, not left to nexfort: on the CPU its quantize_pipe fails with
        # "AssertionError: Device not support fp8 dtype!" after the pipeline was built for nothing.
        if not device.startswith("cuda"):
            return (
                "nexfort fp8 quantization needs an NVIDIA GPU of compute capability 8.9 or newer "
                f"(Ada, Hopper); this run is on {device}"
            )
        capability = torch.cuda.get_device_capability(device)
        if capability < FP8_MIN_CAPABILITY:
            return (
                f"nexfort fp8 quantization needs compute capability 8.9 or newer (Ada, Hopper); "
                f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}"
            )
        return None


@register
class NexfortFp8Backend(NexfortBackend):
    """The seeds' --quantize path: quantize_pipe(fp8_e4m3_e4m3_dynamic), then the nexfort compile."""

    name = "nexfort-fp8"
    matmul_dtype = "float8_e4m3fn"
    summary = "nexfort with fp8 dynamic quantization (quantize_pipe) first; lossy; runs in a child process"
    lossy = True
    # fp8 weights and activations: visibly different pixels, same picture. A guess until a GPU run
    # with a license key measures it.
    quality_floor = QualityFloor(ssim=0.80, psnr=20.0)
    default_options = {**NexfortBackend.default_options, "quantize": FP8_QUANTIZE}

    @property
    def isolated(self) -> bool:
        return True


@register
class OneflowBackend(OneDiffBackend):
    """onediffx.compile_pipe with its default compiler, OneFlow (the seeds' --compiler oneflow)."""

    name = "oneflow"
    summary = "OneDiff OneFlow compiler via onediffx.compile_pipe (needs a real OneFlow build, not PyPI's)"
    install_hint = f"pip install onediffx onediff, then {ONEFLOW_INSTALL}"
    quality_floor = QualityFloor(ssim=0.95, psnr=30.0)
