"""Per-backend options (--compiler-config, --backend-config), named variants and recipes."""

import pytest

from diffbench.backends.base import get_backend_class
from diffbench.case import Case, Resolution
from diffbench.config.matrix import build_settings
from diffbench.errors import OptionError
from diffbench.models.catalog import MODELS

SDXL_CASE = Case("sdxl", "t2i", Resolution(1024, 1024), "compile")


@pytest.mark.parametrize(
    "name, mode",
    [
        ("compile", "default"),
        ("compile-cudagraphs", "reduce-overhead"),
        ("compile-max-autotune", "max-autotune"),
        ("compile-max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs"),
        ("fastest", "reduce-overhead"),
    ],
)
def test_variants_pass_their_mode_to_torch_compile(name, mode):
    backend = get_backend_class(name)()
    assert backend.compile_kwargs() == {"fullgraph": False, "dynamic": None, "backend": "inductor", "mode": mode}


@pytest.mark.parametrize(
    "name", ["compile-cudagraphs", "compile-max-autotune", "compile-max-autotune-no-cudagraphs", "fastest"]
)
def test_gpu_only_variants_skip_on_the_cpu_with_the_reason(name):
    backend = get_backend_class(name)()
    reason = backend.unsupported_reason(SDXL_CASE, MODELS["sdxl"], "cpu")
    assert reason and reason.endswith("needs a CUDA device")
    assert backend.unsupported_reason(SDXL_CASE, MODELS["sdxl"], "cuda") is None


def test_fastest_recipe_options():
    assert get_backend_class("fastest")().options == {
        "mode": "reduce-overhead",
        "fuse_qkv_projections": True,
        "memory_format": "channels_last",
    }


def test_compiler_config_reaches_the_compile_family_but_not_recipes():
    settings = build_settings(
        {"backends": "eager,compile,compile-max-autotune,fastest", "compiler_config": '{"fullgraph": true}'}
    )
    assert settings.backend_options == {"compile": {"fullgraph": True}, "compile-max-autotune": {"fullgraph": True}}


def test_backend_config_merges_over_the_compiler_config_and_the_defaults():
    settings = build_settings(
        {
            "backends": "compile,fastest,vae-tiling",
            "compiler_config": '{"fullgraph": true}',
            "backend_config": [
                'compile={"dynamic": true}',
                'fastest={"mode": "default"}',
                'vae-tiling={"slicing": false}',
            ],
        }
    )
    assert settings.backend_options["compile"] == {"fullgraph": True, "dynamic": True}
    fastest = get_backend_class("fastest")(settings.backend_options["fastest"])
    assert fastest.options["mode"] == "default" and fastest.options["fuse_qkv_projections"] is True
    assert get_backend_class("vae-tiling")(settings.backend_options["vae-tiling"]).options == {
        "tiling": True,
        "slicing": False,
    }


@pytest.mark.parametrize(
    "configs, message",
    [
        (["compile"], "--backend-config 'compile': write NAME=JSON"),
        (['nosuch={"a": 1}'], "unknown backend 'nosuch'"),
        (["compile={mode}"], "--backend-config compile is not valid JSON"),
        (["compile=[1]"], "--backend-config compile must be a JSON object"),
        (['vae-tiling={"tile": 1}'], "backend 'vae-tiling' has no option tile; valid: slicing, tiling"),
        (['compile={"mode": "fast"}'], "compile mode 'fast' is not one of"),
    ],
)
def test_bad_backend_configs_are_usage_errors(configs, message):
    with pytest.raises(OptionError, match=message):
        build_settings({"backends": "compile,vae-tiling", "backend_config": configs})


def test_case_timeout_must_be_positive():
    with pytest.raises(OptionError, match="--case-timeout must be a positive number of seconds"):
        build_settings({"case_timeout": 0})
    assert build_settings({"isolate": True, "case_timeout": 5}).case_timeout_s == 5


def test_fastest_lossy_is_fp8_with_the_fastest_compile():
    backend = get_backend_class("fastest-lossy")()
    assert backend.lossy and backend.options["quantize"] == ["denoiser"]
    assert {
        key: backend.options[key] for key in ("mode", "fuse_qkv_projections", "memory_format")
    } == get_backend_class("fastest")().options
    assert backend.compile_kwargs()["mode"] == "reduce-overhead"
    reason = backend.unsupported_reason(SDXL_CASE, MODELS["sdxl"], "cpu")
    assert reason == "fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); device is cpu"
