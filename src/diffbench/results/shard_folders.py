"""Shards' folders as .ci/shard-run writes them (shard.json beside the shard's run folder), and the
account of a merged run's shards: which were merged, had no case, failed or are missing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from diffbench.errors import DiffbenchError, OptionError
from diffbench.results.shard import Shard, parse_shard

SHARD_FILE = "shard.json"  # what .ci/shard-run leaves in a shard's folder: {"shard": "1/4", "exit_status": 0}
NO_CASE = 5  # pytest's exit status when a shard had no case to run


class MergeError(DiffbenchError):
    """The runs cannot be merged (a case in two of them, an output folder that already holds a run)."""


@dataclass
class ShardFolder:
    """A shard's folder as .ci/shard-run writes it: shard.json and the shard's run folder, if it made one."""

    folder: Path
    shard: Shard | None  # None: no shard.json; the runs' settings say which shard it was
    exit_status: int | None  # pytest's; None: no shard.json, so the shard was stopped before it ended
    runs: list[Path]


def read_shard_folder(folder: Path) -> ShardFolder | None:
    """The shard in `folder`; None when it is no shard's folder (a run folder, a file, a folder of neither)."""
    runs = sorted(path.parent for path in folder.glob("*/results.jsonl")) if folder.is_dir() else []
    path = folder / SHARD_FILE
    if (folder / "results.jsonl").is_file() or not (path.is_file() or runs):
        return None
    if not path.is_file():
        return ShardFolder(folder, None, None, runs)
    try:
        data = json.loads(path.read_text())
        shard, status = parse_shard(str(data["shard"])), data["exit_status"]
    except (OSError, ValueError, KeyError, TypeError, OptionError) as error:
        raise MergeError(
            f'{path} is not a shard\'s record ({{"shard": "1/4", "exit_status": 0}}, as '
            f".ci/shard-run writes it): {error}"
        ) from None
    if not isinstance(status, int) or isinstance(status, bool):
        raise MergeError(f"{path}: exit_status {status!r} is not a whole number (pytest's exit status)")
    return ShardFolder(folder, shard, status, runs)


def empty_part(origin: ShardFolder) -> dict[str, Any]:
    """The part of a shard's folder without a run: a shard with no case (exit status 5), or one that broke
    before it recorded any."""
    return {
        "source": str(origin.folder),
        "run_id": None,
        "stack": {},
        "cases": [],
        "shard": str(origin.shard) if origin.shard else None,
        "exit_status": origin.exit_status,
    }


def account_shards(parts: list[dict[str, Any]], count: int | None) -> dict[str, Any] | None:
    """Which shards of `count` (default: the count the parts' shards name) were merged, had no case, failed
    or are missing; a shard found in several parts is judged by the last. None when no part is a shard."""
    counts = {cast(Shard, parse_shard(part["shard"])).count for part in parts if part.get("shard")}
    if count is None and len(counts) > 1:
        raise MergeError(
            f"the runs are shards of {len(counts)} different splits (into {sorted(counts)} "
            "shards): give --shards N to say which split to account for"
        )
    count = count if count is not None else next(iter(counts), None)
    if count is None:
        return None
    last: dict[int, dict[str, Any]] = {}
    for part in parts:
        shard = parse_shard(part["shard"]) if part.get("shard") else None
        if shard is not None and shard.count == count:
            last[shard.index] = part
    status = {index: part.get("exit_status", 0) for index, part in sorted(last.items())}  # no key: not judged
    failed = [{"index": index, "exit_status": code} for index, code in status.items() if code not in (0, NO_CASE)]
    missing = [index for index in range(count) if index not in last]
    return {
        "count": count,
        "merged": [index for index, part in sorted(last.items()) if part["cases"]],
        "empty": [index for index, code in status.items() if code == NO_CASE],
        "missing": missing,
        "failed": failed,
        "complete": not (missing or failed),
    }
