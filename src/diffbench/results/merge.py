"""`diffbench merge`: join run folders (the shards of a multi-GPU or multi-machine run, say) into one run
folder that `diffbench report` and `diffbench compare` read like any other, recording the machine each
case ran on and, for shards, which of them are missing or failed."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffbench.results.history import (
    HistoryError,
    Run,
    load_run,
    read_run_meta,
    shard_problems,
    stack_differences,
    stack_key,
)
from diffbench.results.records import atomic_path, json_safe, write_text_atomically
from diffbench.results.shard_folders import (
    SHARD_FILE,
    MergeError,
    ShardFolder,
    account_shards,
    empty_part,
    read_shard_folder,
)

PART_KEYS = ("run_id", "started", "commit", "command", "settings")  # what run.json keeps of each part


@dataclass
class Merged:
    """What `merge_runs` wrote: the folder, its records, and the cases a later part replaced."""

    folder: Path
    records: list[dict[str, Any]]
    replaced: list[str] = field(default_factory=list)
    stack_differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the runs' readers left out (a torn last line)
    shard_problems: list[str] = field(default_factory=list)  # missing or failed shards (`SHARD ...` lines)


def _read_meta(run: Run) -> dict[str, Any]:
    return read_run_meta(run.folder) if run.folder else {}


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def _check_output(out: Path, runs: list[Run]) -> None:
    if (out / "results.jsonl").exists():
        raise MergeError(f"{out} already holds a run (results.jsonl): give --out a new folder")
    if out.exists() and not out.is_dir():
        raise MergeError(f"--out {out} is a file, not a folder")
    for run in runs:
        if run.folder is not None and run.folder.resolve() == out.resolve():
            raise MergeError(f"--out {out} is one of the runs merged: give --out a new folder")


def _choose_records(runs: list[Run], prefer_last: bool) -> tuple[dict[str, tuple[dict, Run]], list[str]]:
    """Case id -> (record, its run), in the order cases first appear, and the cases found in several runs
    (an error, unless `prefer_last`: then the run given last wins)."""
    chosen: dict[str, tuple[dict, Run]] = {}
    duplicates: list[tuple[str, Run, Run]] = []
    for run in runs:
        for case, record in run.records.items():
            if case in chosen:
                duplicates.append((case, chosen[case][1], run))
                if not prefer_last:
                    continue
            chosen[case] = (record, run)
    if duplicates and not prefer_last:
        named = [f"{case} (in {first.source} and {second.source})" for case, first, second in duplicates]
        shown = "; ".join(named[:5]) + (f"; and {len(named) - 5} more" if len(named) > 5 else "")
        raise MergeError(
            f"{len(named)} case(s) recorded in more than one run: {shown}. Each case must come "
            "from one run: leave a run out, or pass --prefer-last to keep the record of the run "
            "given last"
        )
    return chosen, [case for case, _, _ in duplicates]


def _copy_image(record: dict[str, Any], run: Run, out: Path) -> None:
    """Copy the case's image into `out` at the same relative path (images/<case>.png)."""
    source = run.image_path(record["case"])
    relative = Path(record.get("image") or "")
    if source is None or relative.is_absolute() or ".." in relative.parts:
        return  # no image to copy (a skipped case, a JSON run without its folder): the report says so
    _copy_atomically(source, out / relative)


def _shard_of_part(part: dict[str, Any], origin: ShardFolder | None) -> str | None:
    """`1/4`: the shard a part ran, from its settings (--shard) or its shard folder; MergeError if they differ."""
    ran = part.get("shard") or (part.get("settings") or {}).get("shard")
    if origin is not None and origin.shard is not None:
        if ran is not None and ran != str(origin.shard):
            raise MergeError(
                f"{part['source']} ran shard {ran}, but {origin.folder / SHARD_FILE} says "
                f"{origin.shard}: a shard's folder must hold its own run only"
            )
        ran = str(origin.shard)
    return ran


def _parts_of(run: Run, meta: dict[str, Any], origin: ShardFolder | None, taken: set[str]) -> list[dict[str, Any]]:
    """The parts a merged run lists for `run`: its own (a merged run's parts, flattened, so every case keeps
    its machine), each with its stack, shard, the cases `taken` from it, and pytest's exit status when it
    came from a shard's folder."""
    own = {key: meta.get(key) for key in PART_KEYS}
    own.update(
        source=str(run.source),
        run_id=meta.get("run_id") or run.run_id,
        stack=meta.get("stack") or {},
        cases=list(run.records),
    )
    parts = []
    for part in meta.get("parts") or [own]:
        part = {**part, "cases": [case for case in part.get("cases") or [] if case in taken]}
        part["shard"] = _shard_of_part(part, origin)
        if origin is not None:
            part["exit_status"] = origin.exit_status
        parts.append(part)
    return parts


def _run_meta(
    parts: list[dict[str, Any]], first_stack: dict[str, Any], out: Path, command: list[str], shard_count: int | None
) -> dict[str, Any]:
    """run.json of the merged run: the first run's stack, the differences of the parts' stacks from it, each
    part with its own stack and cases, and (for shards) which are missing or failed."""
    differences = sorted(
        {
            difference
            for part in parts
            if part["cases"]
            for difference in stack_differences(stack_key(first_stack), stack_key(part["stack"]))
        }
    )
    commits = {part.get("commit") for part in parts if part["cases"]}
    started = [str(part["started"]) for part in parts if part.get("started")]
    return {
        "run_id": out.name,
        "started": min(started, default=None),
        "commit": commits.pop() if len(commits) == 1 else None,
        "stack": first_stack,
        "stack_differences": differences,
        "command": command,
        "parts": parts,
        "shards": account_shards(parts, shard_count),
    }


def _expand(specs: list[str | Path]) -> tuple[list[tuple[str | Path, ShardFolder | None]], list[ShardFolder]]:
    """The runs to merge, each with the shard folder it came from (None: given as a run), and the shard
    folders that hold no run."""
    runs: list[tuple[str | Path, ShardFolder | None]] = []
    empty: list[ShardFolder] = []
    for spec in specs:
        origin = read_shard_folder(Path(spec))
        if origin is None:
            runs.append((spec, None))
        elif origin.runs:
            runs += [(folder, origin) for folder in origin.runs]
        else:
            empty.append(origin)
    if not runs:
        raise MergeError(
            f"none of the {len(specs)} folder(s) given holds a run: every shard had no case or "
            f"broke before recording one (their logs say why)"
        )
    return runs, empty


def merge_runs(specs: list[str | Path], out: Path, prefer_last: bool = False, shard_count: int | None = None) -> Merged:
    """Write one run folder at `out` with every case of `specs`: run folders, anything `load_run` reads, or
    shards' folders (.ci/shard-run's: shard.json and the shard's run folder), checked against `shard_count`."""
    inputs, empty = _expand(specs)
    runs = [load_run(spec) for spec, _ in inputs]
    out = Path(out)
    _check_output(out, runs)
    chosen, replaced = _choose_records(runs, prefer_last)
    metas = [_read_meta(run) for run in runs]
    parts = [
        part
        for run, meta, (_, origin) in zip(runs, metas, inputs)
        for part in _parts_of(run, meta, origin, {case for case, (_, owner) in chosen.items() if owner is run})
    ]
    command = ["diffbench", "merge", *map(str, specs), "--out", str(out)] + ["--prefer-last"] * prefer_last
    command += ["--shards", str(shard_count)] if shard_count is not None else []
    meta = _run_meta(
        parts + [empty_part(origin) for origin in empty], metas[0].get("stack") or {}, out, command, shard_count
    )
    (out / "images").mkdir(parents=True, exist_ok=True)
    for record, run in chosen.values():
        _copy_image(record, run, out)
    write_text_atomically(out / "run.json", json.dumps(json_safe(meta), indent=2) + "\n")
    records = [record for record, _ in chosen.values()]
    lines = "".join(json.dumps(json_safe(record), allow_nan=False) + "\n" for record in records)
    write_text_atomically(out / "results.jsonl", lines)  # last: a folder with results.jsonl is complete
    return Merged(
        out,
        records,
        replaced,
        meta["stack_differences"],
        [w for run in runs for w in run.warnings],
        shard_problems(meta["shards"]),
    )


def merge_command(arguments: argparse.Namespace) -> int:
    """Exit 0: merged; 1: merged, but a shard is missing or failed (`SHARD` lines); 2: a run cannot be read,
    a case is in two runs, or the folder cannot be written."""
    try:
        merged = merge_runs(arguments.runs, arguments.out, arguments.prefer_last, arguments.shards)
    except (HistoryError, MergeError) as error:
        print(f"diffbench merge: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"diffbench merge: cannot write the merged run to {arguments.out}: {error}", file=sys.stderr)
        return 2
    for warning in merged.warnings:
        print(f"diffbench merge: warning: {warning}", file=sys.stderr)
    if merged.stack_differences:
        print(
            "diffbench merge: warning: the runs' stacks differ, so may their numbers (run.json records each "
            "case's machine, and compare calls a case measured on another one not comparable): "
            + "; ".join(merged.stack_differences),
            file=sys.stderr,
        )
    for case in merged.replaced:
        print(f"diffbench merge: {case}: kept the record of the run given last (--prefer-last)", file=sys.stderr)
    print(f"merged {len(arguments.runs)} run(s), {len(merged.records)} case(s), into {merged.folder}")
    for line in merged.shard_problems:
        print(line)
    return 1 if merged.shard_problems else 0
