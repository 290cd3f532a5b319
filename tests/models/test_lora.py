"""--lora adapters: parsed from random:RANK, a file or a hub id; random ones change the image and load through
a saved file identically; fused they give the same image; the cached pipeline comes back bit for bit."""

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from diffbench.errors import OptionError, UnavailableError
from diffbench.measure.quality import compare
from diffbench.models.lora import (
    LoraSpec,
    add_random_lora,
    lora_layer_count,
    parse_lora,
    random_like,
    random_lora_state_dict,
)
from diffbench.models.random_weights import build_random_pipeline
from diffbench.run.lora_case import adapter_in

pytest.importorskip("peft")


def psnr(reference, candidate):
    return compare(reference, candidate)[1]


def image(pipe):
    generator = torch.Generator("cpu").manual_seed(3)
    return pipe(
        prompt="a cat", num_inference_steps=2, height=64, width=64, generator=generator, output_type="np"
    ).images[0]


def weights(pipe):
    return {
        f"{name}.{key}": value.clone()
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }


@pytest.fixture(scope="module")
def pipe():
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_random_adapter_changes_the_image_loads_from_its_file_identically_and_comes_off_bit_for_bit(pipe, tmp_path):
    original, before = image(pipe), weights(pipe)
    with adapter_in(pipe, LoraSpec(rank=4), "unfused", "cpu") as adapter:
        assert adapter.record["lora_layers"] == lora_layer_count(pipe.unet) > 0 and adapter.rank == 4
        assert all(p.abs().sum() > 0 for n, p in pipe.unet.named_parameters() if "lora_B" in n)  # not peft's zero init
        with_adapter = image(pipe)
    assert psnr(original, with_adapter) < 60  # the adapter changes the output
    save_file(random_lora_state_dict(pipe.unet, 4, 0, "unet"), tmp_path / "random-r4.safetensors")
    spec = parse_lora(str(tmp_path / "random-r4.safetensors"))
    assert (spec.kind, spec.label) == ("file", "random-r4")
    with adapter_in(pipe, spec, "unfused", "cpu") as adapter:
        assert adapter.rank == 4 and adapter.record["lora_load_s"] > 0
        assert np.array_equal(image(pipe), with_adapter)  # diffusers' file path gives the very same adapter
    after = weights(pipe)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert lora_layer_count(pipe.unet) == 0 and "peft_config" not in vars(pipe.unet)
    assert np.array_equal(image(pipe), original)


def test_fused_gives_the_unfused_image_and_the_fused_weights_are_put_back_exactly(pipe):
    before = weights(pipe)
    with adapter_in(pipe, LoraSpec(rank=4), "unfused", "cpu"):
        unfused = image(pipe)
    with adapter_in(pipe, LoraSpec(rank=4), "fused", "cpu") as adapter:
        assert adapter.record["lora_fuse_s"] > 0
        changed = [
            k
            for k, v in weights(pipe).items()
            if "base_layer" in k and not torch.equal(v, before[k.replace("base_layer.", "")])
        ]
        assert changed  # fusing wrote the adapter into the projections' weights
        assert psnr(unfused, image(pipe)) > 50  # the same image, up to rounding
    after = weights(pipe)
    assert all(torch.equal(after[k], before[k]) for k in before)  # copied back, not unfused (which rounds)


def test_the_same_spec_gives_the_same_adapter_and_another_seed_another():
    unet = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5).unet
    first, again = (random_lora_state_dict(unet, 2, 9, "unet") for _ in range(2))
    other = random_lora_state_dict(unet, 2, 10, "unet")
    assert first.keys() == other.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first)
    twin = random_like(first, seed=1)
    assert {k: v.shape for k, v in twin.items()} == {k: v.shape for k, v in first.items()}
    assert {k.split(".")[-2] for k in first} == {"lora_A", "lora_B"} and all(k.startswith("unet.") for k in first)
    name = add_random_lora(unet, LoraSpec(rank=2))  # straight through peft, no pipeline
    assert lora_layer_count(unet) == len(first) // 2 and name == "random-r2-s0"


def test_lora_values_parse_to_their_kind(tmp_path):
    (tmp_path / "style.safetensors").write_bytes(b"")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
    assert parse_lora("random:64") == LoraSpec(rank=64) and LoraSpec(rank=64).label == "r64"
    assert parse_lora(str(tmp_path / "style.safetensors")).kind == "file"
    assert parse_lora(str(folder)) == LoraSpec(kind="file", source=str(folder))
    hub = parse_lora("latent-consistency/lcm-lora-sdxl")
    assert (hub.kind, hub.label, str(hub)) == ("hub", "lcm-lora-sdxl", "latent-consistency/lcm-lora-sdxl")


@pytest.mark.parametrize(
    "text, message",
    [
        ("random", "random:RANK with a positive rank"),
        ("random:0", "positive rank"),
        ("random:x", "positive rank"),
        ("./missing.safetensors", "not an existing .safetensors file"),
        ("a lora please", "not understood"),
    ],
)
def test_bad_lora_values_are_usage_errors(text, message):
    with pytest.raises(OptionError, match=message):
        parse_lora(text)


@pytest.mark.skipif(not os.environ.get("HF_HUB_OFFLINE"), reason="needs HF_HUB_OFFLINE=1 (the test command sets it)")
def test_a_hub_adapter_missing_offline_is_a_skip_naming_the_fix(pipe):
    before = weights(pipe)
    with pytest.raises(UnavailableError, match="huggingface-cli download nobody/no-such-lora"):
        with adapter_in(pipe, parse_lora("nobody/no-such-lora"), "unfused", "cpu"):
            pass
    assert all(torch.equal(v, before[k]) for k, v in weights(pipe).items())
