"""The report's first section: the runs compared, their stacks and how many of their cases passed."""

from __future__ import annotations

from diffbench.case import Status
from diffbench.report.document import Table
from diffbench.results.history import Run


def stack_table(runs: list[Run], labels: list[str]) -> Table:
    table = Table(["run", "run id", "source", "GPU", "driver", "CUDA", "torch", "diffusers", "cases ok / all"])
    for run, label in zip(runs, labels):
        stack = run.stack
        ok = sum(record.get("status") == Status.OK for record in run.records.values())
        versions = [str(stack.get(name) or "-") for name in ("driver", "cuda", "torch", "package diffusers")]
        table.rows.append(
            [
                label,
                run.run_id,
                str(run.source),
                str(stack.get("gpu") or "CPU (no GPU)"),
                *versions,
                f"{ok} / {len(run.records)}",
            ]
        )
    return table
