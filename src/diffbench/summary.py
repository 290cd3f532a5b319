"""A Markdown table of result records: the seeds' metrics per case, with spread and speedup."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from diffbench.records import read_results

COLUMNS = ("case", "status", "dtype", "steps", "warmup s", "E2E s (median, min-max)", "it/s",
           "peak mem GiB", "SSIM min", "PSNR min dB", "speedup")


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(record: dict[str, Any]) -> list[str]:
    status = record["status"] if record["status"] == "ok" else f"{record['status']}: {record.get('message') or ''}"
    e2e = "-"
    if record.get("e2e_s") is not None:
        e2e = f"{record['e2e_s']:.3f} ({record.get('e2e_min_s', record['e2e_s']):.3f}-{record.get('e2e_max_s', record['e2e_s']):.3f})"
    return [
        record.get("case") or "-", status, record.get("dtype") or "-", str(record.get("steps") or "-"),
        _number(record.get("warmup_s")), e2e, _number(record.get("its")), _number(record.get("peak_mem_gib")),
        _number(record.get("ssim"), 4), _number(record.get("psnr"), 1), _number(record.get("speedup")),
    ]


def markdown_table(records: Iterable[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(record)) + " |" for record in records]
    return "\n".join(lines)


def table_for_files(paths: Iterable[Path]) -> str:
    records = [record for path in paths for record in read_results(Path(path))]
    return markdown_table(records)
