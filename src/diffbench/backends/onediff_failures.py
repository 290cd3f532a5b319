"""What the OneDiff stack's failures mean (nexfort, onediffx, oneflow) and what to do about each: the
explanations the onediff backends put in a failed case's record."""

from __future__ import annotations

import re

ENV_SCRIPT = "bash .ci/onediff-env"
ONEFLOW_INSTALL = (
    "pip install -U --pre oneflow -f https://github.com/siliconflow/oneflow_releases/releases/"
    "expanded_assets/community_cu121 (pick the CUDA of your driver; see onediff's README)"
)
LICENSE_VARIABLE = "SILICON_ONEDIFF_LICENSE_KEY"  # read by nexfort's native license check (nexfort/common)

JIT_CONFIG = '--backend-config \'nexfort={"options": {"mode": "jit", "dynamic": false}}\''
# Raw failure text of the OneDiff stack -> what happened and what to do; first match wins. Each was seen
# in reports/onediff-cpu (probe_nexfort_modes.py) or is quoted from the package's own source.
KNOWN_FAILURES: tuple[tuple[str, str], ...] = (
    (
        r"The torch version\(torch==([^)]+)\) of nexfort's compilation environment conflicts",
        "nexfort is a binary build for exactly torch {version}; install that torch in a separate environment "
        f"(`{ENV_SCRIPT}` makes one: .venv-onediff with torch==2.4.0) and run from there",
    ),
    (
        r"The triton version\(triton==([^)]+)\) of nexfort's compilation environment conflicts",
        "nexfort checks for exactly triton {version} (the one torch 2.4.0 installs): pip install triton=={version}",
    ),
    (
        r"No module named 'nexfort\.inductor\.codegen'",
        "the PyPI nexfort wheel (0.1.dev330) ships without nexfort.inductor.codegen, so every mode that lowers "
        "through inductor fails at the first call (the seeds' max-optimize:max-autotune:low-precision among them); "
        f"only modes with jit or disable-inductor run: {JIT_CONFIG}",
    ),
    (
        r"Key is empty",
        f"nexfort's quantized kernels check a OneDiff license key in {LICENSE_VARIABLE}, found none and ended the "
        "interpreter; set it to a key from SiliconFlow, or benchmark nexfort without `quantize` (it needs no key)",
    ),
    (
        r"No valid license key|License check failed|has expired|Key format error|Key version error|"
        r"cannot create std::vector larger than max_size",
        f"nexfort's quantized kernels rejected the license key in {LICENSE_VARIABLE} (a malformed key gives "
        "'cannot create std::vector larger than max_size()'); set a valid OneDiff key from SiliconFlow, or drop "
        "`quantize`",
    ),
    (
        r"This package is a placeholder",
        f"the PyPI oneflow is a placeholder that raises on import; install a real OneFlow: {ONEFLOW_INSTALL}",
    ),
    (
        r"No module named 'oneflow'",
        "onediffx's default compiler is OneFlow, which is not installed (PyPI has no real build): "
        f"{ONEFLOW_INSTALL}; or use the nexfort backend",
    ),
    (
        r"No module named 'onediff'",
        "onediffx imports onediff without declaring it as a dependency: pip install onediff",
    ),
    (r"No module named 'nexfort'", "onediffx's nexfort backend needs nexfort: pip install nexfort"),
    (
        r"SymIntArrayRef expected to contain only concrete integers",
        "nexfort's jit mode cannot trace shapes that dynamo made dynamic (the seeds' \"dynamic\": true, or "
        f'dynamo\'s own choice when unset); add "dynamic": false to the nexfort options: {JIT_CONFIG}',
    ),
    (
        r"Device not support fp8|compute capability|_scaled_mm|[Ff]loat8_e4m3",
        "fp8 quantization needs an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper); on older GPUs or "
        "the CPU use nexfort without `quantize`",
    ),
    (
        r"KeyError: torch\.float32",
        "nexfort's int8 quantization has no float32 path; run with --dtype float16 or --dtype bfloat16",
    ),
    (
        r"Only Tensors of floating point and complex dtype can require gradients",
        "diffusers' fuse_qkv_projections cannot fuse layers nexfort already quantized to int8; quantize with "
        '"fuse_qkv_projections": false',
    ),
    (
        r"Torch not compiled with CUDA enabled|Found no NVIDIA driver|CUDA driver initialization failed",
        'this nexfort path runs CUDA code and there is no usable CUDA GPU here; on the CPU use mode "jit"',
    ),
)


def explain_failure(message: str) -> str | None:
    """What a known OneDiff/nexfort failure message means and what to do about it; None if unknown."""
    for pattern, explanation in KNOWN_FAILURES:
        found = re.search(pattern, message)
        if found:
            return explanation.replace("{version}", found.group(1)) if found.groups() else explanation
    return None
