"""Where a NaN or inf starts: the first module, in the order modules finish, whose output is not finite.

A black or NaN image says only that something overflowed somewhere. `first_non_finite` runs one more call
with a forward hook on every submodule of the given models and names the first module whose output holds a
NaN or inf, whether its inputs were finite (then it is the origin), and at which call of its model it
happened. The call runs with torch.compile's stance `force_eager`: compiled modules and methods run their
Python eagerly, with the same weights (quantized ones included), so the answer also says whether the eager
computation overflows or only the compiled one does.

Each hook checks its output (one reduction and device sync per tensor) until the first non-finite output; after that
the hooks do nothing, so a call that overflows early costs little more than a plain eager call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import torch


@dataclasses.dataclass
class NonFinite:
    """The first module whose output was not finite."""

    module: str  # qualified name, prefixed with its model's name: "unet.down_blocks.1.attentions.0..."
    kind: str  # its class name
    model_call: int  # which call of its model (the denoiser's step), from 1
    inputs_finite: bool  # True: this module turned finite inputs into NaN/inf, the origin
    values: str  # "nan", "inf" or "nan and inf"

    def describe(self) -> str:
        where = "from finite inputs" if self.inputs_finite else "its inputs were already not finite"
        return (
            f"first non-finite output ({self.values}) at {self.module} ({self.kind}), call {self.model_call}, {where}"
        )


def tensors(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors of a module's inputs or output: a tensor, a tuple/list, a dict or a
    diffusers output dataclass, one level deep."""
    if isinstance(value, torch.Tensor):
        items: Any = [value]
    elif isinstance(value, (tuple, list)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    elif dataclasses.is_dataclass(value):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        items = []
    yield from (item for item in items if isinstance(item, torch.Tensor) and item.is_floating_point())


def _values(found: list[torch.Tensor]) -> str | None:
    """None when every tensor is finite (one reduction each, the hooks' common case); else which kinds of
    non-finite values they hold."""
    if all(bool(torch.isfinite(t).all()) for t in found):
        return None
    has_nan = any(bool(torch.isnan(t).any()) for t in found)
    has_inf = any(bool(torch.isinf(t).any()) for t in found)
    return " and ".join(name for name, seen in (("nan", has_nan), ("inf", has_inf)) if seen)


class _Watch:
    """The hooks' shared state: the first non-finite output, and each model's call count."""

    def __init__(self) -> None:
        self.found: NonFinite | None = None
        self.calls: dict[str, int] = {}

    def model_started(self, model: str) -> None:
        self.calls[model] = self.calls.get(model, 0) + 1

    def check(self, model: str, name: str, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if self.found is not None:
            return
        values = _values(list(tensors(output)))
        if values is None:
            return
        inputs_finite = all(bool(torch.isfinite(t).all()) for t in tensors(inputs))
        qualified = f"{model}.{name}" if name else model
        self.found = NonFinite(qualified, type(module).__name__, self.calls.get(model, 0), inputs_finite, values)


def first_non_finite(models: dict[str, torch.nn.Module], call: Callable[[], Any]) -> NonFinite | None:
    """Run `call` once, eagerly, with every submodule of `models` watched; the first non-finite output, or
    None when every watched output stayed finite."""
    watch = _Watch()
    handles = []
    for model_name, model in models.items():
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: watch the module it wraps
        handles.append(model.register_forward_pre_hook(lambda _m, _a, name=model_name: watch.model_started(name)))
        for name, module in model.named_modules():
            hook = lambda m, a, o, model=model_name, name=name: watch.check(model, name, m, a, o)  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.compiler.set_stance("force_eager"):
            call()
    finally:
        for handle in handles:
            handle.remove()
    return watch.found
