"""Single-file SDXL checkpoints: a tiny pipeline written in the original layout loads back exactly, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from safetensors import safe_open
from safetensors.torch import save_file
from support.ldm_checkpoint import OPEN_CLIP_PREFIX, save_sdxl_single_file, sdxl_original_state_dict

from diffbench.models.random_weights import (
    arch_dir,
    build_random_pipeline,
    component_classes,
    import_class,
    instantiate_model,
    materialize_config_folder,
)
from diffbench.models.single_file import is_single_file, load_single_file

MODEL = "tiny-sdxl"
FULL_SIZE_MODEL = "sdxl"
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
PIPELINE_CLASSES = (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline)
# The only tensors not stored in the checkpoint: CLIP's non-persistent `position_ids` buffers, which
# transformers rebuilds (an arange) when it constructs the text encoders. Everything else must round-trip.
RECOMPUTED_BUFFER_SUFFIX = "position_ids"
ORIGINAL_PREFIXES = (
    "model.diffusion_model.",
    "first_stage_model.",
    "conditioner.embedders.0.transformer.",
    "conditioner.embedders.1.model.",
)


@pytest.fixture(scope="module")
def original():
    return build_random_pipeline(MODEL, torch.float32, "cpu")


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory):
    return materialize_config_folder(MODEL, tmp_path_factory.mktemp("single-file") / "config")


@pytest.fixture(scope="module")
def checkpoint_path(original, tmp_path_factory):
    return save_sdxl_single_file(original, tmp_path_factory.mktemp("single-file") / "tiny-sdxl.safetensors")


@pytest.fixture(scope="module", params=PIPELINE_CLASSES, ids=lambda cls: cls.__name__)
def loaded(request, checkpoint_path, config_folder):
    return load_single_file(request.param, checkpoint_path, config_folder, torch.float32)


def _checkpoint_keys(path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), framework="pt") as checkpoint:
        return {key: tuple(checkpoint.get_slice(key).get_shape()) for key in checkpoint.keys()}


def test_checkpoint_has_the_original_sdxl_layout(checkpoint_path):
    shapes = _checkpoint_keys(checkpoint_path)
    assert all(key.startswith(ORIGINAL_PREFIXES) for key in shapes)
    for prefix in ORIGINAL_PREFIXES:
        assert any(key.startswith(prefix) for key in shapes), prefix
    assert "model.diffusion_model.label_emb.0.0.weight" in shapes
    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in shapes
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in shapes
    assert "conditioner.embedders.1.model.text_projection" in shapes
    assert len(shapes["first_stage_model.encoder.mid.attn_1.q.weight"]) == 4  # a 1x1 conv, as in LDM
    assert not any(key.endswith(RECOMPUTED_BUFFER_SUFFIX) for key in shapes)


@pytest.fixture(scope="module")
def full_size_on_meta():
    """The four full-size SDXL models on the meta device (every shape, no memory) and their original keys."""
    classes = component_classes(FULL_SIZE_MODEL)
    with torch.device("meta"):
        models = {
            name: instantiate_model(import_class(*classes[name]), arch_dir(FULL_SIZE_MODEL) / name)
            for name in COMPONENTS
        }
    return models, sdxl_original_state_dict(*(models[name] for name in COMPONENTS))


def _converted_back(checkpoint: dict, models: dict) -> dict:
    """diffusers' own single-file conversions of `checkpoint`, one state dict per component."""
    clip = convert_ldm_clip_checkpoint(checkpoint)
    if not hasattr(models["text_encoder"], "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        clip = {key.removeprefix("text_model."): tensor for key, tensor in clip.items()}
    return {
        "unet": convert_ldm_unet_checkpoint(checkpoint, dict(models["unet"].config)),
        "vae": convert_ldm_vae_checkpoint(checkpoint, dict(models["vae"].config)),
        "text_encoder": clip,
        "text_encoder_2": convert_open_clip_checkpoint(models["text_encoder_2"], checkpoint, prefix=OPEN_CLIP_PREFIX),
    }


def test_full_size_layout_maps_back_to_every_parameter(full_size_on_meta):
    models, checkpoint = full_size_on_meta
    for name, state_dict in _converted_back(checkpoint, models).items():
        expected = {key: tensor.shape for key, tensor in models[name].state_dict().items()}
        assert {key: tensor.shape for key, tensor in state_dict.items()} == expected, name


def test_full_size_checkpoint_is_recognised_as_sdxl_base(full_size_on_meta):
    # diffusers sniffs OpenCLIP layer 9 (`resblocks.9`), so a tiny file is not recognised: hence config=.
    _, checkpoint = full_size_on_meta
    assert infer_diffusers_model_type(checkpoint) == "xl_base"


def test_pipeline_class_is_kept(loaded):
    assert type(loaded) in PIPELINE_CLASSES
    assert loaded.tokenizer is not None and loaded.tokenizer_2 is not None


# diffusers tells SDXL's two text encoders apart by width (it gives a CLIP model the CLIP-L weights
# whenever widths match): tiny-sdxl's encoders differ in width (32, 48) like the real ones (768, 1280).
@pytest.mark.parametrize("component", COMPONENTS)
def test_weights_round_trip_exactly(original, loaded, component):
    expected = getattr(original, component).state_dict()
    actual = getattr(loaded, component).state_dict()
    assert sorted(actual) == sorted(expected)
    assert not [key for key, tensor in actual.items() if tensor.is_meta], "left unloaded by from_single_file"
    different = [key for key in expected if not torch.equal(actual[key], expected[key])]
    assert not different


@pytest.mark.parametrize("component", COMPONENTS)
def test_only_position_ids_are_rebuilt_and_they_match(original, loaded, component):
    module = getattr(loaded, component)
    actual = dict(module.named_buffers())
    expected = dict(getattr(original, component).named_buffers())
    not_in_checkpoint = set(actual) - set(module.state_dict())
    assert all(name.endswith(RECOMPUTED_BUFFER_SUFFIX) for name in not_in_checkpoint)
    assert sorted(actual) == sorted(expected)
    assert all(torch.equal(actual[name], expected[name]) for name in expected)


def test_torch_checkpoint_in_a_state_dict_loads_in_float16(original, config_folder, tmp_path):
    # Many .ckpt files nest their tensors under "state_dict"; diffusers unwraps them.
    tensors = sdxl_original_state_dict(original.unet, original.vae, original.text_encoder, original.text_encoder_2)
    path = tmp_path / "tiny-sdxl.ckpt"
    torch.save({"state_dict": {key: tensor.detach().clone() for key, tensor in tensors.items()}}, path)
    loaded = load_single_file(StableDiffusionXLPipeline, path, config_folder, torch.float16)
    for component in COMPONENTS:
        expected = getattr(original, component).state_dict()
        actual = getattr(loaded, component).state_dict()
        assert all(torch.equal(actual[key], expected[key].half()) for key in expected), component


def _call(pipe):
    """Two steps at 128x128 from a fixed seed; image-to-image starts from a fixed ramp at full strength."""
    kwargs = {"prompt": "a red cube", "num_inference_steps": 2, "output_type": "np"}
    if isinstance(pipe, StableDiffusionXLImg2ImgPipeline):
        kwargs.update(image=torch.linspace(0, 1, 3 * 128 * 128).reshape(1, 3, 128, 128), strength=1.0)
    else:
        kwargs.update(height=128, width=128)
    return pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0)).images


def test_same_image_as_original(original, loaded):
    reference = type(loaded)(**original.components)
    expected = _call(reference)
    actual = _call(loaded)
    assert actual.shape == (1, 128, 128, 3)
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.safetensors", True),
        ("model.ckpt", True),
        ("model.bin", True),
        ("model.PT", True),
        ("model.json", False),
        ("some-folder", False),
    ],
)
def test_is_single_file(tmp_path, name, expected):
    assert is_single_file(tmp_path / name) is expected


def test_is_single_file_rejects_a_folder_with_a_checkpoint_suffix(tmp_path):
    folder = tmp_path / "looks-like.safetensors"
    folder.mkdir()
    assert not is_single_file(folder)


def _bad_checkpoint(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "missing.safetensors"
    if kind == "folder":
        folder = tmp_path / "folder.safetensors"
        folder.mkdir()
        return folder
    path = tmp_path / {"suffix": "weights.json", "safetensors": "garbage.safetensors", "ckpt": "garbage.ckpt"}[kind]
    path.write_text("not a checkpoint")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("folder", "is a folder"),
        ("suffix", "must end with one of"),
        ("safetensors", "not a valid safetensors file"),
        ("ckpt", "not a torch checkpoint"),
    ],
)
def test_bad_checkpoint_file_is_a_value_error_naming_it(tmp_path, config_folder, kind, message):
    path = _bad_checkpoint(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as error:
        load_single_file(StableDiffusionXLPipeline, path, config_folder, torch.float32)
    assert str(path) in str(error.value)


def test_checkpoint_without_sdxl_weights_is_a_value_error_naming_it(tmp_path, config_folder):
    path = tmp_path / "not-sdxl.safetensors"
    save_file({"some.other.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="appear to be missing") as error:
        load_single_file(StableDiffusionXLPipeline, path, config_folder, torch.float32)
    assert str(path) in str(error.value)


def test_config_folder_must_be_local(tmp_path, checkpoint_path):
    # Anything but a local folder would be read as a Hub repo id, and diffusers may then download.
    with pytest.raises(ValueError, match="model_index.json"):
        load_single_file(StableDiffusionXLPipeline, checkpoint_path, tmp_path / "stabilityai/sdxl", torch.float32)
