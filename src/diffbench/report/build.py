"""`diffbench report`: runs rendered as Markdown and HTML; the sections, in order, are the list SECTIONS.

Adding a section is one entry in SECTIONS: a function of the ReportContext returning its blocks (write its
pictures into `context.out_dir`), usually in a module of its own in this package."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from diffbench.report.charts import chart_section
from diffbench.report.document import Block, Figure, Heading, Paragraph, to_html, to_markdown
from diffbench.report.groups import Entry, GroupKey, group_entries, group_section, run_labels
from diffbench.report.machines import machine_blocks
from diffbench.report.plots import backend_colors
from diffbench.report.runs import stack_table
from diffbench.report.stages import conditions_section, stage_section
from diffbench.report.sweeps import recompile_overview
from diffbench.report.trend import trend_section
from diffbench.results.history import Run
from diffbench.results.records import write_text_atomically

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 256  # grid thumbnails: random-weight outputs are noise, which PNG cannot shrink
NOTES = (
    "E2E: median of the timed rounds (min-max). Speedup: eager E2E / this E2E, within one run. "
    "SSIM/PSNR: the minimum over the prompt/seed pairs against eager of the same run; for eager "
    "itself, the first call against the last (determinism; PSNR is capped at 100 dB)."
)


@dataclass
class ReportContext:
    """What every section may read: the runs in order, their labels, the records grouped, where pictures go."""

    runs: list[Run]
    labels: list[str]
    out_dir: Path
    image_size: int
    groups: dict[GroupKey, list[Entry]] = field(init=False)
    colors: dict[str, str] = field(init=False)
    labelled: list[tuple[str, dict[str, Any]]] = field(init=False)  # (case, or case (run label), record)

    def __post_init__(self) -> None:
        self.groups = group_entries(self.runs, self.labels)
        every = [entry for entries in self.groups.values() for entry in entries]
        self.colors = backend_colors(list(dict.fromkeys(str(entry.record.get("backend")) for entry in every)))
        several = len(self.runs) > 1
        self.labelled = [
            (str(entry.record.get("case")) + (f" ({entry.run_label})" if several else ""), entry.record)
            for entry in every
        ]


def runs_section(context: ReportContext) -> list[Block]:
    return [Heading("Runs"), stack_table(context.runs, context.labels), Paragraph(NOTES)]


def group_sections(context: ReportContext) -> list[Block]:
    """One section per model, task and resolution: its table, components, image grid and sweeps."""
    in_report = {key for _, record in context.labelled for key, value in record.items() if value is not None}
    return [
        block
        for key, entries in context.groups.items()
        for block in group_section(key, entries, context.out_dir, context.image_size, len(context.runs) > 1, in_report)
    ]


Section = Callable[[ReportContext], list[Block]]
SECTIONS: tuple[Section, ...] = (
    runs_section,
    lambda context: machine_blocks(context.runs, context.labels),
    lambda context: chart_section(context.groups, context.out_dir, context.colors),
    lambda context: stage_section(context.labelled, context.out_dir),
    lambda context: conditions_section(context.labelled),
    lambda context: recompile_overview(context.labelled),
    group_sections,
    lambda context: trend_section(context.runs, context.labels, context.out_dir, context.colors),
)


def report_blocks(runs: list[Run], out_dir: Path, title: str | None, image_size: int) -> tuple[list[Block], str]:
    """The report's blocks and title, section by section; its pictures are written into out_dir on the way."""
    context = ReportContext(runs, run_labels(runs), out_dir, image_size)
    title = title or "diffbench report: " + ", ".join(context.labels)
    blocks: list[Block] = [Heading(title, 1)]
    for section in SECTIONS:
        blocks += section(context)
    return blocks, title


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
    files = sorted(
        (path for path in stage.rglob("*") if path.is_file()),
        key=lambda path: path.name in ("report.md", "report.html"),
    )  # the pages last
    for path in files:
        target = out_dir / path.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(stage)


def write_report(
    runs: list[Run], out_dir: Path, title: str | None = None, image_size: int = DEFAULT_IMAGE_SIZE
) -> ReportFiles:
    """Write report.md, report.html and their PNGs (charts, image grids, trend) into out_dir, all or nothing."""
    out_dir = Path(out_dir)
    with staged(out_dir) as stage:
        blocks, title = report_blocks(runs, stage, title, image_size)
        write_text_atomically(stage / "report.md", to_markdown(blocks))
        write_text_atomically(stage / "report.html", to_html(blocks, title))
    pictures = [out_dir / block.path for block in blocks if isinstance(block, Figure)]
    logger.info("report written to %s (%d pictures)", out_dir, len(pictures))
    return ReportFiles(out_dir / "report.md", out_dir / "report.html", pictures)
