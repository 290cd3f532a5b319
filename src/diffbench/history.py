"""Saved runs, whatever form they are given in: a run folder, a results.jsonl, a pytest-benchmark JSON
or a storage id; and the stack each ran on, so runs from different stacks are never mixed silently."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffbench.errors import DiffbenchError
from diffbench.records import read_results

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
    return _read_json(path) if path.is_file() else {}


def _from_folder(folder: Path) -> Run:
    results = folder / "results.jsonl"
    try:
        records = read_results(results)
    except json.JSONDecodeError as error:
        raise HistoryError(f"{results} has a corrupt line: {error}") from None
    meta = read_run_meta(folder)
    by_case = {record["case"]: record for record in records if "case" in record}
    recorded_id = next((r["run_id"] for r in by_case.values() if r.get("run_id")), None)
    return Run(source=folder, run_id=meta.get("run_id") or recorded_id or folder.name, records=by_case,
               stack=stack_key(meta.get("stack") or {}), folder=folder,
               label=meta.get("commit") or meta.get("started") or folder.name)


def _from_benchmark_json(path: Path, results_dir: Path) -> Run:
    data = _read_json(path)
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise HistoryError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    records = {}
    for benchmark in data["benchmarks"]:
        record = dict(benchmark.get("extra_info") or {})
        if "case" not in record:
            continue  # not a diffbench case
        record.setdefault("e2e_rounds_s", (benchmark.get("stats") or {}).get("data"))
        records[record["case"]] = record
    run_id = next((r["run_id"] for r in records.values() if r.get("run_id")), path.stem)
    run = Run(source=path, run_id=run_id, records=records,
              stack=stack_key((data.get("machine_info") or {}).get("diffbench") or {}),
              label=((data.get("commit_info") or {}).get("id") or "")[:10] or data.get("datetime", path.stem))
    folder = results_dir / run_id
    if (folder / "results.jsonl").is_file():  # skipped and failed cases live only there
        run.folder = folder
        for case, record in _from_folder(folder).records.items():
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
    """The fields of a stack that decide whether two runs' numbers are comparable."""
    key = {name: stack.get(name) for name in STACK_FIELDS}
    key.update({f"package {name}": version for name, version in sorted((stack.get("packages") or {}).items())
                if version is not None})  # not installed = not listed, as in runs that did not ask
    return key


def stack_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name: base -> new` for every stack field that differs."""
    return [f"{name}: {base.get(name)} -> {new.get(name)}" for name in sorted(set(base) | set(new))
            if base.get(name) != new.get(name)]
