"""The compiled denoiser gets its timestep as float32 and its latents contiguous: one graph for every
scheduler's timestep dtype and for img2img's channels_last latents."""

import torch
from torch._dynamo.testing import CompileCounter

from diffbench.backends.compile import TIMESTEP_DTYPE, canonical_inputs


class Denoiser(torch.nn.Module):
    """The UNet's call shape: forward(sample, timestep, ...), turning the timestep into float32 itself."""

    def forward(self, sample, timestep, encoder_hidden_states=None):
        return sample * timestep.float()[:, None, None, None]


class Seen(list):
    """The timestep dtypes that reach the compiled frame, recorded by a pre-hook after the cast's (eagerly)."""

    def __call__(self, _module, args, kwargs):
        self.append((kwargs["timestep"] if "timestep" in kwargs else args[1]).dtype)
        self.contiguous = (kwargs["sample"] if "sample" in kwargs else args[0]).is_contiguous()


def compiled_denoiser():
    counter = CompileCounter()
    compiled = torch.compile(Denoiser(), backend=counter)
    canonical_inputs(compiled)
    seen = Seen()
    compiled.register_forward_pre_hook(seen, with_kwargs=True)
    return seen, compiled, counter


def test_float64_and_int64_timesteps_reach_the_graph_as_float32_and_compile_once():
    torch._dynamo.reset()
    seen, compiled, counter = compiled_denoiser()
    sample = torch.ones(2, 4, 3, 3)
    outputs = [
        compiled(sample, torch.tensor([999.0, 999.0], dtype=dtype))
        for dtype in (torch.float32, torch.float64, torch.int64)
    ]
    assert counter.frame_count == 1  # one graph: the dtype no longer differs at the graph's input
    assert set(seen) == {TIMESTEP_DTYPE}
    for output in outputs:  # the values are the eager ones: the model casts to float32 itself
        torch.testing.assert_close(output, sample * 999.0)


def test_a_timestep_given_by_name_is_cast_and_other_arguments_are_left_alone():
    torch._dynamo.reset()
    seen, compiled, counter = compiled_denoiser()
    hidden = torch.zeros(2, 4, dtype=torch.float64)
    compiled(
        torch.ones(2, 4, 3, 3), timestep=torch.tensor([1.0, 2.0], dtype=torch.float64), encoder_hidden_states=hidden
    )
    assert seen == [TIMESTEP_DTYPE]
    assert hidden.dtype == torch.float64  # only the timestep is cast


def test_without_the_cast_a_float64_timestep_compiles_a_second_graph():
    """The failure the cast removes (DPM++ SDE after Euler A compiled cold again on the H100)."""
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(Denoiser(), backend=counter)
    for dtype in (torch.float32, torch.float64):
        compiled(torch.ones(2, 4, 3, 3), torch.tensor([999.0, 999.0], dtype=dtype))
    assert counter.frame_count == 2


def test_channels_last_latents_reach_the_graph_contiguous_and_share_its_graph():
    """img2img's latents from a channels_last VAE encoder: t2i's graph, not a second cold compile."""
    torch._dynamo.reset()
    seen, compiled, counter = compiled_denoiser()
    timestep = torch.tensor([999.0, 999.0])
    contiguous = torch.randn(2, 4, 3, 3)
    channels_last = contiguous.to(memory_format=torch.channels_last)
    assert not channels_last.is_contiguous()
    first, second = compiled(contiguous, timestep), compiled(sample=channels_last, timestep=timestep)
    assert counter.frame_count == 1 and seen.contiguous
    torch.testing.assert_close(first, second)
