"""Skip reasons: precise, actionable, and recorded like any other outcome."""

import pytest
import torch
from helpers import RecordingBenchmark, make_session

from diffbench.backends.base import Backend, register
from diffbench.case import Case, Resolution
from diffbench.config.matrix import expand_matrix
from diffbench.errors import OptionError, UnavailableError
from diffbench.models.catalog import MODELS
from diffbench.models.weights import load_from_hub
from diffbench.results.records import read_results

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the reasons given on a machine without CUDA")


@register
class NeedsMissingPackage(Backend):
    name = "test-needs-package"
    requires = ("diffbench-no-such-package",)
    install_hint = "pip install 'diffbench[nosuch]'"


def case(model, backend="eager", task="t2i"):
    return Case(model, task, Resolution(1024, 1024), backend)


def test_full_size_model_without_gpu_is_skipped_and_recorded(tmp_path):
    session = make_session(tmp_path, models="sdxl")
    reason = session.skip_reason(case("sdxl"), MODELS["sdxl"])
    assert reason.startswith("no supported GPU: sdxl is a full-size model and needs a CUDA GPU")
    assert "tiny-* models run on the CPU" in reason
    with pytest.raises(pytest.skip.Exception, match="no supported GPU"):
        session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    (record,) = read_results(session.run_folder.results)
    assert record["status"] == "skipped" and record["message"].startswith("no supported GPU")


def test_tiny_model_and_explicit_cpu_are_not_skipped(tmp_path):
    assert make_session(tmp_path).skip_reason(case("tiny-sdxl"), MODELS["tiny-sdxl"]) is None
    forced = make_session(tmp_path, models="sdxl", device="cpu")
    assert forced.skip_reason(case("sdxl"), MODELS["sdxl"]) is None


def test_cuda_requested_without_cuda(tmp_path):
    with pytest.raises(OptionError, match="--device cuda: torch .* sees no CUDA GPU here; use --device cpu"):
        make_session(tmp_path, device="cuda")  # a usage error now (tests/config/test_usage_errors.py) ...
    session = make_session(tmp_path)
    session.device = "cuda"  # ... and the runner's own check stays as a fallback
    assert "--device cuda, but torch" in session.skip_reason(case("tiny-sdxl"), MODELS["tiny-sdxl"])


def test_backend_missing_package_names_it_and_the_install_command(tmp_path):
    session = make_session(tmp_path, backends="test-needs-package")
    reason = session.skip_reason(case("tiny-sdxl", "test-needs-package"), MODELS["tiny-sdxl"])
    assert reason == (
        "backend 'test-needs-package' needs the package 'diffbench-no-such-package', "
        "not installed: pip install 'diffbench[nosuch]'"
    )


def test_cuda_graphs_need_cuda(tmp_path):
    session = make_session(tmp_path, backends="compile", compile_mode="reduce-overhead")
    reason = session.skip_reason(case("tiny-sdxl", "compile"), MODELS["tiny-sdxl"])
    assert reason == "compile mode 'reduce-overhead' uses CUDA graphs and needs a CUDA device"


def test_hub_weights_absent_offline_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UnavailableError) as error:
        load_from_hub(MODELS["realvisxl"], torch.float16, None)
    message = str(error.value)
    assert "SG161222/RealVisXL_V4.0" in message and "HF_HUB_OFFLINE is set" in message
    assert "hf download SG161222/RealVisXL_V4.0" in message and "--weights random" in message
