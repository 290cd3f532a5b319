"""The result record of a case and the run folder that keeps every record as it is made."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from diffbench.results.schema import FIELDS

# The keys every record has (issue #2), in this order; values are None where a metric does not apply or was
# not reached.
RECORD_KEYS = tuple(field.key for field in FIELDS if field.every)


def new_record(**fields: Any) -> dict[str, Any]:
    record = dict.fromkeys(RECORD_KEYS)
    record.update(fields)
    return record


def json_safe(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None (JSON has neither)."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path` (same suffix, so writers pick the format from it) and
    rename it over `path` once written: a reader, or a crash, never sees half a file."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


class RunFolder:
    """`<results_dir>/<run id>/`: results.jsonl (one line per case, appended and fsynced as each
    case ends, so a crash or Ctrl-C loses nothing finished), run.json and images/."""

    def __init__(self, results_dir: Path, run_id: str | None = None):
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = Path(results_dir) / self.run_id
        suffix = 1
        while (self.path / "results.jsonl").exists():  # never append to another run's file
            suffix += 1
            self.path = Path(results_dir) / f"{self.run_id}-{suffix}"
        self.images = self.path / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.results = self.path / "results.jsonl"

    @classmethod
    def existing(cls, path: str | Path, run_id: str) -> "RunFolder":
        """The folder of a run in progress, for a child process that adds images to it."""
        folder = cls.__new__(cls)
        folder.run_id, folder.path = run_id, Path(path)
        folder.images, folder.results = folder.path / "images", folder.path / "results.jsonl"
        return folder

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_text_atomically(self.path / "run.json", json.dumps(json_safe(meta), indent=2))

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(json_safe(record), allow_nan=False)
        with open(self.results, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def save_image(self, name: str, image: np.ndarray) -> str:
        """Save a float [0, 1] H x W x C image as PNG; returns its path relative to the run folder."""
        pixels = (np.nan_to_num(image, nan=0.0).clip(0.0, 1.0) * 255.0).round().astype(np.uint8)
        target = self.images / f"{name}.png"
        Image.fromarray(pixels).save(target)
        return str(target.relative_to(self.path))


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of a results.jsonl file (a torn last line from a killed run is ignored)."""
    lines = Path(path).read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise
    return records
