"""The trend over runs: E2E of every case found in two runs or more, as a table and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeGuard

from diffbench.case import Status, status_name
from diffbench.report.document import Block, Figure, Heading, Paragraph, Table
from diffbench.report.groups import group_key, group_title
from diffbench.report.plots import TrendPoint, trend_chart
from diffbench.results.history import Run


def _measured(record: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return record is not None and record.get("status") == Status.OK and record.get("e2e_s") is not None


def _trend_cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    if not _measured(record):
        return status_name(str(record.get("status")))
    return f"{record['e2e_s']:.3f}"


def trend_section(runs: list[Run], labels: list[str], out_dir: Path, colors: dict[str, str]) -> list[Block]:
    """E2E of every case found in two runs or more, over the runs in the order given."""
    every_case = dict.fromkeys(case for run in runs for case in run.records)
    cases = [case for case in every_case if sum(case in run.records for run in runs) > 1]
    if not cases:
        return []
    run_indexes = [index for index, run in enumerate(runs) if any(case in run.records for case in cases)]
    shown = [labels[index] for index in run_indexes]
    table = Table(["case", *shown, "last vs first"])
    panels: dict[str, dict[str, list[TrendPoint]]] = {}
    for case in cases:
        records = [runs[index].records.get(case) for index in run_indexes]
        measured = [(position, record) for position, record in enumerate(records) if _measured(record)]
        for position, record in measured:
            line = panels.setdefault(group_title(group_key(record)), {}).setdefault(str(record.get("backend")), [])
            line.append(
                TrendPoint(
                    position,
                    record["e2e_s"],
                    record.get("e2e_min_s", record["e2e_s"]),
                    record.get("e2e_max_s", record["e2e_s"]),
                )
            )
        first, last = (measured[0][1]["e2e_s"], measured[-1][1]["e2e_s"]) if len(measured) > 1 else (None, None)
        change = f"{(last / first - 1) * 100:+.1f}%" if first else "-"
        table.rows.append([case, *map(_trend_cell, records), change])
    if panels:
        trend_chart(panels, shown, out_dir / "trend.png", colors)
    blocks: list[Block] = [
        Heading("Trend over runs"),
        Paragraph("E2E median in seconds of each case found in two runs or more, in the order the runs were given."),
    ]
    return blocks + [table] + ([Figure("trend.png", "E2E over runs")] if panels else [])
