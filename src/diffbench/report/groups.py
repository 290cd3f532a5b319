"""The report's records grouped by model, task and resolution: each group's table, image grid and sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffbench.case import Status
from diffbench.report.components import component_blocks
from diffbench.report.document import Block, Figure, Heading, Paragraph, Table
from diffbench.report.grid import Cell, write_grid
from diffbench.report.lora import lora_blocks
from diffbench.report.sweeps import sweep_blocks
from diffbench.results.cells import number
from diffbench.results.history import Run
from diffbench.results.schema import report_fields
from diffbench.results.summary import status_text


@dataclass(frozen=True)
class Entry:
    """One record of one run; `run_index` is the run's position in the order given."""

    run_index: int
    run_label: str
    run: Run
    record: dict[str, Any]


GroupKey = tuple[str, str, str]  # model, task, resolution


def run_labels(runs: list[Run]) -> list[str]:
    """Each run's label, made unique: a repeated label gets its run id or, if that repeats too, its position."""
    labels = [run.label or run.run_id for run in runs]
    with_ids = [f"{label} ({run.run_id})" for label, run in zip(labels, runs)]
    unique = len(set(with_ids)) == len(with_ids)
    return [
        label if labels.count(label) == 1 else with_id if unique else f"{label} #{index + 1}"
        for index, (label, with_id) in enumerate(zip(labels, with_ids))
    ]


def group_key(record: dict[str, Any]) -> GroupKey:
    resolution = str(record.get("resolution") or "?")
    if record.get("lora_mode"):  # LoRA cases: one group per adapter state, as their eager references are
        resolution += f" lora {record.get('lora')} {record['lora_mode']}"
    return str(record.get("model") or "?"), str(record.get("task") or "?"), resolution


def group_entries(runs: list[Run], labels: list[str]) -> dict[GroupKey, list[Entry]]:
    """Records by model, task and resolution, in the order first seen; within a group by run, eager first."""
    groups: dict[GroupKey, list[Entry]] = {}
    for index, (run, label) in enumerate(zip(runs, labels)):
        for record in run.records.values():
            groups.setdefault(group_key(record), []).append(Entry(index, label, run, record))
    for entries in groups.values():
        entries.sort(key=lambda entry: (entry.run_index, entry.record.get("backend") != "eager"))
    return groups


def group_title(key: GroupKey) -> str:
    return " ".join(key)


def group_slug(key: GroupKey) -> str:
    return "-".join(part.replace("/", "_").replace(" ", "_").replace(":", "") for part in key)


def _distinct(entries: list[Entry], name: str) -> str:
    return "/".join(dict.fromkeys(str(entry.record[name]) for entry in entries if entry.record.get(name) is not None))


def group_settings(entries: list[Entry]) -> str:
    """What the rows of a group share: `float16, 10 steps, random weights, batch 1`."""
    forms = (("dtype", "{}"), ("steps", "{} steps"), ("weights", "{} weights"), ("batch", "batch {}"))
    return ", ".join(form.format(_distinct(entries, name)) for name, form in forms if _distinct(entries, name))


def group_table(entries: list[Entry], several_runs: bool, in_report: set[str]) -> Table:
    """The backend (and run) of each entry, a column per field results.schema puts in the report, then the
    status; a sparse field's column only when a record of the report (`in_report`: its keys with a value) or,
    for `sparse="group"`, of the group has a value."""
    in_group = {key for entry in entries for key, value in entry.record.items() if value is not None}
    shown = {"report": in_report, "group": in_group}
    fields = [field for field in report_fields() if field.sparse is None or field.key in shown[field.sparse]]
    table = Table(["backend", *(["run"] if several_runs else []), *(str(field.report) for field in fields), "status"])
    for entry in entries:
        record = entry.record
        row = [str(record.get("backend") or "?")] + ([entry.run_label] if several_runs else [])
        table.rows.append(row + [field.cell(record) for field in fields] + [status_text(record)])
    return table


def _grid_cell(entry: Entry | None) -> Cell:
    if entry is None:
        return Cell(None, [], "not in this run")
    record = entry.record
    caption = [str(record.get("backend")) + (" (reference)" if record.get("backend") == "eager" else "")]
    if record.get("ssim") is not None:
        caption.append(f"SSIM {record['ssim']:.4f} / PSNR {number(record.get('psnr'), 1)} dB")
    if record.get("status") != Status.OK:
        caption.append(status_text(record))
    image_path = entry.run.image_path(str(record.get("case")))
    if image_path is None and record.get("image") and entry.run.folder is not None:
        image_path = entry.run.folder / record["image"]  # recorded but gone: the grid says "file not found"
    reason = "no image recorded" if record.get("status") == Status.OK else f"{record.get('status')}: no image"
    return Cell(image_path, caption, reason)


def grid_rows(entries: list[Entry]) -> tuple[list[list[Cell]], list[str]]:
    """One row per run holding the group (and its label), one column per backend of the group (eager first)."""
    backends = list(dict.fromkeys(str(entry.record.get("backend")) for entry in entries))
    runs = {entry.run_index: entry.run_label for entry in entries}
    by_place = {(entry.run_index, str(entry.record.get("backend"))): entry for entry in entries}
    rows = [[_grid_cell(by_place.get((run_index, backend))) for backend in backends] for run_index in runs]
    return rows, [f"run {label}" for label in runs.values()]


def _image_expected(record: dict[str, Any]) -> bool:
    """A finished case made an image; a skipped or failed one may not have."""
    return record.get("status") == Status.OK or bool(record.get("image"))


def group_section(
    key: GroupKey, entries: list[Entry], out_dir: Path, image_size: int, several_runs: bool, in_report: set[str]
) -> list[Block]:
    name = f"grid-{group_slug(key)}.png"
    write_grid(out_dir / name, group_title(key), *grid_rows(entries), image_size)
    blocks: list[Block] = [
        Heading(group_title(key)),
        Paragraph(group_settings(entries)),
        group_table(entries, several_runs, in_report),
        *component_blocks(entries, group_slug(key), out_dir, several_runs),
        Figure(name, f"outputs of {group_title(key)}"),
    ]
    missing = [
        entry
        for entry in entries
        if _image_expected(entry.record) and entry.run.image_path(str(entry.record.get("case"))) is None
    ]
    if missing:
        names = [str(entry.record.get("case")) + (f" ({entry.run_label})" if several_runs else "") for entry in missing]
        text = f"Image not available for {', '.join(names)}: not in the run folder."
        if any(entry.run.folder is None for entry in missing):
            text += (
                " A pytest-benchmark JSON run takes its images from its run folder under --results-dir;"
                " none was found there."
            )
        blocks.append(Paragraph(text))
    for entry in entries:
        label = str(entry.record.get("backend")) + (f" ({entry.run_label})" if several_runs else "")
        blocks += sweep_blocks(label, entry.record, out_dir) + lora_blocks(label, entry.record)
    return blocks
