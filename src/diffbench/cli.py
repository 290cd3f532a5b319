"""The `diffbench` command, beside `pytest benchmarks/` (which runs the benchmarks): what this machine has
(models, backends, env), and what to do with runs: print them (table), compare two (compare: exit 1 on a
regression, for CI), render them with charts and image grids (report), join shards (merge)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffbench.backends.base import registry
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


def fail_thresholds(text: str) -> dict:
    """`--fail` as thresholds per metric; a bad value is argparse's usage error (exit 2)."""
    from diffbench.errors import OptionError
    from diffbench.results.compare import parse_thresholds

    try:
        return parse_thresholds(text)
    except OptionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def load_runs(command: str, specs: list[str], arguments: argparse.Namespace) -> list | None:
    """The runs named, each checked (records, numbers), with their warnings printed; None (after saying
    why) when one cannot be used, which the command turns into exit 2."""
    from diffbench.results.compare import check_comparable
    from diffbench.results.history import HistoryError, load_run

    try:
        runs = [load_run(spec, arguments.storage, arguments.results_dir) for spec in specs]
        for run in runs:
            check_comparable(run)
    except HistoryError as error:
        print(f"diffbench {command}: {error}", file=sys.stderr)
        return None
    for warning in (warning for run in runs for warning in run.warnings):
        print(f"diffbench {command}: warning: {warning}", file=sys.stderr)
    return runs


def stack_warnings(comparison, arguments: argparse.Namespace) -> bool:
    """Say how the runs' stacks differ (stderr); False, after saying why, when --same-stack refuses them."""
    differences = "; ".join(comparison.stack_differences)
    machines = comparison.not_comparable
    if arguments.same_stack and (differences or machines):
        named = differences or f"{machines[0].case}: {machines[0].message}"
        print(f"diffbench compare: the runs' stacks differ ({named}): not compared (--same-stack)", file=sys.stderr)
        return False
    if machines:
        print(
            f"diffbench compare: warning: {len(machines)} case(s) not comparable: measured on another machine or "
            "stack than in BASE (their rows say how); --across-stacks compares them all the same",
            file=sys.stderr,
        )
    elif arguments.across_stacks and (differences or comparison.compared_across):
        named = differences or "; ".join(comparison.compared_across[:3]) + (
            f"; and {len(comparison.compared_across) - 3} more" if len(comparison.compared_across) > 3 else ""
        )
        print(f"diffbench compare: warning: the runs' stacks differ, so may their numbers: {named}", file=sys.stderr)
    return True


def compare_two_runs(arguments: argparse.Namespace) -> int:
    """Exit 0: nothing regressed; 1: something did, a change is inconclusive (unless --inconclusive pass), or
    a shard of NEW is missing or failed; 2: a run is unusable, the runs share no case, or stacks differ with
    --same-stack."""
    from diffbench.results.compare import check_overlap, compare_runs
    from diffbench.results.compare_text import comparison_json, render
    from diffbench.results.history import HistoryError

    runs = load_runs("compare", [arguments.base, arguments.new], arguments)
    if runs is None:
        return 2
    base, new = runs
    try:
        check_overlap(base, new)
    except HistoryError as error:
        print(f"diffbench compare: {error}", file=sys.stderr)
        return 2
    comparison = compare_runs(base, new, arguments.fail, arguments.across_stacks)
    comparison.inconclusive_fails = arguments.inconclusive == "fail"
    if not stack_warnings(comparison, arguments):
        return 2
    print(render(comparison))
    if arguments.json:
        try:
            arguments.json.write_text(json.dumps(comparison_json(comparison), indent=2) + "\n")
        except OSError as error:
            print(f"diffbench compare: cannot write {arguments.json}: {error}", file=sys.stderr)
            return 2
    return 1 if comparison.failed else 0


def add_compare_command(commands: argparse._SubParsersAction) -> None:
    from diffbench.results.compare import DEFAULT_FAIL, METRICS
    from diffbench.results.history import DEFAULT_RESULTS_DIR, DEFAULT_STORAGE

    compare = commands.add_parser(
        "compare",
        help="compare two runs; exit 1 on a regression beyond thresholds",
        description="Compare two runs case by case: exit 0 when nothing regressed, "
        "1 when something did (or a change is inconclusive, unless "
        "--inconclusive pass, or a shard of NEW is missing or failed), 2 for "
        "unusable input or runs sharing no case. A case measured on another "
        "machine or stack is 'not comparable' (see --across-stacks).",
    )
    compare.add_argument("base", help="BASE run: run folder, results.jsonl, pytest-benchmark JSON or storage id")
    compare.add_argument("new", help="NEW run, in any of the same forms")
    compare.add_argument(
        "--fail",
        type=fail_thresholds,
        default=DEFAULT_FAIL,
        metavar="METRIC:AMOUNT,...",
        help=f"how much worse each metric may get, as a percentage of BASE or an absolute "
        f"amount; a metric given overrides only itself (metrics: {', '.join(METRICS)}; "
        f"default {DEFAULT_FAIL})".replace("%", "%%"),
    )
    compare.add_argument(
        "--inconclusive",
        choices=("fail", "pass"),
        default="fail",
        help="a change for the worse beyond its threshold that the rounds are too few to decide: "
        "fail the comparison (default, exit 1) or let it pass; either way it is listed with "
        "the rounds that would decide",
    )
    stacks = compare.add_mutually_exclusive_group()
    stacks.add_argument(
        "--same-stack",
        action="store_true",
        help="refuse (exit 2) to compare runs whose GPU, driver, CUDA, torch or packages differ",
    )
    stacks.add_argument(
        "--across-stacks",
        action="store_true",
        help="compare a case measured on another machine or stack (GPU, driver, CUDA, torch, "
        "packages) all the same, with a warning, as for an A/B of two stacks; by default "
        "such a case is 'not comparable', with the difference, and never a regression",
    )
    compare.add_argument(
        "--storage",
        type=Path,
        default=DEFAULT_STORAGE,
        help=f"pytest-benchmark storage for ids (default {DEFAULT_STORAGE})",
    )
    compare.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS_DIR,
        help=f"run folders, for the skipped and failed cases of a JSON run (default {DEFAULT_RESULTS_DIR})",
    )
    compare.add_argument("--json", type=Path, metavar="PATH", help="also write the comparison as JSON")
    compare.set_defaults(run=compare_two_runs)


def write_report_command(arguments: argparse.Namespace) -> int:
    """Exit 0: report written; 2: a run cannot be read (or holds no case) or the report cannot be written."""
    from diffbench.report.build import write_report

    runs = load_runs("report", arguments.runs, arguments)
    if runs is None:
        return 2
    try:
        files = write_report(runs, arguments.out, arguments.title, arguments.image_size)
    except OSError as error:
        print(f"diffbench report: cannot write the report to {arguments.out}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {files.markdown} and {files.html} with {len(files.pictures)} pictures")
    return 0


def image_size(text: str) -> int:
    if not text.isdigit() or not 32 <= int(text) <= 2048:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in pixels from 32 to 2048")
    return int(text)


def add_report_command(commands: argparse._SubParsersAction) -> None:
    from diffbench.report.build import DEFAULT_IMAGE_SIZE
    from diffbench.results.history import DEFAULT_RESULTS_DIR, DEFAULT_STORAGE

    report = commands.add_parser(
        "report",
        help="render runs as Markdown and HTML with charts and image grids",
        description="Render one or more runs into DIR/report.md and DIR/report.html: "
        "tables per model and size, speedup and memory charts, image grids "
        "(eager beside each backend) and, for cases in several runs, trends.",
    )
    report.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folder, results.jsonl, pytest-benchmark JSON or storage id; several: a trend in this order",
    )
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the report into")
    report.add_argument("--title", help="the report's title (default: the runs' labels)")
    report.add_argument(
        "--image-size",
        type=image_size,
        default=DEFAULT_IMAGE_SIZE,
        metavar="PX",
        help=f"largest side of the images in the grids (default {DEFAULT_IMAGE_SIZE})",
    )
    report.add_argument(
        "--storage",
        type=Path,
        default=DEFAULT_STORAGE,
        help=f"pytest-benchmark storage for ids (default {DEFAULT_STORAGE})",
    )
    report.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS_DIR,
        help=f"run folders, for the cases and images of a JSON run (default {DEFAULT_RESULTS_DIR})",
    )
    report.set_defaults(run=write_report_command)


def shard_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of shards (a whole number, at least 1)")
    return int(text)


def add_merge_command(commands: argparse._SubParsersAction) -> None:
    from diffbench.results.merge import merge_command

    merge = commands.add_parser(
        "merge",
        help="join run folders (e.g. the shards of a multi-GPU run) into one",
        description="Write one run folder with every case of the runs given (records, "
        "images, and a run.json listing the parts, each with its machine's "
        "stack, and which shards are missing or failed), for `diffbench "
        "report` and `diffbench compare`. Exit 0: merged; 1: merged, but a "
        "shard is missing or failed; 2: not merged (a case found in two runs, "
        "unless --prefer-last).",
    )
    merge.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders (or their results.jsonl), or shards' folders as .ci/shard-run writes them "
        "(shard.json and the shard's run folder)",
    )
    merge.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FOLDER",
        help="the merged run folder to write; must not hold a run yet (its name is the run id)",
    )
    merge.add_argument(
        "--prefer-last",
        action="store_true",
        help="for a case found in several runs, keep the record of the run given last",
    )
    merge.add_argument(
        "--shards",
        type=shard_count,
        metavar="N",
        help="the number of shards the matrix was split into: each shard 0..N-1 not merged is "
        "missing (default: the count the runs' --shard names)",
    )
    merge.set_defaults(run=merge_command)


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


if __name__ == "__main__":
    sys.exit(main())
