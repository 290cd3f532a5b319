"""The software and hardware stack of a run, so histories from different stacks never mix silently."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
from typing import Any

import torch

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "pytest-benchmark",
    "scikit-image",
    # the backends' own packages: a stack difference a comparison must show
    "torchao",
    "DeepCache",
    "onediffx",
    "onediff",
    "nexfort",
    "oneflow",
)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def extras() -> dict[str, dict[str, str | None]] | None:
    """diffbench's extras (pyproject's optional dependencies), each package with its installed version (None:
    not installed); None when diffbench is not installed as a package, so its extras are unknown."""
    try:
        requirements = importlib.metadata.requires("diffbench") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found: dict[str, dict[str, str | None]] = {}
    for requirement in requirements:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra:
            package = re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]
            found.setdefault(extra.group(1), {})[package] = package_version(package)
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    return output.strip().splitlines()[0] if output.strip() else None


def stack_info() -> dict:
    """GPU, driver, CUDA and package versions: added to pytest-benchmark's machine info."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": None,
        "gpu_count": 0,
        "driver": None,
        "packages": {name: package_version(name) for name in PACKAGES},
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(
            gpu=properties.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(properties.total_memory / 1024**3, 1),
            compute_capability=f"{properties.major}.{properties.minor}",
            driver=nvidia_driver(),
        )
    return info


def git_commit() -> str | None:
    """The commit of the working tree benchmarks run from (short hash, `+dirty` if changed), or None."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return f"{commit}+dirty" if dirty else commit
