"""own/park/unpark: an in-place backend's copy is measured alone, the cached original comes back."""

import types

import torch

from diffbench.backends.base import own, park, unpark


class FakeModule:
    """Records where it is moved; like torch's, its one parameter object is moved in place (`to`
    swaps the parameter's data), so a device read from it after a move is the new one."""

    def __init__(self, device="cuda:0", moves=None):
        self.parameter = types.SimpleNamespace(device=torch.device(device))
        self.moves = moves if moves is not None else []

    @property
    def device(self):
        return self.parameter.device

    def parameters(self):
        return iter([self.parameter])

    def to(self, device):
        self.moves.append(str(device))
        self.parameter.device = torch.device(device)
        return self

    def __deepcopy__(self, memo):
        assert self.device.type == "cpu", "the copy is made from the parked (CPU) original"
        return FakeModule("cpu", moves=[])


def test_own_parks_the_original_copies_on_the_cpu_and_unpark_brings_it_back():
    original = FakeModule("cuda:0")
    pipe = types.SimpleNamespace(unet=original)
    copy_ = own(pipe, "unet")
    assert pipe.unet is copy_ and copy_ is not original
    assert copy_.device == torch.device("cuda:0") and original.device.type == "cpu"
    assert own(pipe, "unet") is copy_  # owning twice (quantize, then compile's in-place options) copies once
    assert original.moves == ["cpu"]
    unpark(pipe)
    assert original.moves == ["cpu", "cuda:0"] and original.device == torch.device("cuda:0")
    unpark(pipe)  # nothing left to bring back
    assert original.moves == ["cpu", "cuda:0"]


def test_cpu_modules_are_not_parked():
    module = FakeModule("cpu")
    pipe = types.SimpleNamespace()
    assert park(pipe, module) is None and module.moves == []
    unpark(pipe)
    assert module.moves == []
