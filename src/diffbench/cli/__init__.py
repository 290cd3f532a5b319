"""The `diffbench` command, beside `pytest benchmarks/` (which runs the benchmarks): what this machine has
(models, backends, env), and what to do with runs: print them (table), compare two (compare: exit 1 on a
regression, for CI), render them with charts and image grids (report), join shards (merge)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffbench.backends.base import registry
from diffbench.cli.runs import add_compare_command, add_merge_command, add_report_command
from diffbench.models.catalog import MODELS
from diffbench.results.environment import stack_info
from diffbench.run.selfcheck import add_selfcheck_command


def show_models(_: argparse.Namespace) -> int:
    rows = [
        (
            spec.name,
            spec.hub_id or "committed tiny configs (CPU)",
            f"steps={spec.default_steps}",
            f"sizes={','.join(spec.default_resolutions)}",
            ", ".join(f"{task}={cls}" for task, cls in spec.pipelines.items()),
        )
        for spec in MODELS.values()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:  # columns as wide as their longest entry (realvisxl-lightning-5step)
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def backend_status(backend, device: str, skipped: dict[str, str | None]) -> str:
    """`available`; `unavailable: <why>` (a package it needs is missing); or, when it skips every model
    family here, `needs CUDA (none here)` on a machine without a GPU, `cannot run on <device>` on one with."""
    reason = backend.unavailable_reason(device)
    if reason is not None:
        return "unavailable: " + reason
    if not all(skipped.values()):
        return "available"
    status = "needs CUDA (none here)" if device == "cpu" else f"cannot run on {device}"
    reasons = set(skipped.values())
    return f"{status}: {reasons.pop()}" if len(reasons) == 1 else status


def backend_lines(device: str) -> list[str]:
    """For every backend: available here or why not, what it is, its options, quality floor, and
    the model families it cannot run here (with the reason)."""
    from diffbench.case import Case, Resolution

    lines = []
    for name, cls in registry().items():
        backend = cls()
        skipped = {}
        for model in REPRESENTATIVE_MODELS:
            spec = MODELS[model]
            case = Case(model, next(iter(spec.pipelines)), Resolution(1024, 1024), name)
            skipped[model] = backend.unsupported_reason(case, spec, device)
        status = backend_status(backend, device, skipped)
        lines.append(f"{name:36} {status}")
        if cls.summary:
            lines.append(f"    {cls.summary}")
        kind = "lossy" if cls.lossy else "lossless"
        lines.append(f"    quality floor ({kind}): {cls.quality_floor}")
        if cls.option_keys:
            defaults = json.dumps(cls.default_options) if cls.default_options else "{}"
            lines.append(f"    options: {', '.join(sorted(cls.option_keys))}; defaults {defaults}")
        if not (all(skipped.values()) and len(set(skipped.values())) == 1):  # else the status gave the reason
            lines += [f"    skips {model} on {device}: {why}" for model, why in skipped.items() if why]
    return lines


REPRESENTATIVE_MODELS = ("sdxl", "ip2p", "sd35-large")  # one per family


def show_backends(_: argparse.Namespace) -> int:
    device = "cuda" if stack_info()["gpu"] else "cpu"
    print("\n".join(backend_lines(device)))
    return 0


def show_env(_: argparse.Namespace) -> int:
    from diffbench.results.environment import extras

    installed = extras()
    print(
        json.dumps(
            {
                **stack_info(),
                "extras": installed
                if installed is not None
                else "unknown: diffbench is not installed as a package (pip install -e .)",
            },
            indent=2,
        )
    )
    return show_backends(_)


def show_table(arguments: argparse.Namespace) -> int:
    """Exit 0: the table printed; 2: a file is missing or cannot be read (a torn last line is a warning)."""
    from diffbench.results.history import HistoryError, read_records
    from diffbench.results.summary import markdown_table

    missing = [path for path in arguments.results if not path.is_file()]
    if missing:
        print(f"diffbench table: no such results file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    records = []
    try:
        for path in arguments.results:
            read, warnings = read_records(path)
            records += read
            for warning in warnings:
                print(f"diffbench table: warning: {warning}", file=sys.stderr)
    except HistoryError as error:
        print(f"diffbench table: {error}", file=sys.stderr)
        return 2
    print(markdown_table(records))
    return 0


def main(argv: list[str] | None = None) -> int:
    from diffbench.run.third_party_logs import quiet_known_noise

    undo = quiet_known_noise()  # before the backends import torchao
    try:
        return run_command(argv)
    finally:
        undo()


def run_command(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="diffbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the models of the catalog").set_defaults(run=show_models)
    commands.add_parser("backends", help="list backends and whether each can run here").set_defaults(run=show_backends)
    commands.add_parser("env", help="print the detected stack and backend availability").set_defaults(run=show_env)
    table = commands.add_parser("table", help="print a Markdown table of results.jsonl files")
    table.add_argument("results", nargs="+", type=Path, help="results.jsonl files of runs")
    table.set_defaults(run=show_table)
    add_compare_command(commands)
    add_report_command(commands)
    add_merge_command(commands)
    add_selfcheck_command(commands)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)
