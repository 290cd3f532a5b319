"""Charts of a report (matplotlib, Agg canvas, no display): bars per backend and trends over runs."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure  # the object API: no pyplot, no global backend switch

from diffbench.case import Status
from diffbench.results.records import atomic_path

EAGER_COLOR = "#8c8c8c"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 100


class TrendPoint(NamedTuple):
    """E2E of one case in one run: x is the run's position in the order the runs were given."""

    x: int
    median: float
    low: float
    high: float


def _save(figure: Figure, path: Path) -> None:
    """Write `figure` as a PNG at `path` (its folder made if need be), never leaving half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def backend_colors(backends: list[str]) -> dict[str, str]:
    """One color per backend, the same in every chart; eager is gray."""
    others = [name for name in backends if name != "eager"]
    colors = {"eager": EAGER_COLOR}  # first, so its bar leads each group as its row leads each table
    colors.update({name: PALETTE[index % len(PALETTE)] for index, name in enumerate(others)})
    return colors


def grouped_bars(
    values: dict[str, dict[str, float]],
    path: Path,
    title: str,
    xlabel: str,
    colors: dict[str, str],
    reference: float | None = None,
    value_format: str = "{:.2f}",
) -> None:
    """Horizontal bars: one row of bars per category (case group), one bar per backend, values written."""
    categories = list(values)
    backends = [name for name in colors if any(name in by_backend for by_backend in values.values())]
    bar_height = 0.8 / max(len(backends), 1)
    row_height = max(0.5, 0.3 * len(backends))  # room for a two-line label (group, run) too
    figure = Figure(figsize=(9, max(2.4, 1.0 + row_height * len(categories))), dpi=DPI)
    axes = figure.add_subplot()
    largest = max((value for by_backend in values.values() for value in by_backend.values()), default=1.0)
    for index, backend in enumerate(backends):
        offsets = [row + (index - (len(backends) - 1) / 2) * bar_height for row in range(len(categories))]
        widths = [values[category].get(backend, math.nan) for category in categories]
        axes.barh(offsets, widths, height=bar_height * 0.9, color=colors[backend], label=backend)
        for offset, width in zip(offsets, widths):
            if not math.isnan(width):
                axes.text(width + largest * 0.01, offset, value_format.format(width), va="center", fontsize=8)
    if reference is not None:
        axes.axvline(reference, color=EAGER_COLOR, linestyle="--", linewidth=1, label="eager")
    axes.set_yticks(range(len(categories)), categories, fontsize=9)
    axes.invert_yaxis()  # first group on top, as in the tables
    axes.set_xlim(0, largest * 1.15)
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: never over a bar
    figure.tight_layout()
    _save(figure, path)


def trend_chart(
    panels: dict[str, dict[str, list[TrendPoint]]], run_labels: list[str], path: Path, colors: dict[str, str]
) -> None:
    """One panel per case group: E2E median (min-max bars) of each backend over the runs, in order."""
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(max(6.0, 4.5 * columns), 3.6 * rows), dpi=DPI)
    tick_labels = [textwrap.fill(label, 18) for label in run_labels]  # commits with run ids are long
    rotation, align = (0, "center") if len(run_labels) <= 4 else (30, "right")
    for index, (group, lines) in enumerate(panels.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for backend, points in lines.items():
            axes.errorbar(
                [point.x for point in points],
                [point.median for point in points],
                yerr=[[point.median - point.low for point in points], [point.high - point.median for point in points]],
                marker="o",
                capsize=3,
                color=colors.get(backend),
                label=backend,
            )
        axes.set_xticks(range(len(run_labels)), tick_labels, fontsize=8, rotation=rotation, ha=align)
        axes.set_xlim(-0.5, len(run_labels) - 0.5)
        axes.set_ylim(bottom=0)
        axes.set_ylabel("E2E s (median, min-max)")
        axes.set_title(group, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def steps_plot(record: dict[str, Any], path: Path) -> Path:
    """The steps sweep's points and fitted line, as the seed script's throughput plot."""
    points = record["steps_sweep"]
    steps = [p["steps"] for p in points]
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    axes.plot(steps, [p["e2e_s"] for p in points], "o", label="E2E median")
    line = [record["per_step_s"] * s + record["fixed_s"] for s in (0, max(steps))]
    axes.plot(
        [0, max(steps)],
        line,
        "-",
        label=f"fit: {record['per_step_s'] * 1000:.1f} ms/step + "
        f"{record['fixed_s']:.3f} s (R^2 {record['fit_r_squared']:.3f})",
    )
    axes.set(xlabel="denoising steps", ylabel="seconds", title=f"{record['case']}: time against steps")
    axes.legend(loc="upper left", fontsize=8)
    _save(figure, path)
    return path


def batch_plot(record: dict[str, Any], path: Path) -> Path:
    """Images per second against batch size (log2 axis), the batch that ran out of memory marked on it."""
    points = record["batch_sweep"]
    done = [p for p in points if p["status"] == Status.OK]
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    axes.plot([p["batch"] for p in done], [p["images_per_s"] for p in done], "o-", label="images/s (median)")
    for point in points:
        if point["status"] != Status.OK:
            axes.axvline(
                point["batch"], color="tab:red", linestyle="--", label=f"batch {point['batch']}: {point['status']}"
            )
    axes.set_xscale("log", base=2)
    axes.set_xticks([p["batch"] for p in points], [str(p["batch"]) for p in points])
    axes.set_ylim(bottom=0)
    axes.set(
        xlabel="batch size (images per call)",
        ylabel="images per second",
        title=f"{record['case']}: throughput against batch",
    )
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)
    return path
