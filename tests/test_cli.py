"""The `diffbench` command's own output: help, the models' columns, backends that need CUDA, the extras
installed, and no third-party noise in front of it all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffbench.cli import main
from diffbench.models.catalog import MODELS

SCRIPT = Path(sys.executable).parent / "diffbench"


def diffbench(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_help_describes_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    description = " ".join(capsys.readouterr().out.split("positional arguments")[0].split())
    for word in ("pytest benchmarks/", "models, backends, env", "(table)", "(compare:", "(report)", "(merge)"):
        assert word in description, description


def test_models_line_up_in_columns(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MODELS) and any(line.startswith("realvisxl-lightning-5step ") for line in lines)
    for marker in (" steps=", " sizes="):
        assert len({line.index(marker) for line in lines}) == 1, lines


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without CUDA is told")
def test_backends_that_need_cuda_say_so_without_third_party_noise():
    result = diffbench("backends")
    assert "Failed to load" not in result.stderr and "_pytree" not in result.stderr, result.stderr
    status = {
        line.split()[0]: line.split(None, 1)[1] for line in result.stdout.splitlines() if not line.startswith(" ")
    }
    assert status["eager"] == "available" and status["int8"] == "available"
    assert status["compile-cudagraphs"] == (
        "needs CUDA (none here): compile mode 'reduce-overhead' uses CUDA graphs and needs a CUDA device"
    )
    assert status["offload"].startswith("needs CUDA (none here): ") and status["fp8"].startswith("needs CUDA")
    assert "skips every model" not in result.stdout


def test_env_lists_the_extras_and_their_packages():
    result = diffbench("env")
    stack = json.loads(result.stdout[: result.stdout.index("\n}\n") + 2])
    assert "Failed to load" not in result.stderr
    extras = stack["extras"]
    assert set(extras["lora"]) == {"peft"} and set(extras["sde"]) == {"torchsde"}
    assert set(extras["sd3"]) == {"sentencepiece", "protobuf"} and set(extras["nexfort"]) >= {"onediffx", "nexfort"}
    from importlib.metadata import PackageNotFoundError, version

    for name in ("peft", "torchsde", "sentencepiece"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        extra = next(packages for packages in extras.values() if name in packages)
        assert extra[name] == installed
