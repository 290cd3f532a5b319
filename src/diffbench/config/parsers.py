"""The parsers and checks of option values: each turns a command-line string into a value, or raises an
OptionError that names the flag, the valid values and the fix (diffbench.config.options' table names them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, UnidentifiedImageError

from diffbench.backends.base import get_backend_class
from diffbench.case import Resolution
from diffbench.config.option import default_of
from diffbench.config.settings import DTYPE_ALIASES, DTYPES
from diffbench.errors import OptionError
from diffbench.measure.quality import QualityFloor
from diffbench.models.catalog import get_model

WEIGHT_KINDS = ("hub", "random", "tiny")


def split_values(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def choose(values: list[str], valid: list[str], what: str) -> tuple[str, ...]:
    for value in values:
        if value not in valid:
            raise OptionError(f"unknown {what} {value!r}; valid {what}s: {', '.join(valid)}")
    return tuple(dict.fromkeys(values))


def check_positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:  # the flag as typed: `max_warmups` is --max-warmups
        raise OptionError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def names(what: str, field: str, valid: Callable[[], list[str]]) -> Callable[[str], tuple[str, ...]]:
    """A parser of comma-separated `what`s, each one of `valid()`, for RunSettings' `field`: none, its default."""
    return lambda text: choose(split_values(text) or list(default_of(field)), valid(), what)


def one_of(what: str, field: str, valid: tuple[str, ...]) -> Callable[[str], str]:
    """A parser of one of `valid` for RunSettings' `field`: empty, its default."""
    return lambda text: choose([text or default_of(field)], list(valid), what)[0]


def count(name: str, minimum: int = 1) -> Callable[[int], int]:
    """A parser of a count of at least `minimum`, naming the flag as typed (`max_warmups` is --max-warmups)."""

    def parse(value: int) -> int:
        check_positive(name, value, minimum)
        return value

    return parse


def as_is(value: Any) -> Any:
    """The value as given (--prompt, --variant, --seed)."""
    return value


def parse_dtype(text: str) -> str:
    """`--dtype`: auto or a dtype's name, aliases (fp16, bf16, fp32, half) to it."""
    dtype = DTYPE_ALIASES.get(text or "auto", text or "auto")
    if dtype not in ("auto", *DTYPES):
        raise OptionError(f"unknown --dtype {text!r}; valid: auto, {', '.join(DTYPES)}")
    return dtype


def results_dir(text: str) -> Path:
    """`--results-dir`; empty: RunSettings' default."""
    return Path(text) if text else default_of("results_dir")


def positive_timeout(value: float) -> float:
    """`--case-timeout`: seconds, more than 0."""
    if value <= 0:
        raise OptionError(f"--case-timeout must be a positive number of seconds, got {value}")
    return value


def sizes(text: str) -> tuple[Resolution, ...]:
    """Comma-separated sizes, 1024 or HEIGHTxWIDTH."""
    return tuple(Resolution.parse(item) for item in split_values(text))


def steps_sweep(text: str) -> tuple[int, ...]:
    """`--steps-sweep`: positive step counts, two different ones at least (a line is fitted through them)."""
    steps = positive_ints("--steps-sweep", text)
    if steps and len(set(steps)) < 2:
        raise OptionError(f"--steps-sweep needs at least two different step counts to fit a line, got {text}")
    return steps


def check_device(device: str) -> str:
    """`--device`: a kind this harness knows, and, when CUDA is named, a CUDA device that is there."""
    if device != "auto" and device.split(":")[0] not in ("cpu", "cuda"):
        raise OptionError(f"unknown --device {device!r}; valid: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.partition(":")[2]
        if count == 0:
            raise OptionError(
                f"--device {device}: torch {torch.__version__} sees no CUDA GPU here; "
                "use --device cpu (or auto) on this machine"
            )
        if index and (not index.isdigit() or int(index) >= count):
            raise OptionError(f"--device {device}: this machine has CUDA devices 0 to {count - 1}")
    return device


def parse_weights(text: str | None) -> tuple[str, dict[str, str]]:
    """`--weights random` or `--weights random,realvisxl=/models/RealVisXL_V4.0.safetensors`."""
    default, per_model = "hub", {}
    for part in split_values(text):
        name, has_model, value = part.partition("=")
        if has_model:
            get_model(name)
            per_model[name] = check_weights(value)
        else:
            default = check_weights(part)
    return default, per_model


def check_weights(value: str) -> str:
    if value in WEIGHT_KINDS:
        return value
    path = Path(value).expanduser()
    if not path.exists():
        raise OptionError(
            f"--weights {value!r} is neither one of {', '.join(WEIGHT_KINDS)} nor an existing "
            "local folder or checkpoint file"
        )
    if path.is_dir() and not (path / "model_index.json").is_file():
        raise OptionError(f"--weights folder {value!r} has no model_index.json: not a saved diffusers pipeline")
    if path.is_file():
        from diffbench.models.single_file import check_checkpoint_file

        check_checkpoint_file(path)
    return str(path)


def check_image(value: str | None, flag: str = "--input-image") -> Path | None:
    if not value:
        return None
    try:
        with Image.open(value) as image:
            image.verify()
    except (OSError, UnidentifiedImageError) as error:
        raise OptionError(f"{flag} {value!r} is not a readable image: {error}; give a PNG or JPEG file") from None
    return Path(value)


def parse_quality_floors(text: str | None) -> dict[str, QualityFloor]:
    """`--quality-floor compile=0.97/32,eager=0.999/50` (SSIM/PSNR dB per backend)."""
    floors = {}
    for part in split_values(text):
        backend, _, values = part.partition("=")
        get_backend_class(backend)
        try:
            ssim, psnr = (float(v) for v in values.split("/"))
        except ValueError:
            raise OptionError(f"--quality-floor {part!r}: write BACKEND=SSIM/PSNR, e.g. compile=0.97/32") from None
        if not 0.0 <= ssim <= 1.0:
            raise OptionError(f"--quality-floor {part!r}: SSIM must lie in [0, 1]")
        floors[backend] = QualityFloor(ssim=ssim, psnr=psnr)
    return floors


def parse_compiler_config(text: str | None, mode: str | None) -> dict[str, Any]:
    """The JSON object of `--compiler-config`, with `--compile-mode` folded in."""
    options: dict[str, Any] = {}
    if text:
        options = json_object(text, "--compiler-config")
    if mode:
        options["mode"] = mode
    return options


def json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise OptionError(f"{flag} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise OptionError(f"{flag} must be a JSON object, got {text!r}")
    return value


def parse_backend_options(
    backend_configs: list[str] | None, compiler_config: str | None, compile_mode: str | None, backends: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Options per backend: `--compiler-config`/`--compile-mode` for the compile family, then
    each `--backend-config NAME=JSON` (merged over the former for that backend)."""
    options: dict[str, dict[str, Any]] = {}
    family_options = parse_compiler_config(compiler_config, compile_mode)
    for name in backends:
        if family_options and get_backend_class(name).config_family == "compile":
            options[name] = dict(family_options)
    for text in backend_configs or []:
        name, has_name, body = text.partition("=")
        name = name.strip()
        if not has_name or not name:
            raise OptionError(f"--backend-config {text!r}: write NAME=JSON, e.g. 'deepcache={{\"cache_interval\": 3}}'")
        get_backend_class(name)
        options.setdefault(name, {}).update(json_object(body, f"--backend-config {name}"))
    return options


def parse_lora_options(raw: dict[str, Any]) -> dict[str, Any]:
    """`--lora`, `--lora-modes` and `--lora-switch`, checked together (diffbench.run.lora_case has the modes)."""
    from diffbench.models.lora import DEFAULT_MODES, MODES, SWITCHES, parse_lora

    text, modes, switch = raw.get("lora"), split_values(raw.get("lora_modes")), raw.get("lora_switch")
    if switch is True:  # the flag given without a list (or from Python): every scenario
        switch = ",".join(SWITCHES)
    switch = choose(split_values(switch), list(SWITCHES), "--lora-switch scenario") if switch else ()
    if not text:
        if modes or switch:
            raise OptionError(f"--{'lora-modes' if modes else 'lora-switch'} needs --lora, e.g. --lora random:64")
        return {}
    default = (*DEFAULT_MODES, "hotswap") if switch else DEFAULT_MODES  # the switch is measured with and without
    return {
        "lora": parse_lora(text),
        "lora_modes": choose(modes, list(MODES), "LoRA mode") if modes else default,
        "lora_switch": switch,
    }


def positive_ints(flag: str, text: str | None) -> tuple[int, ...]:
    values = []
    for item in split_values(text):
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value <= 0:
            raise OptionError(f"{flag} takes comma-separated positive integers, e.g. 1,2,4,8; got {item!r}")
        values.append(value)
    return tuple(values)
