"""`--plan`: the cases a command would run and their device time, estimated from saved runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from diffbench.case import Case, Status
from diffbench.config.settings import RunSettings
from diffbench.results.history import HistoryError, load_run

logger = logging.getLogger(__name__)


@dataclass
class Estimate:
    case: Case
    seconds: float | None  # None: no saved run has this case
    source: str  # where the numbers come from (run id and GPU)


def latest_records(folders: Iterable[Path], device: str) -> dict[str, tuple[dict[str, Any], str]]:
    """The newest ok record of every case under `folders` (searched recursively) measured on the same
    kind of device (CUDA or CPU), with the run and GPU it comes from. Newest = the latest run id."""
    kind = device.split(":")[0]
    candidates = []
    for results in {path for folder in folders if folder.is_dir() for path in folder.rglob("results.jsonl")}:
        try:
            run = load_run(results.parent)
        except HistoryError as error:
            logger.warning("--plan ignores %s: %s", results.parent, error)
            continue
        gpu = run.stack.get("gpu") or "cpu"
        candidates += [
            (record.get("run_id") or run.run_id, record, gpu)
            for record in run.records.values()
            if record.get("status") == Status.OK
            and record.get("e2e_s")
            and str(record.get("device", "")).split(":")[0] == kind
        ]
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for run_id, record, gpu in sorted(candidates, key=lambda item: item[0]):
        found[record["case"]] = (record, f"{run_id} on {gpu}")
    return found


def estimate(cases: list[Case], settings: RunSettings, history: dict) -> list[Estimate]:
    """Per case: load (first case of a model) + warmup + (rounds + quality prompts - 1) x E2E, plus, for a
    backend, eager's rounds beside it (paired or after it: rounds + 1 eager calls) unless --pairing off,
    and on CUDA the host-sync count (one call at the steps, one at half of them: 1.5 x E2E)."""
    estimates, loaded = [], set()
    for case in cases:
        if case.id not in history:
            estimates.append(Estimate(case, None, "no saved run of this case"))
            continue
        record, source = history[case.id]
        calls = settings.rounds + settings.prompts - 1 + (1.5 if str(record.get("device")).startswith("cuda") else 0)
        seconds = (record.get("warmup_s") or 0.0) + calls * record["e2e_s"]
        eager = history.get(replace(case, backend="eager").id, ({},))[0].get("e2e_s")
        if case.backend != "eager" and settings.pairing != "off" and eager:
            seconds += (settings.rounds + 1) * eager
        if case.model not in loaded:
            seconds += record.get("load_s") or 0.0
            loaded.add(case.model)
        estimates.append(Estimate(case, seconds, source))
    return estimates


def format_plan(estimates: list[Estimate]) -> list[str]:
    lines = [f"{'case':36} {'estimate':>10}  from"]
    for item in estimates:
        shown = "?" if item.seconds is None else f"{item.seconds:9.1f}s"
        lines.append(f"{item.case.id:36} {shown:>10}  {item.source}")
    known = [item.seconds for item in estimates if item.seconds is not None]
    unknown = len(estimates) - len(known)
    total = f"{len(estimates)} cases, about {sum(known) / 60:.1f} min for the {len(known)} with history"
    lines.append(total + (f"; {unknown} never measured (not counted)" if unknown else ""))
    return lines
