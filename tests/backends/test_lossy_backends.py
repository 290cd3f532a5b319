"""Lossy backends on tiny CPU models: torchao int8/fp8, DeepCache and diffusers' cache hooks."""

import importlib.metadata
import json
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import RecordingBenchmark, make_session

from diffbench.backends.base import get_backend_class
from diffbench.backends.torchao_quant import TORCHAO_INDUCTOR_OPTIONS, quantized_linear_count
from diffbench.case import Case, Resolution
from diffbench.config.matrix import expand_matrix
from diffbench.errors import OptionError, UnavailableError
from diffbench.measure.stages import denoiser_name
from diffbench.models.catalog import MODELS
from diffbench.models.pipelines import shallow_copy

LOSSY = ("int8", "fp8", "int8-compile", "fp8-compile", "deepcache", "pab", "taylorseer", "magcache")
# One call per case: what is asserted is what the backend did, not how fast it was.
FAST = {"tasks": "t2i", "resolutions": "64", "rounds": 1, "prompts": 1}
# TaylorSeer's defaults match no UNet module; these patterns do (the example its skip reason gives).
UNET_TAYLORSEER = {
    "cache_identifiers": [r"(down|up)_blocks\..*attn1"],
    "disable_cache_before_step": 1,
    "cache_interval": 2,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are overhead-bound: intra-op threads only add synchronization, which on a busy
    2-core machine made each call 20 times slower (2.6 s against 0.1 s for tiny SDXL)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def case_for(model: str, backend: str) -> Case:
    return Case(model, "t2i", Resolution(64, 64), backend)


def keep_applied(backend, applied: dict, counters: dict):
    """Wrap an instance's apply: keep the pipeline it returns and count calls of chosen modules of it."""
    original, calls = backend.apply, applied["calls"][backend.name]

    def apply(pipe):
        pipe = original(pipe)
        applied[backend.name] = pipe
        chosen = counters[backend.name](pipe) if backend.name in counters else {}
        for label, module in chosen.items():  # modules of the backend's private copy only
            module.register_forward_pre_hook(lambda *_, label=label: calls.update([label]))
        return pipe

    return apply


def state_checksum(module) -> float:
    return float(sum(t.double().sum() for t in module.state_dict().values()))


def run_lossy_matrix(session, counters, eager_again=True):
    """Eager, each other backend, then eager again; returns records, applied pipes, images and the base."""
    applied: dict = {"calls": {name: Counter() for name in session.backends}}
    eager, *others = expand_matrix(session.settings)
    with pytest.MonkeyPatch.context() as patch:
        for case in others:
            backend = session.backends[case.backend]
            patch.setattr(backend, "apply", keep_applied(backend, applied, counters))
        records = {"eager": session.run(eager, RecordingBenchmark())}
        before = [image.copy() for image in session.references[eager.reference_key].images]
        base = session.cache.task_pipeline(session.cache._loaded, MODELS[eager.model], "t2i")
        denoiser = getattr(base, denoiser_name(base))
        checksum = state_checksum(denoiser)
        records.update({case.backend: session.run(case, RecordingBenchmark()) for case in others})
        if eager_again:
            session.run(eager, RecordingBenchmark())
    after = session.references[eager.reference_key].images
    return {
        "records": records,
        "applied": applied,
        "before": before,
        "after": after,
        "base": base,
        "denoiser": denoiser,
        "checksum": checksum,
        "session": session,
    }


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory):
    session = make_session(
        tmp_path_factory.mktemp("sdxl"),
        backends="eager,int8,deepcache,pab,taylorseer",
        backend_config=[f"taylorseer={json.dumps(UNET_TAYLORSEER)}"],
        steps=3,
        warmups=0,
        **FAST,
    )
    counters = {"deepcache": lambda pipe: {"unet": pipe.unet, "mid": pipe.unet.mid_block.resnets[0]}}
    inductor_before = torch._inductor.config.coordinate_descent_tuning
    run = run_lossy_matrix(session, counters)
    run["inductor_untouched"] = torch._inductor.config.coordinate_descent_tuning == inductor_before
    return run


@pytest.fixture(scope="module")
def sd3_run(tmp_path_factory):
    # Two generations per case (warmup and round): the hooks' state must start afresh in each.
    session = make_session(
        tmp_path_factory.mktemp("sd3"),
        models="tiny-sd3",
        backends="eager,pab,taylorseer,magcache",
        steps=6,
        warmups=1,
        max_warmups=1,
        **FAST,
    )

    def attention(pipe):
        block = pipe.transformer.transformer_blocks[0]
        return {"steps": pipe.transformer, "attention": block.attn.to_q, "block": block.norm1}

    # Eager's bit-identity after other cases is the SDXL run's test; here the hooks must stay off the cache.
    return run_lossy_matrix(
        session, {"pab": attention, "taylorseer": attention, "magcache": attention}, eager_again=False
    )


def test_every_lossy_backend_builds_without_options_and_is_marked_lossy():
    eager_floor = get_backend_class("eager").quality_floor
    for name in LOSSY:
        backend = get_backend_class(name)()
        assert backend.lossy and backend.summary
        assert backend.options == json.loads(json.dumps(type(backend).default_options))  # JSON, as the CLI shows it
        assert backend.quality_floor.ssim < eager_floor.ssim and backend.quality_floor.psnr < eager_floor.psnr
    assert get_backend_class("int8-compile").config_family == "compile"


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("int8", {"bits": 4}, "has no option bits; valid: exclude, min_features, quantize"),
        ("int8", {"quantize": ["unet"]}, "one or more of: denoiser, text_encoder, text_encoder_2, text_encoder_3"),
        ("int8", {"exclude": ["("]}, "is not a regular expression"),
        ("fp8", {"granularity": "channel"}, "is not one of: auto, row, tensor"),
        ("int8-compile", {"mode": "fast"}, "compile mode 'fast' is not one of"),
        ("deepcache", {"interval": 3}, "valid: cache_block_id, cache_interval, cache_layer_id"),
        ("deepcache", {"cache_layer_id": 3}, "cache_layer_id=3: give a whole number 0..2"),
        ("pab", {"spatial_attention_block_skip_range": None}, "both null would skip nothing"),
        ("taylorseer", {"taylor_factors_dtype": "fp8"}, "is not one of: bfloat16, float16, float32"),
        ("magcache", {"mag_ratios": "sd3"}, 'give "flux", "calibrate" or a list of numbers'),
    ],
)
def test_bad_options_name_the_valid_ones(name, options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_backend_class(name)(options)


def test_a_missing_package_is_named_with_its_install_command(monkeypatch):
    # Imported before the patch: importing them under it makes transformers read torchao's version as
    # "unknown" and fail (the test then depended on an earlier test having imported them).
    importlib.import_module("diffusers.hooks")
    real_version = importlib.metadata.version

    def version(distribution):
        if distribution in ("torchao", "DeepCache"):
            raise importlib.metadata.PackageNotFoundError(distribution)
        return real_version(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)
    for name in ("int8", "fp8", "int8-compile", "fp8-compile"):
        assert get_backend_class(name)().unavailable_reason("cpu") == (
            f"backend {name!r} needs the package 'torchao', not installed: pip install 'diffbench[torchao]'"
        )
    assert "pip install 'diffbench[deepcache]'" in get_backend_class("deepcache")().unavailable_reason("cpu")
    assert get_backend_class("pab")().unavailable_reason("cpu") is None  # diffusers' own hooks


def test_fp8_needs_a_gpu_of_compute_capability_8_9(monkeypatch):
    case, spec = case_for("tiny-sdxl", "fp8"), MODELS["tiny-sdxl"]
    need = "fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); "
    for name in ("fp8", "fp8-compile"):
        assert get_backend_class(name)().unsupported_reason(case, spec, "cpu") == need + "device is cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_backend_class("fp8")().unsupported_reason(case, spec, "cuda").startswith(need + "torch ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, reason in (((8, 0), need + "this one is 8.0"), ((8, 9), None), ((9, 0), None)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert get_backend_class("fp8")().unsupported_reason(case, spec, "cuda:0") == reason
    assert get_backend_class("int8")().unsupported_reason(case, spec, "cpu") is None  # int8 runs on the CPU


def test_fp8_scales_are_row_wise_for_bfloat16_and_per_tensor_otherwise():
    assert get_backend_class("fp8")().granularity("unet", torch.bfloat16) == "row"
    assert get_backend_class("fp8")().granularity("unet", torch.float16) == "tensor"
    with pytest.raises(UnavailableError, match="this unet is float16: run with --dtype bfloat16"):
        get_backend_class("fp8")({"granularity": "row"}).granularity("unet", torch.float16)


def test_caches_say_which_denoisers_they_support():
    def reason(name, model, options=None):
        return get_backend_class(name)(options).unsupported_reason(case_for(model, name), MODELS[model], "cpu")

    assert reason("deepcache", "tiny-sd3") == (
        "deepcache supports UNet pipelines only (SDXL, instruct-pix2pix); tiny-sd3 has a transformer denoiser"
    )
    assert reason("deepcache", "tiny-ip2p") is None and reason("pab", "tiny-sdxl") is None
    assert reason("magcache", "tiny-sdxl").startswith(
        "magcache on tiny-sdxl's UNet: MagCache skips the blocks of a transformer's transformer_blocks list"
    )
    assert "match no UNet module" in reason("taylorseer", "tiny-sdxl")
    assert reason("taylorseer", "tiny-sdxl", {"cache_identifiers": [r"(down|up)_blocks\..*attn1"]}) is None
    assert all(reason(name, "tiny-sd3") is None for name in ("pab", "taylorseer", "magcache"))


def test_quantized_compile_gives_torchao_inductor_options_to_its_own_compile_only():
    kwargs = get_backend_class("int8-compile")().compile_kwargs()
    assert "mode" not in kwargs and kwargs["options"] == TORCHAO_INDUCTOR_OPTIONS
    assert get_backend_class("fp8-compile")({"mode": "max-autotune"}).compile_kwargs()["mode"] == "max-autotune"
    assert "options" not in get_backend_class("int8-compile")({"inductor_tuning": False}).compile_kwargs()
    assert "options" not in get_backend_class("int8-compile")({"backend": "eager"}).compile_kwargs()
    session_options = make_session_options(compiler_config=json.dumps({"backend": "aot_eager"}))
    assert session_options["int8-compile"]["backend"] == "aot_eager"  # --compiler-config reaches the family


def make_session_options(**raw):
    from diffbench.config.matrix import build_settings

    return build_settings({"models": "tiny-sdxl", "backends": "compile,int8-compile", **raw}).backend_options


def test_int8_quantizes_a_private_copy_and_is_lossy_within_its_floor(sdxl_run):
    record = sdxl_run["records"]["int8"]
    assert record["status"] == "ok" and record["backend_options"]["quantize"] == ["denoiser"]
    assert 0.8 <= record["ssim"] < 1.0  # lossy: differs from eager, within the floor
    quantized, total = quantized_linear_count(sdxl_run["applied"]["int8"].unet)
    assert quantized == total > 0
    assert quantized_linear_count(sdxl_run["denoiser"]) == (0, total)  # the cached UNet keeps float weights
    assert sdxl_run["inductor_untouched"]  # torchao's inductor settings did not leak into the process


def test_deepcache_runs_the_deep_unet_branch_only_every_third_step(sdxl_run):
    record = sdxl_run["records"]["deepcache"]
    assert record["status"] == "ok" and record["backend_options"] == {
        "cache_interval": 3,
        "cache_layer_id": 0,
        "cache_block_id": 0,
    }
    assert record["ssim"] < 1.0
    # 3 steps, one UNet call each (CFG is batched); the mid block ran at step 0 only, then came from the cache.
    assert sdxl_run["applied"]["calls"]["deepcache"] == Counter({"unet": 3, "mid": 1})
    assert not hasattr(sdxl_run["applied"]["deepcache"], "_diffbench_deepcache")  # restore dropped the cache


def test_pab_and_taylorseer_with_unet_patterns_work_on_the_sdxl_unet(sdxl_run):
    for name in ("pab", "taylorseer"):
        assert sdxl_run["records"][name]["status"] == "ok" and sdxl_run["records"][name]["ssim"] < 1.0, name


def test_eager_is_bit_identical_and_the_cached_unet_untouched_after_lossy_cases(sdxl_run):
    assert all(np.array_equal(b, a) for b, a in zip(sdxl_run["before"], sdxl_run["after"], strict=True))
    unet = sdxl_run["denoiser"]
    assert sdxl_run["base"].unet is unet and state_checksum(unet) == sdxl_run["checksum"]
    assert not unet._forward_pre_hooks
    for module in unet.modules():  # DeepCache wraps forwards and diffusers hooks live on the modules
        assert "forward" not in vars(module) and not hasattr(module, "_diffusers_hook")
    assert sdxl_run["session"].cache.loads == 1


def test_int8_compile_quantizes_inside_the_lazy_compiled_wrapper(sdxl_run):
    base = sdxl_run["base"]
    pipe = get_backend_class("int8-compile")({"backend": "eager"}).apply(shallow_copy(base))
    assert type(pipe.unet).__name__ == "OptimizedModule" and pipe.unet._orig_mod is not base.unet
    assert quantized_linear_count(pipe.unet._orig_mod)[0] > 0 and quantized_linear_count(base.unet)[0] == 0
    torch._dynamo.reset()


def test_sd3_cache_hooks_skip_work_in_every_generation(sd3_run):
    records, calls = sd3_run["records"], sd3_run["applied"]["calls"]
    for name in ("pab", "taylorseer", "magcache"):
        assert records[name]["status"] == "ok", records[name]["message"]
        assert records[name]["ssim"] < 1.0, name
        assert calls[name]["steps"] == 12, name  # 6 steps, 2 generations
    # Per generation of 6 steps: PAB reuses the attention at step 3 (timestep 668, inside 100..800, odd
    # iteration); TaylorSeer predicts steps 3 and 5; MagCache skips whole steps.
    assert calls["pab"]["attention"] == 2 * 5
    assert calls["taylorseer"]["attention"] == 2 * 4
    assert calls["magcache"]["block"] < 12 and calls["magcache"]["block"] % 2 == 0
    transformer = sd3_run["denoiser"]
    assert state_checksum(transformer) == sd3_run["checksum"]
    assert not any(hasattr(module, "_diffusers_hook") for module in transformer.modules())


@pytest.mark.slow
def test_int8_compile_runs_and_passes_its_floor(tmp_path):
    """torch.compile's graph capture over torchao's int8 tensors (dynamo's eager backend: inductor on the
    CPU takes minutes for this tiny UNet)."""
    session = make_session(
        tmp_path,
        backends="eager,int8-compile",
        steps=3,
        warmups=1,
        compiler_config=json.dumps({"backend": "eager", "components": ["denoiser"]}),
        **FAST,
    )
    eager, compiled = expand_matrix(session.settings)
    session.run(eager, RecordingBenchmark())
    record = session.run(compiled, RecordingBenchmark())
    assert record["status"] == "ok" and record["ssim"] < 1.0
    assert record["backend_options"]["backend"] == "eager"
