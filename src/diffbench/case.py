"""One benchmark case: a model, a task, a resolution and a backend; its id is the pytest id. And what can come
of it: its Status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from diffbench.errors import OptionError

TASKS = {"t2i": "text-to-image", "i2i": "image-to-image", "controlnet": "text-to-image conditioned on a control image"}
# What runs without --tasks: controlnet cases run only when named, so default matrices keep their size.
DEFAULT_TASKS = ("t2i", "i2i")


class Status(str, Enum):
    """A case's outcome, as `record["status"]` keeps it: a member equals its string and JSON writes it as one,
    so records on disk hold `"ok"`, `"oom"`, ... (str and Enum rather than StrEnum: Python 3.10 has none)."""

    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"
    OOM = "oom"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """The name tables show: `OOM` for oom, the value for the others."""
        return "OOM" if self is Status.OOM else self.value


def status_name(status: str) -> str:
    """The name tables show for a recorded status (`OOM` for oom); an unknown one as it is."""
    try:
        return Status(status).label
    except ValueError:
        return status


_RESOLUTION = re.compile(r"^(\d+)(?:x(\d+))?$")


@dataclass(frozen=True, order=True)
class Resolution:
    """Output size in pixels; written `HxW` in records and as `H` in ids when square."""

    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> "Resolution":
        match = _RESOLUTION.match(text.strip().lower())
        if not match:
            raise OptionError(
                f"resolution {text!r} is not a size: write 1024 (square) or HEIGHTxWIDTH such as 768x1344"
            )
        height = int(match.group(1))
        width = int(match.group(2) or height)
        if height <= 0 or width <= 0:
            raise OptionError(f"resolution {text!r} must be positive")
        return cls(height, width)

    @property
    def label(self) -> str:
        """The short form used in case ids: `1024` when square, else `768x1344`."""
        return str(self.height) if self.height == self.width else f"{self.height}x{self.width}"

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


@dataclass(frozen=True)
class Case:
    """A cell of the matrix model x task x resolution x backend (x LoRA adapter and mode with --lora)."""

    model: str
    task: str
    resolution: Resolution
    backend: str
    lora: str | None = None  # the adapter's label (`r64`), with --lora
    lora_mode: str | None = None  # unfused | fused | hotswap

    @property
    def id(self) -> str:
        return f"{self.model}-{self.task}-{self.resolution.label}-{self.lora_part}{self.backend}"

    @property
    def lora_part(self) -> str:
        """`lora-r64-fused-` in LoRA cases' ids (so `-k lora` selects them), else nothing."""
        return f"lora-{self.lora}-{self.lora_mode}-" if self.lora else ""

    @property
    def reference_key(self) -> tuple:
        """Cases sharing this key are compared against the same eager output (with the same adapter state)."""
        key = (self.model, self.task, self.resolution)
        return key + (self.lora, self.lora_mode) if self.lora else key

    def __str__(self) -> str:
        return self.id
