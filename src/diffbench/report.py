"""`diffbench report`: runs rendered as Markdown and HTML, with tables, charts, image grids and trends."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffbench.history import Run
from diffbench.records import write_text_atomically
from diffbench.report_components import component_blocks
from diffbench.report_document import Block, Figure, Heading, Paragraph, Table, to_html, to_markdown
from diffbench.report_grid import Cell, write_grid
from diffbench.report_machines import machine_blocks
from diffbench.report_plots import TrendPoint, backend_colors, grouped_bars, trend_chart
from diffbench.report_stages import conditions_section, stage_section
from diffbench.report_sweeps import recompile_overview, sweep_blocks
from diffbench.schema import speedup_text
from diffbench.summary import STATUS_NAMES, e2e_text, number, status_text

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 256  # grid thumbnails: random-weight outputs are noise, which PNG cannot shrink
NOTES = ("E2E: median of the timed rounds (min-max). Speedup: eager E2E / this E2E, within one run. "
         "SSIM/PSNR: the minimum over the prompt/seed pairs against eager of the same run; for eager "
         "itself, the first call against the last (determinism; PSNR is capped at 100 dB).")


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
    return [label if labels.count(label) == 1 else with_id if unique else f"{label} #{index + 1}"
            for index, (label, with_id) in enumerate(zip(labels, with_ids))]


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


def group_table(entries: list[Entry], several_runs: bool, with_cached_warmup: bool) -> Table:
    header = ["backend"] + (["run"] if several_runs else []) + ["warmup s"]
    header += (["warmup, warm cache s"] if with_cached_warmup else [])
    with_roofline = any(entry.record.get("denoiser_tflops") is not None for entry in entries)
    header += ["E2E s median (min-max)", "it/s"] + (["denoiser TFLOP/s (MFU)"] if with_roofline else [])
    header += ["peak mem GiB", "SSIM min", "PSNR min dB", "speedup vs eager", "status"]
    table = Table(header)
    for entry in entries:
        record = entry.record
        row = [str(record.get("backend") or "?")] + ([entry.run_label] if several_runs else [])
        row.append(number(record.get("warmup_s")))
        row += [number(record.get("warmup_cached_s"))] if with_cached_warmup else []
        row += [e2e_text(record), number(record.get("its"))] + ([roofline_text(record)] if with_roofline else [])
        row += [number(record.get("peak_mem_gib")),
                number(record.get("ssim"), 4), number(record.get("psnr"), 1), speedup_text(record),
                status_text(record)]
        table.rows.append(row)
    return table


def roofline_text(record: dict) -> str:
    """`281 (39%), launch-bound`: achieved denoiser TFLOP/s, its share of the measured matmul ceiling, and
    what bounds the case (boundness.classify)."""
    achieved, mfu = record.get("denoiser_tflops"), record.get("mfu")
    if achieved is None:
        return "-"
    text = f"{achieved:.3g} ({mfu:.0%})" if mfu is not None else f"{achieved:.3g} (-)"
    return f"{text}, {record['bound']}" if record.get("bound") else text


def stack_table(runs: list[Run], labels: list[str]) -> Table:
    table = Table(["run", "run id", "source", "GPU", "driver", "CUDA", "torch", "diffusers", "cases ok / all"])
    for run, label in zip(runs, labels):
        stack = run.stack
        ok = sum(record.get("status") == "ok" for record in run.records.values())
        versions = [str(stack.get(name) or "-") for name in ("driver", "cuda", "torch", "package diffusers")]
        table.rows.append([label, run.run_id, str(run.source), str(stack.get("gpu") or "CPU (no GPU)"), *versions,
                           f"{ok} / {len(run.records)}"])
    return table


def _grid_cell(entry: Entry | None) -> Cell:
    if entry is None:
        return Cell(None, [], "not in this run")
    record = entry.record
    caption = [str(record.get("backend")) + (" (reference)" if record.get("backend") == "eager" else "")]
    if record.get("ssim") is not None:
        caption.append(f"SSIM {record['ssim']:.4f} / PSNR {number(record.get('psnr'), 1)} dB")
    if record.get("status") != "ok":
        caption.append(status_text(record))
    image_path = entry.run.image_path(str(record.get("case")))
    if image_path is None and record.get("image") and entry.run.folder is not None:
        image_path = entry.run.folder / record["image"]  # recorded but gone: the grid says "file not found"
    reason = "no image recorded" if record.get("status") == "ok" else f"{record.get('status')}: no image"
    return Cell(image_path, caption, reason)


def grid_rows(entries: list[Entry]) -> tuple[list[list[Cell]], list[str]]:
    """One row per run holding the group (and its label), one column per backend of the group (eager first)."""
    backends = list(dict.fromkeys(str(entry.record.get("backend")) for entry in entries))
    runs = {entry.run_index: entry.run_label for entry in entries}
    by_place = {(entry.run_index, str(entry.record.get("backend"))): entry for entry in entries}
    rows = [[_grid_cell(by_place.get((run_index, backend))) for backend in backends] for run_index in runs]
    return rows, [f"run {label}" for label in runs.values()]


def _chart_values(groups: dict[GroupKey, list[Entry]], name: str, with_eager: bool) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for key, entries in groups.items():
        several_runs = len({entry.run_index for entry in entries}) > 1
        for entry in entries:
            record = entry.record
            charted = record.get("status") == "ok" and record.get(name) is not None
            if not charted or (record.get("backend") == "eager" and not with_eager):
                continue
            category = group_title(key) + (f"\n{entry.run_label}" if several_runs else "")
            values.setdefault(category, {})[str(record["backend"])] = float(record[name])
    return values


def chart_section(groups: dict[GroupKey, list[Entry]], out_dir: Path, colors: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [Heading("Speedup and peak memory")]
    speedups = _chart_values(groups, "speedup", with_eager=False)
    if speedups:
        grouped_bars(speedups, out_dir / "speedup.png", "Speedup over eager (E2E median, same run)", "speedup (x)",
                     colors, reference=1.0, value_format="{:.2f}x")
        blocks.append(Figure("speedup.png", "speedup over eager per backend"))
    else:
        blocks.append(Paragraph("No speedup chart: no accelerated backend ran beside eager in these runs."))
    memory = _chart_values(groups, "peak_mem_gib", with_eager=True)
    if memory:
        grouped_bars(memory, out_dir / "memory.png", "Peak CUDA memory (max allocated, timed rounds)", "GiB", colors)
        blocks.append(Figure("memory.png", "peak memory per backend"))
    else:
        blocks.append(Paragraph("No peak-memory chart: no record has a CUDA peak memory "
                                "(runs on the CPU measure none)."))
    return blocks


def _image_expected(record: dict[str, Any]) -> bool:
    """A finished case made an image; a skipped or failed one may not have."""
    return record.get("status") == "ok" or bool(record.get("image"))


def group_section(key: GroupKey, entries: list[Entry], out_dir: Path, image_size: int, several_runs: bool,
                  with_cached_warmup: bool) -> list[Block]:
    name = f"grid-{group_slug(key)}.png"
    write_grid(out_dir / name, group_title(key), *grid_rows(entries), image_size)
    blocks: list[Block] = [Heading(group_title(key)), Paragraph(group_settings(entries)),
                           group_table(entries, several_runs, with_cached_warmup),
                           *component_blocks(entries, group_slug(key), out_dir, several_runs),
                           Figure(name, f"outputs of {group_title(key)}")]
    missing = [entry for entry in entries if _image_expected(entry.record)
               and entry.run.image_path(str(entry.record.get("case"))) is None]
    if missing:
        names = [str(entry.record.get("case")) + (f" ({entry.run_label})" if several_runs else "") for entry in missing]
        text = f"Image not available for {', '.join(names)}: not in the run folder."
        if any(entry.run.folder is None for entry in missing):
            text += (" A pytest-benchmark JSON run takes its images from its run folder under --results-dir;"
                     " none was found there.")
        blocks.append(Paragraph(text))
    for entry in entries:
        label = str(entry.record.get("backend")) + (f" ({entry.run_label})" if several_runs else "")
        blocks += sweep_blocks(label, entry.record, out_dir)
    return blocks


def _measured(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("status") == "ok" and record.get("e2e_s") is not None


def _trend_cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    if not _measured(record):
        return STATUS_NAMES.get(str(record.get("status")), str(record.get("status")))
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
            line.append(TrendPoint(position, record["e2e_s"], record.get("e2e_min_s", record["e2e_s"]),
                                   record.get("e2e_max_s", record["e2e_s"])))
        first, last = (measured[0][1]["e2e_s"], measured[-1][1]["e2e_s"]) if len(measured) > 1 else (None, None)
        change = f"{(last / first - 1) * 100:+.1f}%" if first else "-"
        table.rows.append([case, *map(_trend_cell, records), change])
    if panels:
        trend_chart(panels, shown, out_dir / "trend.png", colors)
    blocks: list[Block] = [Heading("Trend over runs"), Paragraph(
        "E2E median in seconds of each case found in two runs or more, in the order the runs were given.")]
    return blocks + [table] + ([Figure("trend.png", "E2E over runs")] if panels else [])


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    pictures: list[Path]


@contextlib.contextmanager
def staged(out_dir: Path):
    """A fresh folder inside out_dir to write the report into; its files move into out_dir only once it is
    all written, so a report that fails half way leaves out_dir as it was, not holding half a report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # half a report: the error on its way up says why
        raise
    files = sorted((path for path in stage.rglob("*") if path.is_file()),
                   key=lambda path: path.name in ("report.md", "report.html"))  # the pages last
    for path in files:
        target = out_dir / path.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(stage)


def write_report(runs: list[Run], out_dir: Path, title: str | None = None,
                 image_size: int = DEFAULT_IMAGE_SIZE) -> ReportFiles:
    """Write report.md, report.html and their PNGs (charts, image grids, trend) into out_dir, all or nothing."""
    out_dir = Path(out_dir)
    with staged(out_dir) as stage:
        blocks, title = report_blocks(runs, stage, title, image_size)
        write_text_atomically(stage / "report.md", to_markdown(blocks))
        write_text_atomically(stage / "report.html", to_html(blocks, title))
    pictures = [out_dir / block.path for block in blocks if isinstance(block, Figure)]
    logger.info("report written to %s (%d pictures)", out_dir, len(pictures))
    return ReportFiles(out_dir / "report.md", out_dir / "report.html", pictures)


def report_blocks(runs: list[Run], out_dir: Path, title: str | None, image_size: int) -> tuple[list[Block], str]:
    """The report's blocks and title; its pictures are written into out_dir on the way."""
    labels = run_labels(runs)
    groups = group_entries(runs, labels)
    colors = backend_colors(list(dict.fromkeys(str(entry.record.get("backend"))
                                               for entries in groups.values() for entry in entries)))
    with_cached_warmup = any(record.get("warmup_cached_s") is not None
                             for run in runs for record in run.records.values())
    title = title or "diffbench report: " + ", ".join(labels)
    blocks: list[Block] = [Heading(title, 1), Heading("Runs"), stack_table(runs, labels), Paragraph(NOTES)]
    blocks += machine_blocks(runs, labels)
    blocks += chart_section(groups, out_dir, colors)
    labelled = [(str(entry.record.get("case")) + (f" ({entry.run_label})" if len(runs) > 1 else ""), entry.record)
                for entries in groups.values() for entry in entries]
    blocks += stage_section(labelled, out_dir) + conditions_section(labelled)
    blocks += recompile_overview(labelled)
    for key, entries in groups.items():
        blocks += group_section(key, entries, out_dir, image_size, len(runs) > 1, with_cached_warmup)
    blocks += trend_section(runs, labels, out_dir, colors)
    return blocks, title
