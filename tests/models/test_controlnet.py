"""controlnet cases on tiny CPU models: they run and pass the quality gate, the ControlNet conditions the
image, its sources (random, a saved folder, a hub id offline) and the control image behave as documented."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import RecordingBenchmark, make_session
from PIL import Image

from diffbench.case import Resolution
from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError
from diffbench.models.catalog import MODELS
from diffbench.models.controlnet import build_random_controlnet, check_matches_unet, config_folder
from diffbench.models.inputs import canny_edges, control_image, default_input_image
from diffbench.models.pipelines import share_components
from diffbench.models.random_weights import build_random_pipeline

ROOT = Path(__file__).resolve().parents[2]
EAGER_DYNAMO = json.dumps({"backend": "eager"})  # torch.compile's graph capture without inductor: fast
FAST = {"tasks": "controlnet", "rounds": 1, "prompts": 1, "steps": 2, "resolutions": "64"}


def run_cases(session):
    return {case.id: session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings)}


def tiny_controlnet(seed=0):
    return build_random_controlnet(config_folder(MODELS["tiny-sdxl"], "tiny"), torch.float32, "cpu", seed=seed)


def test_controlnet_runs_eager_and_compiled_and_passes_the_quality_gate(tmp_path):
    session = make_session(tmp_path, **{**FAST, "prompts": 2}, backends="eager,compile", compiler_config=EAGER_DYNAMO)
    records = run_cases(session)
    assert list(records) == ["tiny-sdxl-controlnet-64-eager", "tiny-sdxl-controlnet-64-compile"]
    for record in records.values():
        assert record["status"] == "ok" and record["task"] == "controlnet" and record["controlnet"] == "random"
        assert record["controlnet_load_s"] > 0 and record["e2e_s"] > 0
    compiled = records["tiny-sdxl-controlnet-64-compile"]
    assert compiled["ssim"] > 0.999 and compiled["quality_images"] == 2
    assert session.cache.loads == 1
    pipe = session.cache._loaded.task_pipes["controlnet"]
    assert type(pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    assert pipe.unet is session.cache._loaded.pipe.unet  # the SDXL components are shared, not rebuilt
    saved = Image.open(session.run_folder.path / records["tiny-sdxl-controlnet-64-eager"]["control_image"])
    assert saved.size == (64, 64) and set(np.unique(np.asarray(saved))) == {0, 255}


def test_the_default_control_image_is_a_canny_edge_map_at_the_case_size():
    size = Resolution(96, 128)
    edges = np.asarray(control_image(None, default_input_image(), size))
    assert edges.shape == (96, 128, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    assert 0.02 < (edges[..., 0] == 255).mean() < 0.5  # edges present, not everywhere
    assert (edges[..., 0] == edges[..., 1]).all() and (edges[..., 0] == edges[..., 2]).all()


def test_a_given_control_image_is_used_resized(tmp_path):
    pixels = np.zeros((40, 30, 3), dtype=np.uint8)
    pixels[:, 15:] = 255
    Image.fromarray(pixels).save(tmp_path / "control.png")
    image = control_image(tmp_path / "control.png", default_input_image(), Resolution(64, 64))
    assert image.size == (64, 64) and np.asarray(image)[:, :24].max() == 0 and np.asarray(image)[:, 40:].min() == 255


def test_the_controlnet_conditions_the_image():
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu")
    from diffusers import StableDiffusionXLControlNetPipeline

    controlnet_pipe = share_components(pipe, StableDiffusionXLControlNetPipeline, {"controlnet": tiny_controlnet()})
    controlnet_pipe.set_progress_bar_config(disable=True)
    edges = canny_edges(default_input_image(), Resolution(64, 64))

    def image(scale):
        return controlnet_pipe(
            prompt="an astronaut",
            image=edges,
            height=64,
            width=64,
            num_inference_steps=2,
            controlnet_conditioning_scale=scale,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(0),
        ).images[0]

    unconditioned, conditioned = image(0.0), image(0.5)
    assert np.isfinite(conditioned).all() and conditioned.std() > 1e-3
    assert np.abs(unconditioned - conditioned).mean() > 1e-3


def test_a_random_controlnet_is_seeded_and_its_zero_convolutions_are_not_zero():
    first, second, other = tiny_controlnet(), tiny_controlnet(), tiny_controlnet(seed=1)
    assert first.controlnet_mid_block.weight.abs().sum() > 0
    assert all(block.weight.abs().sum() > 0 for block in first.controlnet_down_blocks)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    assert not torch.equal(first.controlnet_mid_block.weight, other.controlnet_mid_block.weight)


def test_the_full_size_random_controlnet_is_built_on_the_device_in_the_target_dtype():
    controlnet = build_random_controlnet(config_folder(MODELS["sdxl"], "random"), torch.float16, "meta")
    assert {(p.device.type, p.dtype) for p in controlnet.parameters()} == {("meta", torch.float16)}
    assert sum(p.numel() for p in controlnet.parameters()) == 1_251_014_160


def test_a_saved_controlnet_folder_gives_the_same_image_as_the_random_one(tmp_path):
    tiny_controlnet().save_pretrained(tmp_path / "controlnet")
    random_run = make_session(tmp_path / "random", **FAST)
    folder_run = make_session(tmp_path / "folder", **FAST, controlnet=str(tmp_path / "controlnet"))
    (case,) = expand_matrix(random_run.settings)
    random_run.run(case, RecordingBenchmark())
    record = folder_run.run(case, RecordingBenchmark())
    assert record["controlnet"] == str(tmp_path / "controlnet")
    (expected,) = random_run.references[case.reference_key].images
    (actual,) = folder_run.references[case.reference_key].images
    assert np.array_equal(expected, actual)


def test_a_hub_controlnet_missing_offline_is_a_skip_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    session = make_session(tmp_path, **FAST, controlnet="nobody-here/no-such-controlnet")
    (case,) = expand_matrix(session.settings)
    with pytest.raises(pytest.skip.Exception, match="hf download nobody-here/no-such-controlnet"):
        session.run(case, RecordingBenchmark())


def test_a_controlnet_for_another_unet_is_refused_before_running():
    controlnet, unet = tiny_controlnet(), build_random_pipeline("tiny-sdxl", torch.float32, "meta").unet
    check_matches_unet(controlnet, unet, "random", "tiny-sdxl")
    unet.register_to_config(block_out_channels=(320, 640, 1280))
    with pytest.raises(OptionError, match="does not fit tiny-sdxl's UNet .*block_out_channels"):
        check_matches_unet(controlnet, unet, "some/controlnet", "tiny-sdxl")


def test_controlnet_runs_only_when_named_and_only_for_the_sdxl_family():
    assert not any(case.task == "controlnet" for case in expand_matrix(build_settings({})))
    ids = [case.id for case in expand_matrix(build_settings({"tasks": "t2i,controlnet", "backends": "compile"}))]
    assert "sdxl-controlnet-1024-compile" in ids and "realvisxl-lightning-5step-controlnet-512-compile" in ids
    assert {i.split("-controlnet")[0] for i in ids if "-controlnet-" in i} == {
        "sdxl",
        "realvisxl",
        "realvisxl-lightning",
        "realvisxl-lightning-5step",
        "tiny-sdxl",
    }
    with pytest.raises(
        OptionError, match="no case to run: the models selected support only these tasks: tiny-sd3: t2i$"
    ):
        build_settings({"models": "tiny-sd3", "tasks": "controlnet"})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"controlnet": "/no/such/controlnet"}, "--controlnet '/no/such/controlnet' is neither `random`, an existing"),
        ({"controlnet": "random:3"}, "is neither `random`, an existing folder, nor a hub id OWNER/NAME"),
        ({"control_image": "/no/such.png"}, "--control-image '/no/such.png' is not a readable image"),
    ],
)
def test_bad_controlnet_options_are_option_errors(raw, message):
    with pytest.raises(OptionError) as error:
        build_settings({"tasks": "controlnet", **raw})
    assert message in str(error.value)


def test_a_folder_without_a_config_is_not_a_controlnet(tmp_path):
    with pytest.raises(OptionError, match="not a ControlNet folder .*no config.json"):
        build_settings({"controlnet": str(tmp_path)})


@pytest.mark.parametrize("option", [["--controlnet", "/no/such/controlnet"], ["--control-image", "/no/such.png"]])
def test_bad_controlnet_options_are_usage_errors_on_the_command_line(option):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks/",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "--tasks",
            "controlnet",
            *option,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert option[1] in result.stderr and "Traceback" not in result.stderr + result.stdout
