"""Shared helpers of the harness's own tests: a stand-in benchmark fixture and settings builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffbench.config.matrix import build_settings
from diffbench.results.records import RunFolder
from diffbench.run.isolated_case import RoundsBenchmark
from diffbench.run.session import BenchSession


class RecordingBenchmark(RoundsBenchmark):
    """The isolated child's stand-in for pytest-benchmark's fixture, also keeping the rounds an
    isolated case hands over."""

    def __init__(self) -> None:
        super().__init__()
        self.replayed: list[float] | None = None

    def replay_rounds(self, seconds: list[float]) -> None:
        """What an isolated case hands pytest-benchmark: the round times measured in its child."""
        self.replayed = list(seconds)


def make_session(tmp_path: Path, **raw: Any) -> BenchSession:
    """A BenchSession over tiny models with fast defaults; `raw` are option values as typed."""
    values = {
        "models": "tiny-sdxl",
        "backends": "eager",
        "rounds": 2,
        "prompts": 2,
        "steps": 3,
        "results_dir": str(tmp_path / "runs"),
    }
    values.update(raw)
    settings = build_settings(values)
    return BenchSession(settings, RunFolder(settings.results_dir))
