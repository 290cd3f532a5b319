"""What torch.compile did during a stretch of work, read from torch's own counters and logs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

# Dynamo logs this (and runs the frame eagerly from then on) when a function has been recompiled
# more times than torch._dynamo.config.recompile_limit allows.
_LIMIT_LOGGER = "torch._dynamo.convert_frame"
_LIMIT_MARK = "hit config."


@dataclass
class CompileActivity:
    """Graphs compiled (a first compile or a recompile) and recompile-limit hits in one stretch."""

    graphs: int = 0
    frames: int = 0
    limit_hits: int = 0
    limit_messages: tuple[str, ...] = ()

    def as_record(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}_graphs_compiled": self.graphs, f"{prefix}_recompile_limit_hits": self.limit_hits}


class _LimitHits(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if _LIMIT_MARK in message:
            self.messages.append(message.splitlines()[0])


class CompileWatch:
    """`with CompileWatch() as watch: ...` then `watch.activity`: dynamo's unique-graph and compiled-frame
    counters over the block (they only grow, so the difference is what the block compiled), and the
    recompile-limit warnings it logged, after which torch silently runs that function eagerly."""

    def __enter__(self) -> CompileWatch:
        self._start = _counts()
        self._handler = _LimitHits()
        self._logger = logging.getLogger(_LIMIT_LOGGER)
        self._logger.addHandler(self._handler)
        self.activity = CompileActivity()
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)
        graphs, frames = _counts()
        messages = tuple(self._handler.messages)
        self.activity = CompileActivity(graphs - self._start[0], frames - self._start[1], len(messages), messages)


def _counts() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], counters["frames"]["ok"]
