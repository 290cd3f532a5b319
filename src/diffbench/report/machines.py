"""Report section of issue 19: the parts of a run merged from shards or machines (which machine and stack
ran which cases, each shard's exit status) and the shards that are missing or failed."""

from __future__ import annotations

from typing import Any

from diffbench.report.document import Block, Heading, Paragraph, Table
from diffbench.results.history import Run, shard_problems, stack_key

PART_COLUMNS = ["shard", "run id", "GPU", "host CPU", "torch", "CUDA", "diffusers", "cases", "exit status"]


def _part_row(part: dict[str, Any]) -> list[str]:
    stack = part.get("stack") or {}
    versions = [stack.get("torch"), stack.get("cuda"), (stack.get("packages") or {}).get("diffusers")]
    status = part.get("exit_status", "-")  # "-": given as a run folder, not judged
    return [
        str(part.get("shard") or "-"),
        str(part.get("run_id") or "-"),
        str(stack.get("gpu") or "CPU (no GPU)"),
        str(stack.get("cpu_model") or "-"),
        *(str(version or "-") for version in versions),
        str(len(part.get("cases") or [])),
        "none (stopped)" if status is None else str(status),
    ]


def _worth_showing(run: Run) -> bool:
    """A merged run whose parts ran on more than one machine or stack, or that lacks or lost a shard."""
    machines = {repr(sorted(stack_key(part.get("stack") or {}).items())) for part in run.parts if part.get("cases")}
    return len(machines) > 1 or bool(shard_problems(run.shards))


def machine_blocks(runs: list[Run], labels: list[str]) -> list[Block]:
    """For each merged run worth it: its parts, one row each, and a line per missing or failed shard."""
    blocks: list[Block] = []
    for run, label in zip(runs, labels):
        if not _worth_showing(run):
            continue
        blocks += [
            Heading(f"Machines and shards of {label}", 3),
            Table(PART_COLUMNS, [_part_row(part) for part in run.parts]),
        ]
        problems = shard_problems(run.shards)
        if problems:
            blocks.append(Paragraph("This run is incomplete: " + "; ".join(problems) + "."))
        blocks.append(
            Paragraph(
                "diffbench compare compares a case only with itself measured on the same GPU "
                "(or CPU, without one) and stack; a case measured elsewhere is not comparable."
            )
        )
    return blocks
