"""LoRA cases on tiny-sdxl: unfused and fused against eager with the same adapter, the cached model restored bit
for bit, and `--lora-switch` on a compiled pipeline with what torch and diffusers really do."""

import pytest
import torch
from helpers import RecordingBenchmark, make_session
from test_cli_pytest import run_pytest

from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError
from diffbench.measure.quality import compare
from diffbench.models.catalog import MODELS
from diffbench.models.lora import lora_layer_count, random_lora_state_dict
from diffbench.models.random_weights import build_random_pipeline

pytest.importorskip("peft")

EAGER_DYNAMO = '{"backend": "eager"}'
FAST = {"tasks": "t2i", "resolutions": "64", "steps": 2, "prompts": 1, "rounds": 1, "compiler_config": EAGER_DYNAMO}
SWITCH_FIELDS = {
    "scenario",
    "mode",
    "hotswap",
    "switch_s",
    "graphs_compiled",
    "recompile_limit_hits",
    "next_call_s",
    "e2e_s",
    "ssim_min",
    "psnr_min",
    "matches_eager",
}


def cached_weights(session):
    """The cached tiny-sdxl's tensors (built here first, so the cases reuse this very pipeline)."""
    settings = session.settings
    loaded = session.cache.get(MODELS["tiny-sdxl"], "tiny", torch.float32, "cpu", settings.variant)
    return loaded.pipe, {
        f"{name}.{key}": value.clone()
        for name, module in loaded.pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }


def assert_unchanged(pipe, before):
    after = {
        f"{name}.{key}": value
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert lora_layer_count(pipe.unet) == 0 and not {"peft_config", "_prepare_lora_hotswap_kwargs"} & set(
        vars(pipe.unet)
    )


def test_unfused_and_fused_cases_match_eager_with_the_same_adapter_and_leave_the_cached_model_as_it_was(tmp_path):
    session = make_session(tmp_path, backends="eager,compile", lora="random:4", **FAST)
    pipe, before = cached_weights(session)
    cases = expand_matrix(session.settings)
    assert [case.id for case in cases] == [
        "tiny-sdxl-t2i-64-lora-r4-unfused-eager",
        "tiny-sdxl-t2i-64-lora-r4-unfused-compile",
        "tiny-sdxl-t2i-64-lora-r4-fused-eager",
        "tiny-sdxl-t2i-64-lora-r4-fused-compile",
    ]
    records = [session.run(case, RecordingBenchmark()) for case in cases]
    assert all(r["status"] == "ok" and r["lora"] == "random:4" and r["lora_layers"] == 64 for r in records)
    assert [r["lora_mode"] for r in records] == ["unfused", "unfused", "fused", "fused"]
    assert all(r["lora_load_s"] > 0 and r["lora_memory_gib"] is None for r in records)  # no allocator on the CPU
    assert [r.get("lora_fuse_s") is not None for r in records] == [False, False, True, True]
    assert records[1]["ssim"] >= 0.98 and records[3]["ssim"] >= 0.98  # compile vs eager of its own adapter state
    unfused, fused = (session.references[case.reference_key].images[0] for case in (cases[0], cases[2]))
    assert compare(unfused, fused)[1] > 50  # fused and unfused: the same image up to rounding
    assert "lora_switch" not in records[1]  # only with --lora-switch
    assert_unchanged(pipe, before)
    assert session.cache.loads == 1


def test_an_adapter_changes_the_eager_image_of_a_case():
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5)
    pipe.set_progress_bar_config(disable=True)

    def image():
        generator = torch.Generator("cpu").manual_seed(1)
        return pipe(
            prompt="a cat", num_inference_steps=2, height=64, width=64, generator=generator, output_type="np"
        ).images[0]

    original = image()
    pipe.load_lora_weights(random_lora_state_dict(pipe.unet, 4, 0, "unet"), adapter_name="a")
    assert compare(original, image())[1] < 60


@pytest.mark.slow  # three compiled cases, three switches each: about two minutes on 2 CPU cores
def test_switching_a_compiled_lora_recompiles_except_a_hotswap_and_matches_eager_after_every_switch(tmp_path):
    """What torch 2.13 and diffusers 0.42.1 do (dynamo's graph counter on the call after each switch):
    unfused, swapping (a new adapter is new peft layers), scaling (set_adapters writes the scale as a Python
    float, a constant in the graph) and unloading all recompile; fused, the scale lives in the weights, so
    refusing at another scale does not recompile, while the swap and the unload change the layers and do;
    with hot-swap the swap copies weights into the same layers and does not recompile, but set_adapters
    still replaces the scale tensor hot-swap made with a float, and unloading removes the layers."""
    torch._dynamo.reset()
    fast = {**FAST, "compiler_config": '{"backend": "eager", "components": ["denoiser"]}'}  # the LoRA is the UNet's
    session = make_session(tmp_path, backends="compile", lora="random:4", lora_switch=True, **fast)
    assert session.settings.lora_modes == ("unfused", "fused", "hotswap")  # --lora-switch adds hot-swap
    pipe, before = cached_weights(session)
    records = {case.lora_mode: session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings)}
    for mode, record in records.items():
        assert record["status"] == "ok", record["message"]
        switches = record["lora_switch"]
        assert [s["scenario"] for s in switches] == ["swap", "scale", "unload"]
        assert all(
            SWITCH_FIELDS <= set(s) and s["mode"] == mode and s["hotswap"] == (mode == "hotswap") for s in switches
        )
        assert all(s["matches_eager"] and s["psnr_min"] > 60 and s["recompile_limit_hits"] == 0 for s in switches), (
            switches
        )
        assert all(s["switch_s"] > 0 and s["next_call_s"] > 0 and s["e2e_s"] > 0 for s in switches)
    graphs = {mode: [s["graphs_compiled"] for s in record["lora_switch"]] for mode, record in records.items()}
    assert graphs == {"unfused": [1, 1, 1], "fused": [1, 0, 1], "hotswap": [0, 1, 1]}
    assert_unchanged(pipe, before)


def test_diffusers_pipeline_level_lora_calls_skip_a_compiled_unet():
    """Why the switches run on an uncompiled view of the pipeline: diffusers 0.42.1's set_adapters,
    delete_adapters and unload_lora_weights check `issubclass(model.__class__, ModelMixin)`, which
    torch.compile's wrapper is not: set_adapters fails, unload_lora_weights leaves the adapter in place."""
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5)
    pipe.load_lora_weights(random_lora_state_dict(pipe.unet, 2, 0, "unet"), adapter_name="a")
    pipe.unet = torch.compile(pipe.unet, backend="eager")  # lazy: nothing compiles here
    with pytest.raises(ValueError, match="not in the list of present adapters"):
        pipe.set_adapters(["a"], adapter_weights=[0.5])
    pipe.unload_lora_weights()
    assert lora_layer_count(pipe.unet._orig_mod) > 0


def test_backends_that_cannot_carry_a_lora_skip_with_the_reason(tmp_path):
    session = make_session(
        tmp_path,
        backends="int8,fastest,compile",
        lora="random:4",
        backend_config=['compile={"fuse_qkv_projections": true}'],
        **FAST,
    )
    spec = MODELS["tiny-sdxl"]
    reasons = {case.backend: session.skip_reason(case, spec) for case in expand_matrix(session.settings)}
    assert "LoRA adapter's own lora_A/lora_B" in reasons["int8"]
    assert "fuses to_q/to_k/to_v" in reasons["compile"]
    assert reasons["fastest"]  # a CUDA-only recipe that also fuses QKV


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"lora": "random:4", "lora_modes": "unfused,melted"},
            "unknown LoRA mode 'melted'; valid LoRA modes: unfused, fused, hotswap",
        ),
        ({"lora_modes": "fused"}, "--lora-modes needs --lora"),
        ({"lora_switch": True}, "--lora-switch needs --lora"),
        ({"lora": "random:-2"}, "positive rank"),
        (
            {"lora": "random:4", "lora_switch": "swap,melt"},
            "unknown --lora-switch scenario 'melt'; valid --lora-switch scenarios: swap, scale, unload",
        ),
    ],
)
def test_bad_lora_options_are_usage_errors(raw, message):
    with pytest.raises(OptionError, match=message):
        build_settings({"models": "tiny-sdxl", **raw})


@pytest.mark.parametrize(
    "given, chosen", [(True, ("swap", "scale", "unload")), ("unload,swap", ("unload", "swap")), (None, ())]
)
def test_lora_switch_takes_the_scenarios_to_run_in_order(given, chosen):
    settings = build_settings({"models": "tiny-sdxl", "lora": "random:4", "lora_switch": given})
    assert settings.lora_switch == chosen
    assert ("hotswap" in settings.lora_modes) == bool(chosen)


def test_an_interrupted_switch_keeps_the_finished_ones_and_records_the_one_under_way(monkeypatch):
    """Ctrl-C or a time limit's SIGTERM during the call after a switch (a recompile can take minutes on a
    GPU): the switches before it stay in the results, the one under way is appended as interrupted, and
    the interrupt goes on up (the run stops)."""
    from types import SimpleNamespace

    import numpy as np

    from diffbench.measure.quality import QualityFloor
    from diffbench.run import lora_switch

    done = []
    monkeypatch.setattr(
        lora_switch,
        "operations",
        lambda view, adapter: {name: (lambda name=name: done.append(name)) for name in ("swap", "scale", "unload")},
    )
    image = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)

    def call():
        if done[-1] == "scale":
            raise KeyboardInterrupt  # as interrupt.Terminated is, from SIGTERM
        return image

    results = []
    adapter = SimpleNamespace(mode="unfused")
    with pytest.raises(KeyboardInterrupt):
        lora_switch.measure_switching(None, adapter, call, lambda: image, 2, "cpu", QualityFloor(0.99, 30.0), results)
    assert done == ["swap", "scale"]  # unload never ran
    assert [r["scenario"] for r in results] == ["swap", "scale"]
    assert results[0]["matches_eager"] and len(results[0]["e2e_rounds_s"]) == 2 and "interrupted" not in results[0]
    assert results[1]["interrupted"] and results[1]["elapsed_s"] >= 0 and "graphs_compiled" not in results[1]


def test_lora_cases_are_selected_with_k_lora_and_bad_values_are_usage_errors_on_the_command_line():
    common = ("--models", "tiny-sdxl", "--tasks", "t2i", "--backends", "eager,compile", "--lora", "random:8")
    result = run_pytest("--collect-only", "-q", *common, "-k", "lora and fused and not unfused and compile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split("[")[1].rstrip("]") for line in result.stdout.splitlines() if "::" in line] == [
        "tiny-sdxl-t2i-128-lora-r8-fused-compile"
    ]
    for bad, message in (
        (("--lora", "random:zero"), "--lora 'random:zero': write random:RANK"),
        ((*common, "--lora-modes", "fused,melted"), "unknown LoRA mode 'melted'"),
    ):
        result = run_pytest("--collect-only", *bad)
        assert result.returncode == 4 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_report_shows_the_switching_table_of_a_lora_case(tmp_path):
    from diffbench.report.document import to_markdown
    from diffbench.report.groups import group_key
    from diffbench.report.lora import lora_blocks

    switch = {
        "scenario": "swap",
        "hotswap": True,
        "switch_s": 0.121,
        "graphs_compiled": 0,
        "recompile_limit_hits": 0,
        "next_call_s": 0.46,
        "e2e_s": 0.332,
        "ssim_min": 1.0,
        "psnr_min": 100.0,
        "matches_eager": True,
    }
    record = {
        "case": "sdxl-t2i-1024-lora-r64-hotswap-compile",
        "model": "sdxl",
        "task": "t2i",
        "resolution": "1024x1024",
        "lora": "random:64",
        "lora_mode": "hotswap",
        "lora_load_s": 0.3,
        "lora_layers": 700,
        "lora_switch": [switch],
    }
    text = to_markdown(lora_blocks("compile", record))
    assert "compile: LoRA switching (random:64, hotswap)" in text and "on 700 layers" in text
    assert "| swap | yes | 0.121 | 0 | - | 0.46 | 0.332 | 1.0000 | 100.0 | yes |" in text
    assert group_key(record) == ("sdxl", "t2i", "1024x1024 lora random:64 hotswap")
    record["lora_switch"].append({"scenario": "unload", "hotswap": True, "interrupted": True, "elapsed_s": 97.04})
    text = to_markdown(lora_blocks("compile", record))
    assert "| unload | yes | interrupted after 97.0 s | - | - | - | - | - | - | - |" in text
