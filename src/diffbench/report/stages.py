"""Report sections of issue 15: where each case's time goes (one stacked bar per case) and the conditions
each number was measured under (generator, pairing, host syncs, GPU telemetry, host load, compile cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure as MplFigure

from diffbench.case import Status
from diffbench.report.document import Block, Figure, Heading, Paragraph, Table
from diffbench.report.plots import DPI, PALETTE, _save
from diffbench.results.cells import speedup_text
from diffbench.results.schema import FIELD, STAGES, format_field

STAGE_NAMES = {
    "text_encode_ms": "text encode",
    "denoiser_ms": "denoiser",
    "controlnet_ms": "ControlNet",
    "vae_decode_ms": "VAE decode",
    "other_ms": "other (set-up, scheduler, host gaps)",
}
CONDITIONS = (
    "generator",
    "pairing",
    "host_syncs_per_call",
    "gpu_util_pct",
    "sm_clock_mhz",
    "power_w",
    "energy_per_image_j",
    "throttle_reasons",
    "host_bound",
    "host_other_cpu",
    "contended",
    "compile_cache",
)


def _with_stages(labelled: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (label, record)
        for label, record in labelled
        if record.get("status") == Status.OK and record.get("denoiser_ms") is not None
    ]


def stage_bars(labelled: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    """Horizontal stacked bars: per case, its median ms in each stage, which add up to its E2E median."""
    figure = MplFigure(figsize=(10, max(2.4, 1.2 + 0.42 * len(labelled))), dpi=DPI)
    axes = figure.add_subplot()
    rows = range(len(labelled))
    left = [0.0] * len(labelled)
    for color, stage in zip(PALETTE, STAGES):
        widths = [max(0.0, record.get(stage) or 0.0) for _, record in labelled]
        if any(widths):
            axes.barh(rows, widths, left=left, color=color, label=STAGE_NAMES[stage], height=0.7)
            left = [a + b for a, b in zip(left, widths)]
    for row, (_, record) in enumerate(labelled):
        axes.text(left[row] * 1.01, row, f"{record['e2e_s'] * 1000:.0f} ms", va="center", fontsize=8)
    axes.set_yticks(list(rows), [label for label, _ in labelled], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(left, default=1.0) * 1.15)
    axes.set_xlabel("ms per pipeline call (medians over the timed rounds)")
    axes.set_title("Where the time goes")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    figure.tight_layout()
    _save(figure, path)


def stage_section(labelled: list[tuple[str, dict[str, Any]]], out_dir: Path) -> list[Block]:
    """The stacked bar and its table (ms per stage, denoiser ms per call, it/s)."""
    shown = _with_stages(labelled)
    if not shown:
        return []
    stage_bars(shown, out_dir / "stages.png")
    table = Table(["case", *(FIELD[stage].label for stage in STAGES), FIELD["denoiser_ms_per_step"].label, "E2E ms"])
    for label, record in shown:
        table.rows.append(
            [
                label,
                *(format_field(stage, record.get(stage)) for stage in STAGES),
                format_field("denoiser_ms_per_step", record.get("denoiser_ms_per_step")),
                f"{record['e2e_s'] * 1000:.1f}",
            ]
        )
    note = (
        "Medians over the timed rounds, from CUDA events on a GPU (host clocks on the CPU); `other` is the "
        "E2E median minus the stages. VAE decode: " + FIELD["vae_decode_ms"].doc + "."
    )
    return [Heading("Where the time goes"), Paragraph(note), Figure("stages.png", "time per stage per case"), table]


def conditions_section(labelled: list[tuple[str, dict[str, Any]]]) -> list[Block]:
    """What each number was measured under, and the speedup with its interval."""
    shown = [(label, record) for label, record in labelled if record.get("status") == Status.OK]
    if not shown:
        return []
    columns = [key for key in CONDITIONS if any(record.get(key) is not None for _, record in shown)]
    if not columns:  # runs made before these fields existed
        return []
    table = Table(["case", "speedup [95%]", *(FIELD[key].label for key in columns)])
    for label, record in shown:
        table.rows.append([label, speedup_text(record), *(format_field(key, record.get(key)) for key in columns)])
    notes = {record["telemetry_note"] for _, record in shown if record.get("telemetry_note") is not None}
    text = (
        "Speedup: paired rounds give the median of eager/backend per pair with a bootstrap 95% interval; "
        "eager-after flags an eager drift over 5%. " + " ".join(sorted(notes))
    )
    return [Heading("Measurement conditions"), Paragraph(text.strip()), table]
