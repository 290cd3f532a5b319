"""A Markdown table of result records: the seeds' metrics per case, with spread and speedup."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from diffbench.records import read_results
from diffbench.schema import speedup_text

COLUMNS = ("case", "status", "dtype", "steps", "warmup s", "E2E s (median, min-max)", "it/s",
           "peak mem GiB", "SSIM min", "PSNR min dB", "speedup")


MESSAGE_LIMIT = 240  # characters of a skip or failure message shown in a table cell
STATUS_NAMES = {"ok": "ok", "skipped": "skipped", "failed": "failed", "oom": "OOM", "interrupted": "interrupted"}


def number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def e2e_text(record: dict[str, Any]) -> str:
    """`0.691 (0.650-0.754)`: the median with the fastest and the slowest round."""
    if record.get("e2e_s") is None:
        return "-"
    median = record["e2e_s"]
    return f"{median:.3f} ({record.get('e2e_min_s', median):.3f}-{record.get('e2e_max_s', median):.3f})"


def status_text(record: dict[str, Any]) -> str:
    """`ok`, or the status with its message on one line (a table cell), shortened past MESSAGE_LIMIT."""
    status = record.get("status") or "unknown"
    name = STATUS_NAMES.get(status, status)
    message = " ".join(str(record.get("message") or "").split())
    if status == "ok" or not message:
        return name
    return f"{name}: {message[:MESSAGE_LIMIT]}{'...' if len(message) > MESSAGE_LIMIT else ''}"


def row(record: dict[str, Any]) -> list[str]:
    return [
        record.get("case") or "-", status_text(record), record.get("dtype") or "-", str(record.get("steps") or "-"),
        number(record.get("warmup_s")), e2e_text(record), number(record.get("its")), number(record.get("peak_mem_gib")),
        number(record.get("ssim"), 4), number(record.get("psnr"), 1), speedup_text(record),
    ]


def markdown_table(records: Iterable[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(record)) + " |" for record in records]
    return "\n".join(lines)


def table_for_files(paths: Iterable[Path]) -> str:
    records = [record for path in paths for record in read_results(Path(path))]
    return markdown_table(records)
