"""One benchmark case measured in a child process (`--isolate`, or a backend that can kill the
interpreter): the child builds, warms up, times and checks quality exactly as in-process, and sends
back the record, its raw round times and the eager images; the parent records and reports them."""

from __future__ import annotations

import os

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from diffbench.case import Case

if TYPE_CHECKING:
    from diffbench.settings import RunSettings


@dataclass
class CaseRequest:
    settings: "RunSettings"
    run_path: str
    run_id: str
    case: Case
    backend_module: str  # imported in the child, so a backend registered outside diffbench is found
    reference_images: list[np.ndarray] | None = None
    reference_e2e_s: float | None = None


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


def measure_in_child(request: CaseRequest) -> dict[str, Any]:
    """The child's side: run the case, never raise for the case's own failures (they are outcomes)."""
    import importlib

    from diffbench.catalog import MODELS
    from diffbench.records import RunFolder
    from diffbench.runner import BenchSession
    from diffbench.runner_children import Reference

    importlib.import_module(request.backend_module)
    session = BenchSession(request.settings, RunFolder.existing(request.run_path, request.run_id))
    case, spec = request.case, MODELS[request.case.model]
    if request.reference_images is not None:
        session.references[case.reference_key] = Reference(request.reference_images, request.reference_e2e_s)
    record = session._new_record(case, spec)
    try:
        session._measure(case, spec, record, RoundsBenchmark())
    except Exception as error:  # every outcome goes back to the parent in the record
        if record["status"] == "running":  # a QualityError has already recorded its floor
            record.update(session.outcome(case, error))
    reference = session.references.get(case.reference_key)
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:  # --compile-cache-check: which folder this child compiled into
        record["inductor_cache_dir"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    return {
        "record": record,
        "reference_images": reference.images if reference is not None else None,
        "reference_e2e_s": reference.e2e_s if reference is not None else None,
    }


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
