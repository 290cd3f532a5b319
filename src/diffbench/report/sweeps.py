"""The report's sweep sections: steps fit (table and plot), resolution sweep (recompiles), batch sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffbench.case import Status
from diffbench.report.document import Block, Figure, Heading, Paragraph, Table
from diffbench.report.plots import batch_plot, steps_plot
from diffbench.results.cells import number


def sweep_blocks(label: str, record: dict[str, Any], out_dir: Path) -> list[Block]:
    """Blocks for whichever sweeps `record` holds; none when it holds none."""
    blocks: list[Block] = []
    case = str(record.get("case"))
    if record.get("steps_sweep"):
        table = Table(
            ["steps", "E2E s (median)"], [[str(p["steps"]), number(p["e2e_s"], 3)] for p in record["steps_sweep"]]
        )
        name = f"steps-{case}.png"
        steps_plot(record, out_dir / name)
        blocks += [
            Heading(f"{label}: steps sweep", 3),
            Paragraph(
                f"Fit: {number(record['per_step_s'] * 1000, 2)} ms per step + {number(record['fixed_s'], 3)} s fixed "
                f"(text encoding, VAE decode, launch); R^2 {number(record['fit_r_squared'], 4)}; "
                f"{number(record['fitted_steps_per_s'], 1)} steps/s."
            ),
            table,
            Figure(name, f"steps sweep of {case}"),
        ]
    if record.get("resolution_sweep"):
        rows = [
            [
                p["resolution"],
                number(p["first_call_s"]),
                str(p["graphs_compiled"]),
                "yes" if p["recompiled"] else "no",
                number(p["compile_s"]),
                number(p["e2e_s"], 3),
                "HIT: runs eagerly" if p["recompile_limit_hits"] else "-",
            ]
            for p in record["resolution_sweep"]
        ]
        blocks += [
            Heading(f"{label}: resolution sweep", 3),
            Paragraph(
                "One pipeline through several sizes, in this order. Graphs compiled are counted by dynamo: a "
                "recompile costs the first call's extra time; after the recompile limit torch runs eagerly."
            ),
            Table(
                [
                    "size",
                    "first call s",
                    "graphs compiled",
                    "recompiled",
                    "compile s",
                    "E2E s (median)",
                    "recompile limit",
                ],
                rows,
            ),
        ]
    if record.get("batch_sweep"):
        rows = [
            [
                str(p["batch"]),
                number(p.get("e2e_s"), 3),
                number(p.get("images_per_s")),
                p["status"] if p["status"] == Status.OK else f"{p['status']}: {p.get('message', '')}",
            ]
            for p in record["batch_sweep"]
        ]
        name = f"batch-{case}.png"
        batch_plot(record, out_dir / name)
        blocks += [
            Heading(f"{label}: batch sweep", 3),
            Table(["batch", "E2E s (median)", "images/s", "status"], rows),
            Figure(name, f"batch sweep of {case}"),
        ]
    return blocks


def recompile_verdict(record: dict[str, Any]) -> str:
    """One phrase for how a resolution sweep's pipeline met new sizes, from dynamo's counts."""
    points = record["resolution_sweep"]
    own = str(record.get("resolution", "")).split("x")
    own_label = own[0] if len(set(own)) == 1 else "x".join(own)
    new = [p for p in points if p["resolution"] != own_label]
    recompiled = [p["resolution"] for p in points if p["recompiled"]]
    if any(p["recompile_limit_hits"] for p in points):
        return "hit the recompile limit: runs eagerly from then on"
    if not recompiled:
        return "no recompile"
    if new and len(recompiled) >= len(new):
        return "recompiles at every new size"
    return f"recompiled at {', '.join(recompiled)}, then reused that graph"


def recompile_overview(rows: list[tuple[str, dict[str, Any]]]) -> list[Block]:
    """`Recompiles across sizes` for every (label, record) with a resolution sweep: which backend pays a
    compile at every new size, at a glance; none without a sweep."""
    swept = [(label, record) for label, record in rows if record.get("resolution_sweep")]
    if not swept:
        return []
    table = [
        [
            label,
            ", ".join(p["resolution"] for p in record["resolution_sweep"]),
            str(sum(p["graphs_compiled"] for p in record["resolution_sweep"])),
            number(sum(p["compile_s"] for p in record["resolution_sweep"])),
            recompile_verdict(record),
        ]
        for label, record in swept
    ]
    return [
        Heading("Recompiles across sizes"),
        Paragraph(
            "Each resolution sweep in one line: the sizes in the order run, the graphs torch compiled on the way "
            "(dynamo's counters) and their cost (first call minus median). The sections below have each size."
        ),
        Table(["case", "sizes", "graphs compiled", "compile s", "verdict"], table),
    ]
