"""`diffbench merge`: join run folders (the shards of a multi-GPU run, say) into one run folder that
`diffbench report` and `diffbench compare` read like any other."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffbench.errors import DiffbenchError
from diffbench.results.history import HistoryError, Run, load_run, read_run_meta, stack_differences, stack_key
from diffbench.results.records import atomic_path, json_safe, write_text_atomically

PART_KEYS = ("run_id", "started", "commit", "command", "settings")  # what run.json keeps of each part


class MergeError(DiffbenchError):
    """The runs cannot be merged (a case in two of them, an output folder that already holds a run)."""


@dataclass
class Merged:
    """What `merge_runs` wrote: the folder, its records, and the cases a later part replaced."""

    folder: Path
    records: list[dict[str, Any]]
    replaced: list[str] = field(default_factory=list)
    stack_differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the runs' readers left out (a torn last line)


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
        raise MergeError(f"{len(named)} case(s) recorded in more than one run: {shown}. Each case must come "
                         "from one run: leave a run out, or pass --prefer-last to keep the record of the run "
                         "given last")
    return chosen, [case for case, _, _ in duplicates]


def _copy_image(record: dict[str, Any], run: Run, out: Path) -> None:
    """Copy the case's image into `out` at the same relative path (images/<case>.png)."""
    source = run.image_path(record["case"])
    relative = Path(record.get("image") or "")
    if source is None or relative.is_absolute() or ".." in relative.parts:
        return  # no image to copy (a skipped case, a JSON run without its folder): the report says so
    _copy_atomically(source, out / relative)


def _run_meta(runs: list[Run], metas: list[dict], chosen: dict[str, tuple[dict, Run]], out: Path,
              command: list[str]) -> dict[str, Any]:
    """run.json of the merged run: the first part's stack, and each part with its own stack and cases."""
    stacks = [meta.get("stack") or {} for meta in metas]
    differences = sorted({difference for stack in stacks[1:]
                          for difference in stack_differences(stack_key(stacks[0]), stack_key(stack))})
    commits = {meta.get("commit") for meta in metas}
    parts = []
    for run, meta, stack in zip(runs, metas, stacks):
        part = {key: meta.get(key) for key in PART_KEYS}
        part.update(source=str(run.source), run_id=meta.get("run_id") or run.run_id, stack=stack,
                    cases=[case for case, (_, owner) in chosen.items() if owner is run])
        parts.append(part)
    return {"run_id": out.name,
            "started": min((str(meta["started"]) for meta in metas if meta.get("started")), default=None),
            "commit": commits.pop() if len(commits) == 1 else None,
            "stack": stacks[0], "stack_differences": differences, "command": command, "parts": parts}


def merge_runs(specs: list[str | Path], out: Path, prefer_last: bool = False) -> Merged:
    """Write one run folder at `out` with every case of `specs` (run folders or anything `load_run` reads)."""
    runs = [load_run(spec) for spec in specs]
    out = Path(out)
    _check_output(out, runs)
    chosen, replaced = _choose_records(runs, prefer_last)
    metas = [_read_meta(run) for run in runs]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for record, run in chosen.values():
        _copy_image(record, run, out)
    command = ["diffbench", "merge", *map(str, specs), "--out", str(out)] + ["--prefer-last"] * prefer_last
    meta = _run_meta(runs, metas, chosen, out, command)
    write_text_atomically(out / "run.json", json.dumps(json_safe(meta), indent=2) + "\n")
    records = [record for record, _ in chosen.values()]
    lines = "".join(json.dumps(json_safe(record), allow_nan=False) + "\n" for record in records)
    write_text_atomically(out / "results.jsonl", lines)  # last: a folder with results.jsonl is complete
    return Merged(out, records, replaced, meta["stack_differences"], [w for run in runs for w in run.warnings])


def merge_command(arguments: argparse.Namespace) -> int:
    """Exit 0: merged; 2: a run cannot be read, a case is in two runs, or the folder cannot be written."""
    try:
        merged = merge_runs(arguments.runs, arguments.out, arguments.prefer_last)
    except (HistoryError, MergeError) as error:
        print(f"diffbench merge: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"diffbench merge: cannot write the merged run to {arguments.out}: {error}", file=sys.stderr)
        return 2
    for warning in merged.warnings:
        print(f"diffbench merge: warning: {warning}", file=sys.stderr)
    if merged.stack_differences:
        print("diffbench merge: warning: the runs' stacks differ, so may their numbers: "
              + "; ".join(merged.stack_differences), file=sys.stderr)
    for case in merged.replaced:
        print(f"diffbench merge: {case}: kept the record of the run given last (--prefer-last)", file=sys.stderr)
    print(f"merged {len(arguments.runs)} run(s), {len(merged.records)} case(s), into {merged.folder}")
    return 0
