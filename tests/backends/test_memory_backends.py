"""Memory savers on tiny CPU models: they run, their quality is checked, the cache is left intact."""

import pytest
from helpers import RecordingBenchmark, make_session

from diffbench.backends.base import get_backend_class
from diffbench.case import Case, Resolution
from diffbench.config.matrix import expand_matrix
from diffbench.models.catalog import MODELS


def run_case(session, backend, task="t2i"):
    case = next(c for c in expand_matrix(session.settings) if c.backend == backend and c.task == task)
    return session.run(case, RecordingBenchmark())


def test_sd3_without_t5_runs_changes_the_image_and_gives_the_encoder_back(tmp_path):
    session = make_session(tmp_path, models="tiny-sd3", backends="eager,sd3-no-t5,sd3-t5-int8")
    eager = run_case(session, "eager")
    loaded = session.cache.get(
        MODELS["tiny-sd3"], "tiny", session.settings.torch_dtype(MODELS["tiny-sd3"], "cpu"), "cpu", None
    )
    encoder = loaded.pipe.text_encoder_3
    dropped = run_case(session, "sd3-no-t5")
    assert dropped["status"] == "ok" and dropped["psnr"] < 60  # the conditioning changed, so did the image
    quantized = run_case(session, "sd3-t5-int8")
    assert quantized["status"] == "ok" and quantized["ssim"] >= 0.7
    assert loaded.pipe.text_encoder_3 is encoder and encoder.device.type == "cpu"  # back where it was
    assert type(encoder.encoder.block[0].layer[0].SelfAttention.q.weight).__name__ == "Parameter"  # not quantized
    assert session.cache.loads == 1 and eager["status"] == "ok"


def test_vae_tiling_is_private_to_its_case(tmp_path):
    session = make_session(tmp_path, backends="eager,vae-tiling")
    assert run_case(session, "eager")["status"] == "ok"
    record = run_case(session, "vae-tiling")
    assert record["status"] == "ok" and record["backend_options"] == {"tiling": True, "slicing": True}
    cached = session.cache.get(
        MODELS["tiny-sdxl"], "tiny", session.settings.torch_dtype(MODELS["tiny-sdxl"], "cpu"), "cpu", None
    ).pipe
    assert not cached.vae.use_tiling and not cached.vae.use_slicing


def test_memory_savers_say_where_they_do_not_apply():
    sdxl = MODELS["sdxl"]
    case = Case("sdxl", "t2i", Resolution(1024, 1024), "sd3-no-t5")
    for name in ("sd3-no-t5", "sd3-t5-int8"):
        reason = get_backend_class(name)().unsupported_reason(case, sdxl, "cuda")
        assert reason == f"{name} applies to Stable Diffusion 3 pipelines only; sdxl is of the sdxl family"
    assert get_backend_class("sd3-no-t5")().unsupported_reason(case, MODELS["sd35-large"], "cuda") is None
    offload = get_backend_class("offload")()
    assert "needs a CUDA device" in offload.unsupported_reason(case, sdxl, "cpu")
    assert offload.unsupported_reason(case, sdxl, "cuda:0") is None


class FakePipe:
    """Records what model offload does to a pipeline."""

    device = "cuda:0"

    def __init__(self):
        self.calls = []

    def enable_model_cpu_offload(self, device):
        self.calls.append(("offload", device))

    def remove_all_hooks(self):
        self.calls.append(("remove_all_hooks",))

    def to(self, device):
        self.calls.append(("to", device))


def test_offload_is_undone_after_the_case():
    backend = get_backend_class("offload")()
    pipe = FakePipe()
    assert backend.apply(pipe) is pipe
    backend.restore(pipe)
    assert pipe.calls == [("offload", "cuda:0"), ("remove_all_hooks",), ("to", "cuda:0")]


@pytest.mark.parametrize(
    "options, message", [({"tile": True}, "backend 'vae-tiling' has no option tile; valid: slicing, tiling")]
)
def test_memory_saver_options_are_validated(options, message):
    from diffbench.errors import OptionError

    with pytest.raises(OptionError, match=message):
        get_backend_class("vae-tiling")(options)
