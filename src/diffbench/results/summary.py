"""A Markdown table of result records: the seeds' metrics per case, with spread and speedup."""

from __future__ import annotations

import textwrap
from typing import Any, Iterable

from diffbench.results.schema import speedup_text

# Short names: with the case ids the table stays within a terminal's 120 columns.
COLUMNS = ("case", "status", "steps", "warmup s", "E2E s med (range)", "it/s", "peak GiB", "SSIM", "PSNR dB", "speedup")


MESSAGE_LIMIT = 240  # characters of a skip or failure message shown in a table cell or note
NOTE_WIDTH = 120  # a terminal's width: notes under the table are wrapped to it
STATUS_NAMES = {"ok": "ok", "skipped": "skipped", "failed": "failed", "oom": "OOM", "interrupted": "interrupted"}


def number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def e2e_text(record: dict[str, Any]) -> str:
    """`0.691 (0.650-0.754)`: the median with the fastest and the slowest round."""
    if record.get("e2e_s") is None:
        return "-"
    median = record["e2e_s"]
    return f"{median:.3f} ({record.get('e2e_min_s', median):.3f}-{record.get('e2e_max_s', median):.3f})"


def _message(record: dict[str, Any]) -> str:
    """The record's message on one line, shortened past MESSAGE_LIMIT."""
    message = " ".join(str(record.get("message") or "").split())
    return f"{message[:MESSAGE_LIMIT]}{'...' if len(message) > MESSAGE_LIMIT else ''}"


def status_text(record: dict[str, Any]) -> str:
    """`ok`, or the status with its message on one line (a table cell), shortened past MESSAGE_LIMIT."""
    status = record.get("status") or "unknown"
    name = STATUS_NAMES.get(status, status)
    message = _message(record)
    return name if status == "ok" or not message else f"{name}: {message}"


def row(record: dict[str, Any], status: str) -> list[str]:
    if record.get("contended"):  # other processes took the cores during the timed rounds (diffbench.measure.telemetry)
        status += " (contended)"
    return [
        record.get("case") or "-",
        status,
        str(record.get("steps") or "-"),
        number(record.get("warmup_s")),
        e2e_text(record),
        number(record.get("its")),
        number(record.get("peak_mem_gib")),
        number(record.get("ssim"), 4),
        number(record.get("psnr"), 1),
        speedup_text(record),
    ]


def markdown_table(records: Iterable[dict[str, Any]]) -> str:
    """One row per record; a skip or failure message is a numbered note under the table, given once for
    every row that shares it (eight full-size cases skipped for want of a GPU: one sentence, not eight)."""
    notes: dict[str, int] = {}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for record in records:
        status, message = record.get("status") or "unknown", _message(record)
        cell = STATUS_NAMES.get(status, status)
        if status != "ok" and message:
            cell += f" [{notes.setdefault(message, len(notes) + 1)}]"
        lines.append("| " + " | ".join(row(record, cell)) + " |")
    lines += [""] if notes else []  # a line right under a Markdown table would be read as one more row
    for message, index in notes.items():
        lines += textwrap.wrap(
            f"[{index}] {message}", NOTE_WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
        )
    return "\n".join(lines)
