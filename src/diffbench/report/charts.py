"""The speedup and peak-memory charts over every group of the report."""

from __future__ import annotations

from pathlib import Path

from diffbench.case import Status
from diffbench.report.document import Block, Figure, Heading, Paragraph
from diffbench.report.groups import Entry, GroupKey, group_title
from diffbench.report.plots import grouped_bars


def _chart_values(groups: dict[GroupKey, list[Entry]], name: str, with_eager: bool) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for key, entries in groups.items():
        several_runs = len({entry.run_index for entry in entries}) > 1
        for entry in entries:
            record = entry.record
            charted = record.get("status") == Status.OK and record.get(name) is not None
            if not charted or (record.get("backend") == "eager" and not with_eager):
                continue
            category = group_title(key) + (f"\n{entry.run_label}" if several_runs else "")
            values.setdefault(category, {})[str(record["backend"])] = float(record[name])
    return values


def chart_section(groups: dict[GroupKey, list[Entry]], out_dir: Path, colors: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [Heading("Speedup and peak memory")]
    speedups = _chart_values(groups, "speedup", with_eager=False)
    if speedups:
        grouped_bars(
            speedups,
            out_dir / "speedup.png",
            "Speedup over eager (E2E median, same run)",
            "speedup (x)",
            colors,
            reference=1.0,
            value_format="{:.2f}x",
        )
        blocks.append(Figure("speedup.png", "speedup over eager per backend"))
    else:
        blocks.append(Paragraph("No speedup chart: no accelerated backend ran beside eager in these runs."))
    memory = _chart_values(groups, "peak_mem_gib", with_eager=True)
    if memory:
        grouped_bars(memory, out_dir / "memory.png", "Peak CUDA memory (max allocated, timed rounds)", "GiB", colors)
        blocks.append(Figure("memory.png", "peak memory per backend"))
    else:
        blocks.append(
            Paragraph("No peak-memory chart: no record has a CUDA peak memory (runs on the CPU measure none).")
        )
    return blocks
