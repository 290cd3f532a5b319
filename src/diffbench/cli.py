"""The `diffbench` console command: what models, backends and stack this machine has."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffbench.backends.base import registry
from diffbench.catalog import MODELS
from diffbench.environment import stack_info


def show_models(_: argparse.Namespace) -> int:
    for spec in MODELS.values():
        source = spec.hub_id or "committed tiny configs (CPU)"
        tasks = ", ".join(f"{task}={cls}" for task, cls in spec.pipelines.items())
        print(f"{spec.name:22} {source:42} steps={spec.default_steps:<3} sizes={','.join(spec.default_resolutions):9} {tasks}")
    return 0


def show_backends(_: argparse.Namespace) -> int:
    device = "cuda" if stack_info()["gpu"] else "cpu"
    for name, cls in registry().items():
        reason = cls().unavailable_reason(device)
        print(f"{name:12} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def show_env(_: argparse.Namespace) -> int:
    print(json.dumps(stack_info(), indent=2))
    return show_backends(_)


def show_table(arguments: argparse.Namespace) -> int:
    from diffbench.summary import table_for_files

    missing = [path for path in arguments.results if not path.is_file()]
    if missing:
        print(f"diffbench table: no such results file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    print(table_for_files(arguments.results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the models of the catalog").set_defaults(run=show_models)
    commands.add_parser("backends", help="list backends and whether each can run here").set_defaults(run=show_backends)
    commands.add_parser("env", help="print the detected stack and backend availability").set_defaults(run=show_env)
    table = commands.add_parser("table", help="print a Markdown table of results.jsonl files")
    table.add_argument("results", nargs="+", type=Path, help="results.jsonl files of runs")
    table.set_defaults(run=show_table)
    arguments = parser.parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
