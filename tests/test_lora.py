"""random:RANK LoRA adapters: non-zero, they change the image; fused, they give the same image; unloaded,
the original comes back."""

import numpy as np
import pytest
import torch

from diffbench.errors import OptionError
from diffbench.lora import LoraSpec, add_random_lora, lora_layer_count, parse_lora
from diffbench.quality import compare
from diffbench.random_weights import build_random_pipeline

pytest.importorskip("peft")


def psnr(reference, candidate):
    return compare(reference, candidate)[1]


def image(pipe):
    generator = torch.Generator("cpu").manual_seed(3)
    return pipe(prompt="a cat", num_inference_steps=2, height=64, width=64, generator=generator, output_type="np").images[0]


@pytest.fixture(scope="module")
def pipe():
    pipe = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_random_adapter_changes_the_image_fusing_keeps_it_and_unloading_restores_the_original(pipe):
    original = image(pipe)
    name = add_random_lora(pipe.unet, LoraSpec(rank=4))
    assert lora_layer_count(pipe.unet) > 0
    assert all(p.abs().sum() > 0 for n, p in pipe.unet.named_parameters() if "lora_B" in n)  # not peft's zero init
    with_adapter = image(pipe)
    assert psnr(original, with_adapter) < 60  # the adapter changes the output
    pipe.fuse_lora(components=["unet"], adapter_names=[name])
    fused = image(pipe)
    assert psnr(with_adapter, fused) > 50  # fused into the weights: the same image, up to rounding
    pipe.unfuse_lora(components=["unet"])
    pipe.unet.delete_adapters(name)
    assert lora_layer_count(pipe.unet) == 0
    assert np.array_equal(image(pipe), original) or psnr(image(pipe), original) > 80


def test_the_same_spec_gives_the_same_adapter():
    first = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5).unet
    second = build_random_pipeline("tiny-sdxl", torch.float32, "cpu", seed=5).unet
    add_random_lora(first, LoraSpec(rank=2, seed=9))
    add_random_lora(second, LoraSpec(rank=2, seed=9))
    lora = {n: p for n, p in first.named_parameters() if "lora_" in n}
    assert lora and all(torch.equal(p, dict(second.named_parameters())[n]) for n, p in lora.items())


@pytest.mark.parametrize("text", ["random", "random:0", "random:x", "hub:some/lora"])
def test_bad_lora_values_are_usage_errors(text):
    with pytest.raises(OptionError, match="random:RANK"):
        parse_lora(text)
