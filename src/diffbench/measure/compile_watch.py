"""What torch.compile did during a stretch of work, read from torch's own counters and logs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

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
    cache: tuple[int, int, int, int] = (0, 0, 0, 0)  # FX-graph hits, misses; AOTAutograd hits, misses

    def as_record(self, prefix: str) -> dict[str, Any]:
        fx_hits, fx_misses, aot_hits, aot_misses = self.cache
        return {
            f"{prefix}_graphs_compiled": self.graphs,
            f"{prefix}_recompile_limit_hits": self.limit_hits,
            f"{prefix}_fxgraph_cache_hits": fx_hits,
            f"{prefix}_fxgraph_cache_misses": fx_misses,
            f"{prefix}_aot_cache_hits": aot_hits,
            f"{prefix}_aot_cache_misses": aot_misses,
            **({"compile_cache": self.cache_state} if prefix == "warmup" else {}),
        }

    @property
    def cache_state(self) -> str:
        """`cold` (every compiled graph missed inductor's caches), `warm` (every one hit), `partial`, or
        `none` (nothing was compiled, or the caches were off): a cold compile is no warm one's regression."""
        fx_hits, fx_misses, aot_hits, aot_misses = self.cache
        hits, misses = fx_hits + aot_hits, fx_misses + aot_misses
        if not hits and not misses:
            return "none"
        return "warm" if not misses else "cold" if not hits else "partial"


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
        end = _counts()
        messages = tuple(self._handler.messages)
        delta = tuple(after - before for after, before in zip(end, self._start))
        cache = cast(tuple[int, int, int, int], delta[2:])  # _counts' last four
        self.activity = CompileActivity(delta[0], delta[1], len(messages), messages, cache)


def _counts() -> tuple[int, ...]:
    """Dynamo's unique graphs and compiled frames; inductor's FX-graph cache and AOTAutograd's cache
    hits and misses (torch counts them as it looks each compiled graph up)."""
    from torch._dynamo.utils import counters

    return (
        counters["stats"]["unique_graphs"],
        counters["frames"]["ok"],
        counters["inductor"]["fxgraph_cache_hit"],
        counters["inductor"]["fxgraph_cache_miss"],
        counters["aot_autograd"]["autograd_cache_hit"],
        counters["aot_autograd"]["autograd_cache_miss"],
    )
