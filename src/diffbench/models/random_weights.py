"""Random-weight pipelines built offline from the committed component configs in fixtures/models."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from diffbench.models.fixture_files import fixtures_dir
from diffbench.models.tokenizers import copy_tokenizer

logger = logging.getLogger(__name__)

#: Per-arch map from tokenizer component to its folder in fixtures/tokenizers (not part of a hub folder).
TOKENIZER_SOURCES_FILE = "tokenizer_sources.json"
CONFIG_FILES = ("config.json", "scheduler_config.json")


def available_archs() -> list[str]:
    """Names of the arch folders (each holding a model_index.json)."""
    return sorted(path.parent.name for path in (fixtures_dir() / "models").glob("*/model_index.json"))


def arch_dir(arch: str) -> Path:
    """The config folder of arch, or a FileNotFoundError naming the valid archs."""
    folder = fixtures_dir() / "models" / arch
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"unknown arch {arch!r} (no {folder}/model_index.json); valid: {available_archs()}")
    return folder


def read_json(path: Path) -> dict:
    """Parse one JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def component_classes(arch: str) -> dict[str, tuple[str, str]]:
    """Component name -> (library, class name) from model_index.json; null components left out."""
    index = read_json(arch_dir(arch) / "model_index.json")
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None
    }


def pipeline_options(arch: str) -> dict:
    """Pipeline arguments that are not built components: flags (force_zeros_for_empty_prompt, ...) and None
    for the components model_index.json lists as [null, null] (safety_checker, ...)."""
    options = {}
    for name, value in read_json(arch_dir(arch) / "model_index.json").items():
        if name.startswith("_"):
            continue
        if not isinstance(value, list):
            options[name] = value
        elif value[0] is None:
            options[name] = None
    return options


def tokenizer_sources(arch: str) -> dict[str, str]:
    """Tokenizer component -> folder name under fixtures/tokenizers."""
    path = arch_dir(arch) / TOKENIZER_SOURCES_FILE
    return read_json(path) if path.is_file() else {}


def import_class(library: str, class_name: str) -> type[Any]:
    """The class a model_index entry names, e.g. ("diffusers", "AutoencoderKL")."""
    return getattr(importlib.import_module(library), class_name)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set torch's default floating dtype for the block, restoring the previous one even on error."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def component_seed(seed: int, name: str) -> int:
    """One seed per component, so a component's weights do not depend on which others were built."""
    return seed + zlib.crc32(name.encode())


def is_model_class(cls: type[Any]) -> bool:
    """Whether cls is a torch module built from a config (a model), not a scheduler or tokenizer."""
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def is_diffusers_model_class(cls: type[Any]) -> bool:
    """Whether cls is a diffusers model (built with from_config) rather than a transformers one."""
    from diffusers import ModelMixin  # deferred: importing diffusers takes seconds

    return issubclass(cls, ModelMixin)


def instantiate_model(cls: type[Any], config_dir: Path) -> torch.nn.Module:
    """A freshly initialised model of cls from config_dir, on torch's current default device and dtype."""
    if is_diffusers_model_class(cls):
        return cls.from_config(cls.load_config(config_dir))
    # transformers builds sub-models (CLIPTextModelWithProjection.text_model) in the config's dtype, which
    # the hub configs set to float16: replace it with the dtype we build in.
    config = cls.config_class.from_pretrained(config_dir)
    dtype_attribute = "torch_dtype" if "dtype" not in dir(config) else "dtype"  # transformers 4 | 5
    setattr(config, dtype_attribute, torch.get_default_dtype())
    return cls(config)


def keep_modules_in_float32(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Upcast the modules that from_pretrained(torch_dtype=dtype) would keep in float32 (e.g. T5's `wo`)."""
    names = set()
    # transformers keeps `_keep_in_fp32_modules` in float32 for float16 only; diffusers for any dtype.
    if dtype == torch.float16 or (is_diffusers_model_class(type(model)) and dtype != torch.float32):
        names |= set(getattr(model, "_keep_in_fp32_modules", None) or [])
    if dtype in (torch.float16, torch.bfloat16):
        names |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or [])
    for module_name, module in model.named_modules():
        if names & set(module_name.split(".")):
            module.to(torch.float32)


def build_model(
    arch: str, name: str, cls: type[Any], torch_dtype: torch.dtype, device: str | torch.device, seed: int
) -> torch.nn.Module:
    """One model component with seeded random weights, created directly on device in torch_dtype."""
    return build_model_from_folder(arch_dir(arch) / name, name, cls, torch_dtype, device, seed)


def build_model_from_folder(
    config_dir: Path,
    name: str,
    cls: type[Any],
    torch_dtype: torch.dtype,
    device: str | torch.device,
    seed: int,
    initialize: Callable[[torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """A model of cls from the config in config_dir, seeded by (seed, name), created directly on device in
    torch_dtype; `initialize` may change its fresh weights under the same seeded generator."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=rng_devices(device)), default_dtype(torch_dtype), device:
        torch.manual_seed(component_seed(seed, name))
        model = instantiate_model(cls, config_dir)
        if initialize is not None:
            with torch.no_grad():
                initialize(model)
    keep_modules_in_float32(model, torch_dtype)
    return model.eval()


def rng_devices(device: torch.device) -> list[int]:
    """CUDA device indices whose random state fork_rng must save and restore."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def build_tokenizer(arch: str, name: str, cls: type[Any]):
    """A tokenizer component loaded from fixtures/tokenizers (assembled in a temporary folder)."""
    sources = tokenizer_sources(arch)
    if name not in sources:
        raise KeyError(f"{arch}/{TOKENIZER_SOURCES_FILE} has no entry for {name!r}; it has {sorted(sources)}")
    with tempfile.TemporaryDirectory(prefix="diffbench-tokenizer-") as folder:
        return cls.from_pretrained(copy_tokenizer(sources[name], Path(folder), fixtures_dir() / "tokenizers"))


def build_component(arch: str, name: str, torch_dtype: torch.dtype, device: str | torch.device, seed: int):
    """Build one component of arch: a random-weight model, a scheduler or a tokenizer."""
    library, class_name = component_classes(arch)[name]
    cls = import_class(library, class_name)
    if is_model_class(cls):
        return build_model(arch, name, cls, torch_dtype, device, seed)
    if name in tokenizer_sources(arch) or "tokenizer" in class_name.lower():
        return build_tokenizer(arch, name, cls)
    return cls.from_pretrained(arch_dir(arch) / name)  # schedulers and other config-only components


def accepted_arguments(pipeline_cls: type[Any], arguments: dict) -> dict:
    """The arguments pipeline_cls.__init__ takes; fails naming any required one that is missing."""
    parameters = inspect.signature(pipeline_cls.__init__).parameters
    required = {name for name, parameter in parameters.items() if parameter.default is inspect.Parameter.empty}
    missing = sorted(required - {"self"} - set(arguments))
    if missing:
        raise ValueError(f"{pipeline_cls.__name__} needs components {missing} that this arch does not have")
    return {name: value for name, value in arguments.items() if name in parameters}


def build_random_pipeline(
    arch: str,
    torch_dtype: torch.dtype,
    device: str | torch.device,
    pipeline_cls: type[Any] | None = None,
    seed: int = 0,
):
    """The pipeline of arch with random weights: same seed, same weights, bit for bit."""
    index = read_json(arch_dir(arch) / "model_index.json")
    pipeline_cls = pipeline_cls or import_class("diffusers", index["_class_name"])
    logger.info("building %s with random weights (%s, %s, seed %d)", arch, torch_dtype, device, seed)
    components = {name: build_component(arch, name, torch_dtype, device, seed) for name in component_classes(arch)}
    arguments = accepted_arguments(pipeline_cls, {**pipeline_options(arch), **components})
    return pipeline_cls(**arguments)


def count_parameters(arch: str, component: str) -> int:
    """Parameters of one model component, counted on the meta device (no memory, no init cost)."""
    library, class_name = component_classes(arch)[component]
    cls = import_class(library, class_name)
    if not is_model_class(cls):
        raise ValueError(f"{arch}/{component} is a {class_name}, not a model with parameters")
    return count_folder_parameters(cls, arch_dir(arch) / component)


def count_folder_parameters(cls: type[Any], config_dir: Path) -> int:
    """Parameters of a cls model built from the config in config_dir, on the meta device."""
    with torch.device("meta"):
        model = instantiate_model(cls, config_dir)
    return sum(parameter.numel() for parameter in model.parameters())


def materialize_config_folder(arch: str, dest: Path) -> Path:
    """Write a loadable pipeline folder without weights to dest: model_index, configs and tokenizers."""
    source, dest = arch_dir(arch), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "model_index.json", dest / "model_index.json")
    for name in component_classes(arch):
        for file_name in CONFIG_FILES:
            if (source / name / file_name).is_file():
                (dest / name).mkdir(exist_ok=True)
                shutil.copy2(source / name / file_name, dest / name / file_name)
    for name, tokenizer in tokenizer_sources(arch).items():
        copy_tokenizer(tokenizer, dest / name, fixtures_dir() / "tokenizers")
    return dest
