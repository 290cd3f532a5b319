"""Third-party log lines known to say nothing about this machine's benchmarks, kept off the `diffbench`
command's output (each with the reason it is noise)."""

from __future__ import annotations

import logging
from typing import Callable

KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    # torchao tries to load every optional C++/CUDA kernel library it ships (_C_mxfp8, _C_cutlass_90a, ...);
    # a build without them (the CPU, another Python or CUDA) warns once per library. diffbench's int8 and fp8
    # backends use torchao's quantize_ with torch's own kernels, never these libraries.
    "torchao": ("Failed to load ",),
    # torchao registers its enums with torch's pytree the old way; torch 2.13 warns that this is deprecated,
    # a note for torchao's developers.
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
}


class _DropLines(logging.Filter):
    def __init__(self, marks: tuple[str, ...]):
        super().__init__()
        self.marks = marks

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(mark in message for mark in self.marks)


def quiet_known_noise() -> Callable[[], None]:
    """Install the filters on the loggers concerned (before those packages are imported); returns the undo."""
    installed = [(logging.getLogger(name), _DropLines(marks)) for name, marks in KNOWN_NOISE.items()]
    for logger, line_filter in installed:
        logger.addFilter(line_filter)

    def undo() -> None:
        for logger, line_filter in installed:
            logger.removeFilter(line_filter)

    return undo
