"""Values that must stop a run before any work (pytest exit 4, no traceback), and run.json's settings as JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffbench.config.matrix import build_settings
from diffbench.config.options import OPTIONS
from diffbench.errors import OptionError

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_usage_error(result: subprocess.CompletedProcess, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 4, output[-3000:]
    assert message in result.stderr, result.stderr
    assert "Traceback" not in output and "INTERNALERROR" not in output


def test_a_bad_option_of_a_backend_not_selected_is_a_usage_error():
    result = run_pytest("--collect-only", "--backends", "eager", "--backend-config", 'deepcache={"nosuch": 1}')
    assert_usage_error(result, "backend 'deepcache' has no option nosuch; valid: cache_block_id")


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA on a machine without it")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_asked_for_without_cuda_is_a_usage_error(device):
    result = run_pytest("--collect-only", "--models", "tiny-sdxl", "--device", device)
    assert_usage_error(result, f"--device {device}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu")


def test_a_too_small_count_names_the_flag_as_typed():
    result = run_pytest("--collect-only", "--max-warmups", "0")
    assert_usage_error(result, "--max-warmups must be at least 1, got 0")


@pytest.mark.parametrize(
    "flag", [option.flag for option in OPTIONS if option.type is int and option.flag != "--seed"]
)  # any seed goes
def test_every_count_option_names_its_flag(flag):
    with pytest.raises(OptionError) as error:
        build_settings({flag.lstrip("-").replace("-", "_"): -1, "models": "tiny-sdxl"})
    assert str(error.value).startswith(f"{flag} must be at least"), str(error.value)


def test_an_unwritable_results_dir_is_a_usage_error_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_pytest("-k", "tiny-sdxl-t2i-128-eager", "--results-dir", str(blocker / "runs"))
    assert_usage_error(result, f"--results-dir '{blocker / 'runs'}': {blocker} is a file, not a folder")
    result = run_pytest("-k", "tiny-sdxl-t2i-128-eager", "--results-dir", "/proc/nope")
    assert_usage_error(result, "--results-dir '/proc/nope' cannot be written here")
    assert not list(tmp_path.glob(".diffbench-probe-*")) and not Path("/proc/nope").exists()
