"""Committed model configs: full-size parameter counts, tiny random pipelines, offline tokenizers, round trips."""

from __future__ import annotations

import filecmp
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from diffbench.models import fixture_files, random_weights, tokenizers
from diffbench.models.random_weights import (
    build_component,
    build_random_pipeline,
    count_folder_parameters,
    count_parameters,
    materialize_config_folder,
)

TINY_ARCHS = ["tiny-sdxl", "tiny-ip2p", "tiny-sd3"]
PROMPT = "a photo of a cat"

#: (arch, component) -> (expected parameters, relative tolerance). Exact where the published count is exact.
EXPECTED_PARAMETERS = {
    ("sdxl", "unet"): (2_567_463_684, 0.0),
    ("sdxl", "vae"): (83.65e6, 0.005),
    ("sdxl", "text_encoder"): (123.06e6, 0.005),
    ("sdxl", "text_encoder_2"): (694.66e6, 0.005),
    ("sd15-ip2p", "unet"): (859.5e6, 0.005),
    ("sd15-ip2p", "vae"): (83.65e6, 0.005),
    ("sd15-ip2p", "text_encoder"): (123.06e6, 0.005),
    ("sd35-large", "transformer"): (8_057e6, 0.005),
    ("sd35-large", "vae"): (83.82e6, 0.005),  # 16 latent channels, no quant convs
    ("sd35-large", "text_encoder"): (123.65e6, 0.005),  # ViT-L text tower + 768x768 projection
    ("sd35-large", "text_encoder_2"): (694.66e6, 0.005),
    ("sd35-large", "text_encoder_3"): (4.76e9, 0.005),
}


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """Tiny models are all per-op overhead: one thread is faster than two, and much faster on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def model_components(pipe) -> dict[str, torch.nn.Module]:
    """The torch modules among a pipeline's components."""
    return {name: value for name, value in pipe.components.items() if isinstance(value, torch.nn.Module)}


def assert_same_weights(first, second) -> None:
    """Every model component of the two pipelines has bit-identical tensors."""
    assert model_components(first).keys() == model_components(second).keys()
    for name, module in model_components(first).items():
        other = model_components(second)[name].state_dict()
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, other[key]), f"{name}.{key} differs"


def tiny_call(pipe, arch: str) -> np.ndarray:
    """A 128x128, 2-step call with a fixed generator, returning the numpy images."""
    arguments = {"prompt": PROMPT, "num_inference_steps": 2, "output_type": "np"}
    if "ip2p" in arch:
        pixels = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
        arguments["image"] = Image.fromarray(pixels)
    else:
        arguments.update(height=128, width=128)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**arguments, generator=torch.Generator("cpu").manual_seed(0)).images


@pytest.mark.parametrize(("arch", "component"), sorted(EXPECTED_PARAMETERS))
def test_full_size_parameter_count(arch, component):
    expected, tolerance = EXPECTED_PARAMETERS[(arch, component)]
    assert count_parameters(arch, component) == pytest.approx(expected, rel=tolerance, abs=0)


def test_full_size_controlnet_parameter_count():
    from diffusers import ControlNetModel

    folder = fixture_files.fixtures_dir() / "models" / "sdxl-controlnet"
    # diffusers/controlnet-canny-sdxl-1.0: 2.50 GB of fp16 weights, 1.25B parameters.
    assert count_folder_parameters(ControlNetModel, folder) == 1_251_014_160


@pytest.mark.parametrize(("arch", "embedding_channels"), [("sdxl", [16, 32, 96, 256]), ("tiny-sdxl", [8, 16, 32, 32])])
def test_controlnet_configs_are_derived_from_their_unets(arch, embedding_channels):
    """The committed configs are what ControlNetModel.from_unet makes of the committed UNet configs."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    models = fixture_files.fixtures_dir() / "models"
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(models / arch / "unet"))
        derived = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=tuple(embedding_channels), load_weights_from_unet=False
        )
    committed = random_weights.read_json(models / f"{arch}-controlnet" / "config.json")
    assert committed["conditioning_embedding_out_channels"] == embedding_channels
    for key, value in derived.config.items():
        if not key.startswith("_"):
            assert committed[key] == (list(value) if isinstance(value, tuple) else value), key


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_pipeline_runs_and_is_reproducible(arch):
    pipe = build_random_pipeline(arch, torch.float32, "cpu", seed=0)
    images = tiny_call(pipe, arch)
    assert images.shape == (1, 128, 128, 3)
    assert np.isfinite(images).all() and images.std() > 1e-3
    assert_same_weights(pipe, build_random_pipeline(arch, torch.float32, "cpu", seed=0))
    other_seed = build_random_pipeline(arch, torch.float32, "cpu", seed=1)
    assert not torch.equal(pipe.vae.decoder.conv_out.weight, other_seed.vae.decoder.conv_out.weight)


def test_build_restores_default_dtype_and_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pipe = build_random_pipeline("tiny-ip2p", torch.bfloat16, "cpu")
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_default_dtype() == torch.float32
    assert {parameter.dtype for parameter in pipe.unet.parameters()} == {torch.bfloat16}


def test_t5_keeps_wo_in_float32_under_float16_like_from_pretrained():
    text_encoder = build_component("tiny-sd3", "text_encoder_3", torch.float16, "cpu", seed=0)
    feed_forward = text_encoder.encoder.block[0].layer[1].DenseReluDense
    assert feed_forward.wo.weight.dtype == torch.float32
    assert feed_forward.wi_0.weight.dtype == torch.float16


@pytest.mark.parametrize("arch", ["tiny-sdxl", "tiny-sd3"])
def test_materialized_folder_save_pretrained_round_trip(tmp_path, arch):
    pipe = build_random_pipeline(arch, torch.float32, "cpu", seed=3)
    folder = materialize_config_folder(arch, tmp_path / arch)
    loaded_from_configs = type(pipe).from_pretrained(folder, **model_components(pipe))
    assert loaded_from_configs.scheduler.config == pipe.scheduler.config
    pipe.save_pretrained(folder)
    loaded = type(pipe).from_pretrained(folder)
    assert_same_weights(pipe, loaded)
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        if getattr(pipe, name, None) is not None:
            assert getattr(loaded, name)(PROMPT).input_ids == getattr(pipe, name)(PROMPT).input_ids


def test_clip_tokenizers_give_the_real_ids():
    for name, pad_id in (("tokenizer", 49407), ("tokenizer_2", 0)):
        tokenizer = build_component("tiny-sdxl", name, torch.float32, "cpu", seed=0)
        assert tokenizer(PROMPT).input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tokenizer.model_max_length == 77 and len(tokenizer) == 49408
        assert tokenizer.pad_token_id == pad_id


def test_t5_tokenizer_round_trip():
    tokenizer = build_component("tiny-sd3", "tokenizer_3", torch.float32, "cpu", seed=0)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) < 32128
    text = "an astronaut riding a horse on mars, 4k photo!"
    encoded = tokenizer(text, padding="max_length", max_length=40).input_ids
    assert encoded[-1] == 0 and 1 in encoded and 2 not in encoded
    assert tokenizer.decode(encoded, skip_special_tokens=True) == text


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open-clip-torch not installed")
def test_committed_clip_files_are_reproducible(tmp_path):
    tokenizers.write_clip_tokenizers(tmp_path, tokenizers.open_clip_bpe_path())
    committed = fixture_files.fixtures_dir() / "tokenizers"
    for relative in ("clip/vocab.json", "clip/merges.txt", "clip-g/tokenizer_config.json"):
        assert filecmp.cmp(tmp_path / relative, committed / relative, shallow=False), relative


def test_pipeline_class_can_be_overridden():
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "meta", pipeline_cls=StableDiffusionXLImg2ImgPipeline)
    assert isinstance(pipe, StableDiffusionXLImg2ImgPipeline)
    assert pipe.unet.device.type == "meta" and pipe.config.force_zeros_for_empty_prompt


def test_unknown_arch_names_the_valid_ones():
    with pytest.raises(FileNotFoundError, match="tiny-sdxl"):
        count_parameters("no-such-arch", "unet")


def test_fixtures_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(fixture_files.FIXTURES_ENV_VAR, str(tmp_path))
    assert random_weights.available_archs() == []
    monkeypatch.delenv(fixture_files.FIXTURES_ENV_VAR)
    assert set(TINY_ARCHS) <= set(random_weights.available_archs())
