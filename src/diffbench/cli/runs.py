"""`diffbench compare`, `diffbench report` and `diffbench merge`: what to do with runs once they are made."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def fail_thresholds(text: str) -> dict:
    """`--fail` as thresholds per metric; a bad value is argparse's usage error (exit 2)."""
    from diffbench.errors import OptionError
    from diffbench.results.thresholds import parse_thresholds

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
    from diffbench.results.history import DEFAULT_RESULTS_DIR, DEFAULT_STORAGE
    from diffbench.results.thresholds import default_fail, metrics

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
        default=default_fail(),
        metavar="METRIC:AMOUNT,...",
        help=f"how much worse each metric may get, as a percentage of BASE or an absolute "
        f"amount; a metric given overrides only itself (metrics: {', '.join(metrics())}; "
        f"default {default_fail()})".replace("%", "%%"),
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
