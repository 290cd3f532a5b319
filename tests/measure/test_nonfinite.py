"""Where a NaN/inf starts: the first module whose output is not finite, found in one eager call."""

import pytest
import torch
from helpers import RecordingBenchmark, make_session
from torch._dynamo.testing import CompileCounter

from diffbench.config.matrix import expand_matrix
from diffbench.errors import QualityError
from diffbench.measure.nonfinite import first_non_finite, tensors
from diffbench.results.records import read_results


class Overflow(torch.nn.Module):
    def forward(self, x):
        return x * 1e30 * 1e30  # inf in float32


class Net(torch.nn.Module):
    def __init__(self, middle: torch.nn.Module):
        super().__init__()
        self.first, self.middle, self.last = torch.nn.Linear(4, 4), middle, torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.last(self.middle(self.first(x)))


def test_the_origin_is_the_first_module_that_turns_finite_inputs_into_inf():
    net = Net(Overflow())
    found = first_non_finite({"unet": net}, lambda: [net(torch.ones(2, 4)) for _ in range(2)])
    assert (found.module, found.kind, found.model_call, found.inputs_finite) == ("unet.middle", "Overflow", 1, True)
    assert found.values == "inf"  # `last` then makes NaN from inf; the first one counts
    assert "unet.middle (Overflow), call 1, from finite inputs" in found.describe()
    assert all(not module._forward_hooks for module in net.modules())  # the hooks are gone afterwards


def test_finite_outputs_give_none_and_non_finite_inputs_are_told_apart():
    net = Net(torch.nn.ReLU())
    assert first_non_finite({"unet": net}, lambda: net(torch.ones(2, 4))) is None
    found = first_non_finite({"unet": net}, lambda: net(torch.full((2, 4), float("nan"))))
    assert found.module == "unet.first" and not found.inputs_finite and found.values == "nan"


def test_a_compiled_model_runs_eagerly_under_the_watch_without_a_recompile():
    counter = CompileCounter()
    net = Net(Overflow())
    compiled = torch.compile(net, backend=counter)
    compiled(torch.ones(2, 4))
    found = first_non_finite({"unet": compiled}, lambda: compiled(torch.ones(2, 4)))
    assert found is not None and found.module == "unet.middle" and counter.frame_count == 1


def test_tensors_reads_outputs_of_every_shape_one_level_deep():
    a, b = torch.ones(1), torch.zeros(1, dtype=torch.int64)
    assert [t is a for t in tensors((a, b, "x"))] == [True]  # integer tensors and others left out
    assert list(tensors({"sample": a})) == [a] and list(tensors(None)) == []


@pytest.mark.parametrize("only_compiled", [False, True])
def test_a_nan_image_fails_the_gate_with_where_it_starts(tmp_path, monkeypatch, only_compiled):
    """The compiled pipeline's UNet mid block overflows: in eager too, or only inside the compiled graph."""
    session = make_session(tmp_path, backends="eager,compile", compiler_config='{"backend": "eager"}', prompts=1)
    eager, compiled, *_ = [case for case in expand_matrix(session.settings) if case.task == "t2i"]
    backend = session.backends["compile"]
    original_apply = backend.apply

    def overflow(_module, _inputs, output):
        return output * float("inf") if (torch.compiler.is_compiling() or not only_compiled) else output

    def apply(pipe):
        pipe = original_apply(pipe)
        pipe.unet._orig_mod.mid_block.register_forward_hook(overflow)  # this test's session only: its cache ends here
        return pipe

    monkeypatch.setattr(backend, "apply", apply)
    session.run(eager, RecordingBenchmark())
    with pytest.raises(QualityError, match="NaN/inf values"):
        session.run(compiled, RecordingBenchmark())
    record = [r for r in read_results(session.run_folder.results) if r["backend"] == "compile"][-1]
    assert record["status"] == "failed" and "NaN/inf values" in record["message"]
    if only_compiled:
        assert "run eagerly (torch.compile off) stays finite: the compiled code makes the NaN/inf" in record["message"]
    else:
        assert "first non-finite output (inf) at unet.mid_block (UNetMidBlock2DCrossAttn), call 1" in record["message"]
