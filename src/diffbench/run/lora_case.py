"""A LoRA case's adapter on the cached pipeline: loaded (and fused, or hot-swap ready) for the case, then
removed exactly."""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, cast

import torch

from diffbench.errors import UnavailableError
from diffbench.measure.stages import denoiser_name
from diffbench.measure.timing import allocated_gib, timed
from diffbench.models.lora import PEFT_HINT, LoraSpec, lora_layer_count, lora_rank, random_lora_state_dict

logger = logging.getLogger(__name__)

# What diffusers' loading leaves on a module that had no adapter before: removed again afterwards.
_PEFT_ATTRIBUTES = ("peft_config", "_hf_peft_config_loaded", "_prepare_lora_hotswap_kwargs")


@dataclass
class ActiveAdapter:
    """The adapter a case runs with: its spec, mode, current adapter name and rank."""

    spec: LoraSpec
    mode: str
    name: str
    rank: int
    denoiser: str  # `unet` or `transformer`
    record: dict[str, Any] = field(default_factory=dict)


def _check_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UnavailableError(PEFT_HINT) from None


def _source(pipe: Any, spec: LoraSpec, seed: int = 0) -> Any:
    """What `load_lora_weights` is given: a random state dict, or the file's or hub id's path."""
    if spec.kind == "random":
        name = denoiser_name(pipe)
        rank = cast(int, spec.rank)  # a random spec always has one (parse_lora)
        return random_lora_state_dict(getattr(pipe, name), rank, spec.seed + seed, prefix=name)
    if spec.kind == "hub":
        return _fetch(lambda: _hub_folder(str(spec.source)), spec)
    return spec.source


def _hub_folder(repo_id: str) -> str:
    """The repo id itself online; offline, its folder in the Hugging Face cache (diffusers' offline mode
    refuses a repo id without a `weight_name`, even a cached one)."""
    from huggingface_hub import constants, snapshot_download

    return snapshot_download(repo_id, local_files_only=True) if constants.HF_HUB_OFFLINE else repo_id


def _hotswap_rank(pipe: Any, spec: LoraSpec) -> int:
    """The rank `enable_lora_hotswap` needs before loading: a random adapter's own, else read from the file."""
    if spec.kind == "random":
        return cast(int, spec.rank)  # a random spec always has one (parse_lora)
    state_dict = _fetch(lambda: pipe.lora_state_dict(_source(pipe, spec)), spec)
    return lora_rank(state_dict[0] if isinstance(state_dict, tuple) else state_dict)


def _fetch(load: Any, spec: LoraSpec) -> Any:
    """Run a diffusers load of `spec`, turning a missing hub adapter into a skip a user can act on."""
    try:
        return load()
    except (OSError, ValueError) as error:  # huggingface_hub's not-found errors are OSErrors
        if spec.kind != "hub":
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnavailableError(
            f"--lora {spec.source}: the adapter could not be loaded from the Hugging Face hub ({first}); offline "
            f"(HF_HUB_OFFLINE=1) it must already be in the cache: huggingface-cli download {spec.source}, or pass "
            "a local .safetensors file"
        ) from None


def load_adapter(pipe: Any, spec: LoraSpec, mode: str, device: str) -> ActiveAdapter:
    """Load `spec` into `pipe` unfused (the hot-swap preparation first for mode `hotswap`); the record
    gets the load time, the memory the adapter took and the layers it reached."""
    _check_peft()
    denoiser = denoiser_name(pipe)
    adapter = ActiveAdapter(spec, mode, spec.adapter_name, spec.rank or 0, denoiser)
    if mode == "hotswap":  # before the first adapter is loaded, as diffusers requires
        adapter.rank = _hotswap_rank(pipe, spec)
        pipe.enable_lora_hotswap(target_rank=adapter.rank)
    source = _source(pipe, spec)
    before = allocated_gib(device)
    load_s, _ = timed(device, _fetch, lambda: pipe.load_lora_weights(source, adapter_name=adapter.name), spec)
    after = allocated_gib(device)
    module = getattr(pipe, denoiser)
    if not adapter.rank:
        from peft import get_peft_model_state_dict

        adapter.rank = lora_rank(get_peft_model_state_dict(module, adapter_name=adapter.name))
    adapter.record.update(
        lora=str(spec),
        lora_mode=mode,
        lora_rank=adapter.rank,
        lora_load_s=load_s,
        lora_memory_gib=None if before is None or after is None else after - before,
        lora_layers=lora_layer_count(module),
    )
    logger.info(
        "LoRA %s (%s, rank %d): loaded in %.3f s into %d layers",
        spec,
        mode,
        adapter.rank,
        load_s,
        adapter.record["lora_layers"],
    )
    if not adapter.record["lora_layers"]:
        raise UnavailableError(
            f"--lora {spec}: no layer of the {denoiser} took the adapter (its keys match "
            f"none of {type(module).__name__}'s modules): an adapter for another model?"
        )
    return adapter


def fuse(pipe: Any, adapter: ActiveAdapter, device: str) -> None:
    """Merge the adapter into the weights it targets (`fuse_lora`), timed."""
    adapter.record["lora_fuse_s"], _ = timed(device, pipe.fuse_lora, adapter_names=[adapter.name])
    logger.info("LoRA %s fused in %.3f s", adapter.spec, adapter.record["lora_fuse_s"])


def _components(pipe: Any) -> dict[str, torch.nn.Module]:
    return {
        name: getattr(pipe, name)
        for name in getattr(pipe, "_lora_loadable_modules", [])
        if isinstance(getattr(pipe, name, None), torch.nn.Module)
    }


def _base_weights(pipe: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Exact copies (on the CPU) of the tensors of every layer a loaded adapter wraps: what fusing changes."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [
        (tensor, tensor.detach().to("cpu", copy=True))
        for component in _components(pipe).values()
        for layer in component.modules()
        if isinstance(layer, BaseTunerLayer)
        for tensor in (*layer.get_base_layer().parameters(), *layer.get_base_layer().buffers())
    ]


def _restore(pipe: Any, saved: list[tuple[torch.Tensor, torch.Tensor]], attributes: dict[str, set[str]]) -> None:
    """Remove every adapter, put fused-into weights back from their copies (fp16 unfusing does not
    round-trip exactly) and drop the attributes peft added."""
    pipe.unload_lora_weights()
    with torch.no_grad():
        for tensor, original in saved:
            tensor.copy_(original)
    for name, module in _components(pipe).items():
        for attribute in set(_PEFT_ATTRIBUTES) - attributes.get(name, set()):
            module.__dict__.pop(attribute, None)
        if lora_layer_count(module):
            raise RuntimeError(f"LoRA layers remain in {name} after unloading: the cached model is no longer clean")


@contextmanager
def adapter_in(pipe: Any, spec: LoraSpec | None, mode: str | None, device: str) -> Iterator[ActiveAdapter | None]:
    """`pipe` (the cached pipeline) with the adapter loaded, fused in mode `fused`, for one case; as it
    was, bit for bit, afterwards (the weights fusing changes are copied to host memory first)."""
    if spec is None or mode is None:
        yield None
        return
    attributes = {
        name: {a for a in _PEFT_ATTRIBUTES if a in vars(module)} for name, module in _components(pipe).items()
    }
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        adapter = load_adapter(pipe, spec, mode, device)
        if mode == "fused":
            saved = _base_weights(pipe)
            fuse(pipe, adapter, device)
        yield adapter
    finally:
        _restore(pipe, saved, attributes)


def uncompiled_view(pipe: Any) -> Any:
    """A pipeline over the same modules as `pipe` with torch.compile's wrappers taken off: eager images
    of the adapter state the compiled pipeline runs, and diffusers' pipeline-level LoRA calls, which
    skip a compiled component (they check `issubclass(model.__class__, ModelMixin)`)."""
    components = {}
    for name, component in pipe.components.items():
        component = getattr(component, "_orig_mod", component)
        if name == "vae" and component is not None and "decode" in vars(component):  # a compiled decode method
            component = copy.copy(component)
            del component.decode
        components[name] = component
    view = type(pipe)(**components)
    if pipe.scheduler is not None:
        view.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    view.set_progress_bar_config(disable=True)
    return view
