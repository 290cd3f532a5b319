"""The report's lines on what a case group adds to the model: a LoRA adapter's load and fuse cost, and a
ControlNet with its control image."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol, Sequence

from diffbench.report.document import Block, Figure, Paragraph, Table
from diffbench.results.cells import number


class _Entry(Protocol):  # report.Entry, read-only as it is, without importing report (which imports this module)
    @property
    def run(self) -> Any: ...
    @property
    def run_label(self) -> str: ...
    @property
    def record(self) -> dict[str, Any]: ...


def component_blocks(entries: Sequence[_Entry], slug: str, out_dir: Path, several_runs: bool) -> list[Block]:
    """A table of the adapter's cost per case, and the ControlNet's source with its control image."""
    return _lora_table(entries, several_runs) + _control_blocks(entries, slug, out_dir)


def _lora_table(entries: Sequence[_Entry], several_runs: bool) -> list[Block]:
    rows = []
    for entry in entries:
        record = entry.record
        if record.get("lora_load_s") is None:
            continue
        label = str(record.get("backend")) + (f" ({entry.run_label})" if several_runs else "")
        rows.append(
            [
                label,
                number(record.get("lora_load_s"), 3),
                number(record.get("lora_memory_gib"), 3),
                number(record.get("lora_fuse_s"), 3),
                str(record.get("lora_layers", "-")),
            ]
        )
    if not rows:
        return []
    return [Table(["backend", "LoRA load s", "LoRA memory GiB", "fuse s", "layers with the adapter"], rows)]


def _control_blocks(entries: Sequence[_Entry], slug: str, out_dir: Path) -> list[Block]:
    entry = next((e for e in entries if e.record.get("controlnet")), None)
    if entry is None:
        return []
    record = entry.record
    text = f"ControlNet: {record['controlnet']}, loaded in {number(record.get('controlnet_load_s'), 3)} s."
    source = entry.run.file_path(record["control_image"]) if record.get("control_image") else None
    if source is None:
        return [Paragraph(text + " The control image is not in the run folder.")]
    name = f"control-{slug}{source.suffix}"
    shutil.copyfile(source, out_dir / name)
    return [Paragraph(text + " Control image:"), Figure(name, f"control image of {slug}")]
