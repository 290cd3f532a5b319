"""A Markdown table of result records: the seeds' metrics per case, with spread and speedup."""

from __future__ import annotations

import textwrap
from typing import Any, Iterable

from diffbench.case import Status, status_name
from diffbench.results.schema import table_fields

# Before the metrics' columns (results.schema's `table` labels: short, so that with the case ids the table
# stays within a terminal's 120 columns).
FRAME = ("case", "status", "steps")

MESSAGE_LIMIT = 240  # characters of a skip or failure message shown in a table cell or note
NOTE_WIDTH = 120  # a terminal's width: notes under the table are wrapped to it


def _message(record: dict[str, Any]) -> str:
    """The record's message on one line, shortened past MESSAGE_LIMIT."""
    message = " ".join(str(record.get("message") or "").split())
    return f"{message[:MESSAGE_LIMIT]}{'...' if len(message) > MESSAGE_LIMIT else ''}"


def status_text(record: dict[str, Any]) -> str:
    """`ok`, or the status with its message on one line (a table cell), shortened past MESSAGE_LIMIT."""
    status = record.get("status") or "unknown"
    name = status_name(status)
    message = _message(record)
    return name if status == Status.OK or not message else f"{name}: {message}"


def row(record: dict[str, Any], status: str) -> list[str]:
    """The case, the `status` cell as given, the steps, then one cell per metric of results.schema's table."""
    if record.get("contended"):  # other processes took the cores during the timed rounds (diffbench.measure.telemetry)
        status += " (contended)"
    frame = [record.get("case") or "-", status, str(record.get("steps") or "-")]
    return frame + [field.cell(record) for field in table_fields()]


def markdown_table(records: Iterable[dict[str, Any]]) -> str:
    """One row per record; a skip or failure message is a numbered note under the table, given once for
    every row that shares it (eight full-size cases skipped for want of a GPU: one sentence, not eight)."""
    notes: dict[str, int] = {}
    columns = [*FRAME, *(str(field.table) for field in table_fields())]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in records:
        status, message = record.get("status") or "unknown", _message(record)
        cell = status_name(status)
        if status != Status.OK and message:
            cell += f" [{notes.setdefault(message, len(notes) + 1)}]"
        lines.append("| " + " | ".join(row(record, cell)) + " |")
    lines += [""] if notes else []  # a line right under a Markdown table would be read as one more row
    for message, index in notes.items():
        lines += textwrap.wrap(
            f"[{index}] {message}", NOTE_WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
        )
    return "\n".join(lines)
