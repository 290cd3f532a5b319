"""A run's settings as plain JSON for run.json: what a script reads back, not a Python repr."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from diffbench.case import Resolution
from diffbench.results.shard import Shard


def plain(value: Any) -> Any:
    """`value` as JSON types: sizes and shards as typed (`1024x1024`, `0/2`), other dataclasses as objects."""
    if isinstance(value, (Resolution, Shard, Path)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def settings_record(settings: Any) -> dict[str, Any]:
    """Every field of RunSettings by name (None where not given), e.g. {"rounds": 6, "models": ["tiny-sdxl"]}."""
    return plain(settings)
