"""What crosses the process boundary when a case is measured in a child process (`--isolate`, or a
backend that can kill the interpreter): the request, the eager references, and the stand-in fixture.
The child (diffbench.run.child) builds, warms up, times and checks quality exactly as in-process and
sends back the record, its raw round times and the eager images; this module imports nothing of the session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from diffbench.case import Case

if TYPE_CHECKING:
    from diffbench.config.settings import RunSettings


@dataclass
class CaseRequest:
    settings: "RunSettings"
    run_path: str
    run_id: str
    case: Case
    backend_module: str  # imported in the child, so a backend registered outside diffbench is found
    reference_images: list[np.ndarray] | None = None
    reference_e2e_s: float | None = None


@dataclass
class Reference:
    """The eager images of a (model, task, resolution), and eager's E2E median if it was timed."""

    images: list[np.ndarray]
    e2e_s: float | None = None
    rounds_s: list[float] | None = None  # eager's timed rounds, for a speedup's interval


class RoundsBenchmark:
    """Stands in for pytest-benchmark's fixture inside the child: calls the target `rounds` times."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.group: str | None = None

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, iterations=1, warmup_rounds=0):
        result = None
        for _ in range(warmup_rounds + rounds * iterations):
            if setup is not None:  # as pytest-benchmark: before each call, outside its timing
                setup()
            result = target(*args, **(kwargs or {}))
        return result


def replay_rounds(benchmark: Any, seconds: list[float]) -> None:
    """Give pytest-benchmark the round times measured in the child, so its table and history hold
    them (and not the child's lifetime, which includes loading and compiling)."""
    if hasattr(benchmark, "replay_rounds"):  # the tests' stand-in fixture
        benchmark.replay_rounds(seconds)
        return
    if getattr(benchmark, "disabled", False) or not seconds:
        return
    # pytest-benchmark has no public API to add externally timed rounds; these two private names
    # are what `pedantic` itself uses (pytest-benchmark 4 and 5).
    benchmark._mode = "benchmark.pedantic(...)"
    stats = benchmark._make_stats(1)
    for duration in seconds:
        stats.update(duration)
