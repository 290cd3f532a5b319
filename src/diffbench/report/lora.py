"""The report's LoRA section of a case: the adapter's load and fuse cost, and the `--lora-switch` table."""

from __future__ import annotations

from typing import Any

from diffbench.report.document import Block, Heading, Paragraph, Table
from diffbench.results.cells import number


def lora_blocks(label: str, record: dict[str, Any]) -> list[Block]:
    """The switching table of a compiled LoRA case; none for a case without `lora_switch`."""
    if not record.get("lora_switch"):
        return []
    rows = [_switch_row(p) for p in record["lora_switch"]]
    fuse = f", fused in {number(record['lora_fuse_s'], 3)} s" if record.get("lora_fuse_s") is not None else ""
    return [
        Heading(f"{label}: LoRA switching ({record.get('lora')}, {record.get('lora_mode')})", 3),
        Paragraph(
            f"Adapter loaded in {number(record.get('lora_load_s'), 3)} s{fuse}, on {record.get('lora_layers')} layers. "
            "Each switch in turn on the compiled, warm pipeline (by default: swap for another adapter of the same "
            "rank, scale it to 0.5, unload it). Graphs compiled on the next call are counted by dynamo; quality is "
            "against eager "
            "with the same adapter state."
        ),
        Table(
            [
                "switch",
                "hot-swap",
                "switch s",
                "graphs compiled",
                "recompile limit",
                "next call s",
                "E2E s (median)",
                "SSIM min",
                "PSNR min",
                "matches eager",
            ],
            rows,
        ),
    ]


def _switch_row(p: dict[str, Any]) -> list[str]:
    if p.get("interrupted"):  # the run was stopped (Ctrl-C, a time limit) during this switch or the call after it
        return [
            p["scenario"],
            "yes" if p["hotswap"] else "no",
            f"interrupted after {number(p['elapsed_s'], 1)} s",
            *["-"] * 7,
        ]
    return [
        p["scenario"],
        "yes" if p["hotswap"] else "no",
        number(p["switch_s"], 3),
        str(p["graphs_compiled"]),
        "HIT: runs eagerly" if p["recompile_limit_hits"] else "-",
        number(p["next_call_s"]),
        number(p["e2e_s"], 3),
        number(p["ssim_min"], 4),
        number(p["psnr_min"], 1),
        "yes" if p["matches_eager"] else "NO",
    ]
