"""The settings a command line asks for, checked up front (build_settings, over the option table), and the
matrix of cases they expand to."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from diffbench.backends.base import get_backend_class
from diffbench.case import Case, Resolution
from diffbench.config.options import OPTIONS
from diffbench.config.parsers import parse_backend_options, parse_lora_options
from diffbench.config.settings import RunSettings
from diffbench.errors import OptionError
from diffbench.models.catalog import MODELS, ModelSpec


def raw_values(config: Any) -> dict[str, Any]:
    """Each option's value as given, by name (None, or its `default`, when absent)."""
    return {option.name: config.getoption(f"diffbench_{option.name}") for option in OPTIONS}


def build_settings(raw: dict[str, Any]) -> RunSettings:
    """Validate the raw option values (as typed, None when absent; by Option.name) into RunSettings: each
    option of the table that is given through its parser, in the table's order, then the options that
    depend on others (backend options on the backends, the LoRA modes on --lora-switch), the backends'
    options by constructing each backend, and every model at every size."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = raw.get(option.name)
        if option.parse is None or value is None:
            continue  # no field, set below, or absent: the field's default
        parsed = option.parse(value)
        values.update(zip(option.fields, parsed if len(option.fields) > 1 else (parsed,)))
    backends = values.get("backends", RunSettings.backends)
    values["backend_options"] = parse_backend_options(
        raw.get("backend_config"), raw.get("compiler_config"), raw.get("compile_mode"), backends
    )
    values.update(parse_lora_options(raw))
    settings = RunSettings(**values)
    # Construct each backend once now, so bad options fail before any work: also those given options
    # with --backend-config but not selected, whose options would otherwise go unread.
    for name in dict.fromkeys([*settings.backends, *settings.backend_options]):
        get_backend_class(name)(settings.backend_options.get(name))
    for model in settings.models:  # a sweep size must suit every model selected, as --resolutions must
        model_resolutions(replace(settings, resolutions=settings.resolution_sweep or None), MODELS[model])
    expand_matrix(settings)  # raises for an empty matrix or a size a model cannot take
    return settings


def model_resolutions(settings: RunSettings, spec: ModelSpec) -> tuple[Resolution, ...]:
    """The sizes a model runs at; each must divide by the model's latent/patch factor."""
    sizes = settings.resolutions or tuple(Resolution.parse(r) for r in spec.default_resolutions)
    for size in sizes:
        if size.height % spec.resolution_multiple or size.width % spec.resolution_multiple:
            raise OptionError(
                f"resolution {size} does not divide by {spec.resolution_multiple}, which {spec.name} "
                f"needs; use e.g. {size.height // spec.resolution_multiple * spec.resolution_multiple}"
            )
    return sizes


def expand_matrix(settings: RunSettings) -> list[Case]:
    """Every case model x task x resolution x backend, in the order that builds each model once."""
    # Eager first in each group: its timing makes the speedups and its images the reference.
    backends = sorted(settings.backends, key=lambda name: name != "eager")
    cases: list[Case] = []
    lora = settings.lora.label if settings.lora else None
    for model in settings.models:
        spec = MODELS[model]
        for task in settings.tasks:
            if task not in spec.tasks:
                continue  # e.g. ip2p has no text-to-image pipeline: no case, not a skip
            for resolution in model_resolutions(settings, spec):
                for lora_mode in settings.lora_modes or (None,):
                    cases.extend(Case(model, task, resolution, backend, lora, lora_mode) for backend in backends)
    if not cases:
        supported = "; ".join(f"{m}: {', '.join(MODELS[m].tasks)}" for m in settings.models)
        raise OptionError(f"no case to run: the models selected support only these tasks: {supported}")
    return cases
