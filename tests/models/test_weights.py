"""Loading real weights the ways users have them: a saved folder (with a variant) and a single file."""

import dataclasses

import pytest
import torch
from helpers import RecordingBenchmark, make_session
from support.ldm_checkpoint import save_sdxl_single_file

from diffbench.config.matrix import expand_matrix
from diffbench.errors import OptionError
from diffbench.models.catalog import MODELS
from diffbench.models.random_weights import build_random_pipeline
from diffbench.models.weights import load_pipeline

# `sdxl` as a user would point it at local weights, with the architecture shrunk to the tiny configs.
TINY_SDXL_AS_FULL = dataclasses.replace(MODELS["sdxl"], arch="tiny-sdxl")


@pytest.fixture(scope="module")
def tiny_sdxl():
    return build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=7)


def assert_same_weights(expected, actual):
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        reference = getattr(expected, name).state_dict()
        loaded = getattr(actual, name).state_dict()
        assert all(torch.equal(reference[key], loaded[key]) for key in reference), name


def test_saved_folder_runs_as_a_benchmark_case(tmp_path, tiny_sdxl):
    folder = tmp_path / "my-sdxl"
    tiny_sdxl.save_pretrained(folder)
    session = make_session(
        tmp_path, models="sdxl", tasks="t2i", resolutions="128", device="cpu", weights=f"sdxl={folder}"
    )
    record = session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    assert record["status"] == "ok" and record["weights"] == str(folder)
    loaded = session.cache._loaded.pipe
    assert type(loaded.scheduler).__name__ == "EulerAncestralDiscreteScheduler"  # the catalog's scheduler
    assert_same_weights(tiny_sdxl, loaded)


def test_folder_variant_is_honoured(tmp_path, tiny_sdxl):
    folder = tmp_path / "variant"
    tiny_sdxl.save_pretrained(folder, variant="fp16")
    assert list(folder.glob("unet/*.fp16.safetensors"))
    assert_same_weights(tiny_sdxl, load_pipeline(TINY_SDXL_AS_FULL, str(folder), torch.float32, "cpu", variant="fp16"))


def test_folder_without_model_index_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OptionError, match="has no model_index.json: not a saved diffusers pipeline"):
        load_pipeline(TINY_SDXL_AS_FULL, str(tmp_path / "empty"), torch.float32, "cpu")


def test_single_file_checkpoint_loads_through_the_weights_path(tmp_path, tiny_sdxl, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the materialized config folder
    checkpoint = tmp_path / "RealVisXL_tiny.safetensors"
    save_sdxl_single_file(tiny_sdxl, checkpoint)
    loaded = load_pipeline(TINY_SDXL_AS_FULL, str(checkpoint), torch.float32, "cpu")
    assert type(loaded).__name__ == "StableDiffusionXLPipeline"
    assert_same_weights(tiny_sdxl, loaded)
    assert (tmp_path / "cache" / "diffbench" / "configs" / "tiny-sdxl" / "model_index.json").is_file()


def test_lightning_card_settings_run_dpm_sde_karras_deterministically(tmp_path):
    """realvisxl-lightning-5step: the card's scheduler (DPM++ SDE Karras: 2 UNet calls per step but the
    first), CFG 1.5, and the same image for the same seed although the SDE draws Brownian noise."""
    session = make_session(
        tmp_path,
        models="realvisxl-lightning-5step",
        tasks="t2i",
        resolutions="64",
        device="cpu",
        weights="tiny",
        steps=None,
    )
    record = session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    assert record["status"] == "ok", record.get("message")
    assert record["steps"] == 5 and record["loop_iterations"] == 9
    assert record["deterministic"] is True
    scheduler = session.cache._loaded.pipe.scheduler
    assert type(scheduler).__name__ == "DPMSolverSDEScheduler" and scheduler.config.use_karras_sigmas


def test_missing_torchsde_is_a_skip_reason(monkeypatch):
    """Without torchsde, diffusers exports a stand-in scheduler whose from_config raises ImportError."""
    import diffusers
    import diffusers.utils.import_utils as import_utils
    from diffusers.utils.dummy_torch_and_torchsde_objects import DPMSolverSDEScheduler as StandIn

    from diffbench.errors import UnavailableError
    from diffbench.models.weights import make_scheduler

    monkeypatch.setattr(import_utils, "_torchsde_available", False)
    monkeypatch.setattr(diffusers, "DPMSolverSDEScheduler", StandIn)
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu")
    with pytest.raises(UnavailableError, match="pip install torchsde"):
        make_scheduler(MODELS["realvisxl-lightning-5step"], pipe.scheduler.config)
