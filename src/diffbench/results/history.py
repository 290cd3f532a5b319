"""Saved runs, whatever form they are given in: a run folder, a results.jsonl, a pytest-benchmark JSON
or a storage id; and the stack each ran on (each case's own, in a run merged from several machines), so
runs from different stacks are never mixed silently."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffbench.errors import DiffbenchError

DEFAULT_STORAGE = Path("reports/history")  # pytest-benchmark's --benchmark-storage for diffbench runs
DEFAULT_RESULTS_DIR = Path("reports/runs")
# What makes two runs comparable: hardware and software that change the numbers.
STACK_FIELDS = ("gpu", "gpu_count", "driver", "cuda", "torch", "compute_capability")


class HistoryError(DiffbenchError):
    """A run cannot be read: the message names the file and what is wrong with it."""


@dataclass
class Run:
    """One benchmark run: its records by case id, its stack, and its folder (images) if known."""

    source: Path
    run_id: str
    records: dict[str, dict[str, Any]]
    stack: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    label: str = ""  # for trends: the commit or the date it ran
    warnings: list[str] = field(default_factory=list)  # what was read past (a torn last line), for the user
    parts: list[dict[str, Any]] = field(default_factory=list)  # a merged run's run.json parts (`diffbench merge`)
    shards: dict[str, Any] | None = None  # a merged run's shard accounting: count, missing, empty, failed

    def stack_of(self, case: str) -> dict[str, Any]:
        """The stack key of the machine that ran `case`: its part's in a merged run, else the run's."""
        for part in self.parts:
            if case in (part.get("cases") or []):
                return stack_key(part.get("stack") or {})
        return self.stack

    def image_path(self, case: str) -> Path | None:
        record = self.records.get(case) or {}
        return self.file_path(record["image"]) if record.get("image") else None

    def file_path(self, relative: str) -> Path | None:
        """A file the run folder's records name (an image), if it is there."""
        if self.folder is None:
            return None
        path = self.folder / relative
        for candidate in (path, path.with_suffix(".jpg")):  # committed GPU runs keep JPEG copies (size)
            if candidate.is_file():
                return candidate
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HistoryError(f"{path} is not valid JSON: {error}") from None
    except OSError as error:
        raise HistoryError(f"{path} cannot be read: {error}") from None


def read_run_meta(folder: Path) -> dict[str, Any]:
    """A run folder's run.json ({} for a run without one); HistoryError if it cannot be read."""
    path = Path(folder) / "run.json"
    if not path.is_file():
        return {}
    meta = _read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("stack") or {}, dict):
        raise HistoryError(f"{path} is not a diffbench run.json (a JSON object whose stack is an object)")
    return meta


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a results.jsonl and warnings about what was left out. HistoryError, naming the file
    and the line, for anything but a torn last line (a run killed while writing it), which is a warning."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise HistoryError(f"{path} is not a results file: byte {error.start} is not UTF-8 text") from None
    except OSError as error:
        raise HistoryError(f"{path} cannot be read: {error}") from None
    records, warnings = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number != len(lines):
                raise HistoryError(f"{path} has a corrupt line {number}: {error}") from None
            warnings.append(
                f"{path}: its last line (line {number}) is cut short, as by a run killed while "
                f"writing it, and was left out: {line[:60]!r}"
            )
            continue
        if not isinstance(record, dict) or not isinstance(record.get("case"), str):
            raise HistoryError(
                f"{path} line {number} is not a diffbench record (a JSON object with a case): {line[:60]!r}"
            )
        records.append(record)
    return records, warnings


def _from_folder(folder: Path) -> Run:
    records, warnings = read_records(folder / "results.jsonl")
    meta = read_run_meta(folder)
    by_case = {record["case"]: record for record in records}
    recorded_id = next((r["run_id"] for r in by_case.values() if r.get("run_id")), None)
    return Run(
        source=folder,
        run_id=meta.get("run_id") or recorded_id or folder.name,
        records=by_case,
        stack=stack_key(meta.get("stack") or {}),
        folder=folder,
        label=meta.get("commit") or meta.get("started") or folder.name,
        warnings=warnings,
        parts=meta.get("parts") or [],
        shards=meta.get("shards"),
    )


def _object(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    """`data[key]` where it must be a JSON object: {} when absent, HistoryError when something else."""
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise HistoryError(f"{path}: {key!r} is not an object: {str(value)[:60]!r}")
    return value or {}


def _from_benchmark_json(path: Path, results_dir: Path) -> Run:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise HistoryError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    records = {}
    for number, benchmark in enumerate(data["benchmarks"], start=1):
        if not isinstance(benchmark, dict):
            raise HistoryError(
                f"{path}: benchmark {number} is not a pytest-benchmark entry (a JSON object): {str(benchmark)[:60]!r}"
            )
        record = dict(_object(benchmark, "extra_info", path))
        if "case" not in record:
            continue  # not a diffbench case
        record.setdefault("e2e_rounds_s", _object(benchmark, "stats", path).get("data"))
        records[record["case"]] = record
    run_id = next((r["run_id"] for r in records.values() if r.get("run_id")), path.stem)
    run = Run(
        source=path,
        run_id=run_id,
        records=records,
        stack=stack_key(_object(_object(data, "machine_info", path), "diffbench", path)),
        label=str(_object(data, "commit_info", path).get("id") or "")[:10] or data.get("datetime", path.stem),
    )
    folder = results_dir / run_id
    if (folder / "results.jsonl").is_file():  # skipped and failed cases live only there
        run.folder = folder
        in_folder = _from_folder(folder)
        run.warnings += in_folder.warnings
        for case, record in in_folder.records.items():
            run.records.setdefault(case, record)
    return run


def load_run(spec: str | Path, storage: Path = DEFAULT_STORAGE, results_dir: Path = DEFAULT_RESULTS_DIR) -> Run:
    """A run from a run folder, a results.jsonl, a pytest-benchmark JSON, or a storage id (`0003`)."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "results.jsonl").is_file():
            raise HistoryError(f"{path} is a folder without results.jsonl: not a diffbench run folder")
        return _from_folder(path)
    if path.is_file():
        return _from_folder(path.parent) if path.name == "results.jsonl" else _from_benchmark_json(path, results_dir)
    matches = sorted(Path(storage).glob(f"*/{spec}_*.json")) + sorted(Path(storage).glob(f"*/{spec}.json"))
    if len(matches) == 1:
        return _from_benchmark_json(matches[0], results_dir)
    if len(matches) > 1:
        raise HistoryError(f"storage id {spec!r} matches several runs in {storage}: {', '.join(map(str, matches))}")
    raise HistoryError(f"no run {str(spec)!r}: not a file, a run folder, or a saved id in {storage}")


def stack_key(stack: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stack that decide whether two runs' numbers are comparable; without a GPU, the CPU
    is the device, so its model is one of them."""
    key = {name: stack.get(name) for name in STACK_FIELDS}
    key["cpu"] = None if stack.get("gpu") else stack.get("cpu_model")
    key.update(
        {
            f"package {name}": version
            for name, version in sorted((stack.get("packages") or {}).items())
            if version is not None
        }
    )  # not installed = not listed, as in runs that did not ask
    return key


def differing_fields(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The stack fields whose values differ, in the order the stacks list them."""
    return [name for name in dict.fromkeys([*base, *new]) if base.get(name) != new.get(name)]


def stack_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name: base -> new` for every stack field that differs."""
    return [f"{name}: {base.get(name)} -> {new.get(name)}" for name in sorted(differing_fields(base, new))]


PYTEST_EXIT = {1: "a case failed", 2: "interrupted", 3: "pytest's internal error", 4: "a usage error"}


def _exit_text(status: int | None) -> str:
    if status is None:
        return "no exit status: it was stopped before it ended (killed, or its job ran out of time)"
    if status > 128:
        return f"killed by signal {status - 128}"
    return f"pytest exit status {status}" + (f" ({PYTEST_EXIT[status]})" if status in PYTEST_EXIT else "")


def shard_problems(shards: dict[str, Any] | None) -> list[str]:
    """One line per missing or failed shard of a merged run's accounting (none for a complete run):
    `SHARD MISSING 1/4: ...`, `SHARD FAILED 3/4: pytest exit status 1 (a case failed)`."""
    if not shards:
        return []
    count = shards.get("count")
    lines = [
        f"SHARD MISSING {index}/{count}: no run or shard folder of it was merged (its job did not run, "
        "or its folder or artifact was lost); its cases are not in this run"
        for index in shards.get("missing", [])
    ]
    lines += [
        f"SHARD FAILED {failed['index']}/{count}: {_exit_text(failed.get('exit_status'))}; the cases it "
        "recorded are merged"
        for failed in shards.get("failed", [])
    ]
    return lines
