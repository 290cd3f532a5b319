"""compile-regional: torch.compile of each repeated block of the denoiser, on tiny CPU models."""

import pytest
import torch
from helpers import RecordingBenchmark, make_session

from diffbench.backends.base import get_backend_class
from diffbench.backends.regional import repeated_block_names
from diffbench.config.matrix import expand_matrix
from diffbench.errors import OptionError
from diffbench.measure.stages import denoiser_name
from diffbench.models.catalog import MODELS

FAST = {
    "tasks": "t2i",
    "resolutions": "64",
    "rounds": 1,
    "prompts": 1,
    "steps": 2,
    "warmups": 0,
    "compiler_config": '{"backend": "eager"}',
}


def compiled_blocks(model: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None}


def test_repeated_blocks_are_the_declared_ones_else_the_uniform_module_lists():
    class Block(torch.nn.Linear):
        pass

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(2, 2), Block(2, 2)])
            self.mixed = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.ReLU()])  # not one class
            self.single = torch.nn.ModuleList([torch.nn.Conv1d(1, 1, 1)])  # nothing repeats

    assert repeated_block_names(Model()) == ["Block"]
    declared = Model()
    declared._repeated_blocks = ["Linear"]
    assert repeated_block_names(declared) == ["Linear"]
    assert repeated_block_names(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


@pytest.mark.parametrize(
    "model, blocks", [("tiny-sdxl", {"BasicTransformerBlock"}), ("tiny-sd3", {"JointTransformerBlock"})]
)
def test_the_case_compiles_its_own_copy_blockwise_and_matches_eager(tmp_path, monkeypatch, model, blocks):
    session = make_session(tmp_path, models=model, backends="eager,compile-regional", **FAST)
    eager, regional = expand_matrix(session.settings)
    backend, applied = session.backends["compile-regional"], {}
    original_apply = backend.apply
    monkeypatch.setattr(backend, "apply", lambda pipe: applied.setdefault("pipe", original_apply(pipe)))
    session.run(eager, RecordingBenchmark())
    record = session.run(regional, RecordingBenchmark())
    assert record["status"] == "ok", record.get("message")
    pipe = applied["pipe"]
    denoiser = getattr(pipe, denoiser_name(pipe))
    assert compiled_blocks(denoiser) == blocks and not isinstance(denoiser, torch._dynamo.eval_frame.OptimizedModule)
    cached = session.cache.task_pipeline(session.cache._loaded, MODELS[regional.model], "t2i")
    assert compiled_blocks(getattr(cached, denoiser_name(cached))) == set()  # the cache's denoiser untouched
    # On the CPU the cached original is not parked (nothing to free), so eager still alternates with it.
    assert record["ssim"] >= 0.999 and record["pairing"] == "paired"


def test_options_that_change_weights_in_place_are_refused():
    cls = get_backend_class("compile-regional")
    for options in ({"fuse_qkv_projections": True}, {"memory_format": "channels_last"}):
        with pytest.raises(OptionError, match="has no option"):
            cls(options)
    assert cls({"mode": "max-autotune"}).compile_kwargs()["mode"] == "max-autotune"
