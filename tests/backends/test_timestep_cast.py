"""The compiled denoiser gets its timestep as float32: one graph for every scheduler's timestep dtype."""

import torch
from torch._dynamo.testing import CompileCounter

from diffbench.backends.compile import TIMESTEP_DTYPE, cast_timestep


class Denoiser(torch.nn.Module):
    """The UNet's call shape: forward(sample, timestep, ...), turning the timestep into float32 itself."""

    def forward(self, sample, timestep, encoder_hidden_states=None):
        return sample * timestep.float()[:, None]


class Seen(list):
    """The timestep dtypes that reach the compiled frame, recorded by a pre-hook after the cast's (eagerly)."""

    def __call__(self, _module, args, kwargs):
        self.append((kwargs["timestep"] if "timestep" in kwargs else args[1]).dtype)


def compiled_denoiser():
    counter = CompileCounter()
    compiled = torch.compile(Denoiser(), backend=counter)
    cast_timestep(compiled)
    seen = Seen()
    compiled.register_forward_pre_hook(seen, with_kwargs=True)
    return seen, compiled, counter


def test_float64_and_int64_timesteps_reach_the_graph_as_float32_and_compile_once():
    torch._dynamo.reset()
    seen, compiled, counter = compiled_denoiser()
    sample = torch.ones(2, 3)
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
    compiled(torch.ones(2, 3), timestep=torch.tensor([1.0, 2.0], dtype=torch.float64), encoder_hidden_states=hidden)
    assert seen == [TIMESTEP_DTYPE]
    assert hidden.dtype == torch.float64  # only the timestep is cast


def test_without_the_cast_a_float64_timestep_compiles_a_second_graph():
    """The failure the cast removes (DPM++ SDE after Euler A compiled cold again on the H100)."""
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(Denoiser(), backend=counter)
    for dtype in (torch.float32, torch.float64):
        compiled(torch.ones(2, 3), torch.tensor([999.0, 999.0], dtype=dtype))
    assert counter.frame_count == 2
