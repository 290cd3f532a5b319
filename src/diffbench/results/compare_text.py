"""`diffbench compare`'s output: the aligned table, a line per regression or inconclusive change, the
summary, and the same as JSON for CI."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from diffbench.results.compare import Comparison, Row
from diffbench.results.thresholds import metrics


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """Every row, the regressions, inconclusive changes and cases not comparable apart, whether it failed,
    and the summary."""
    data = asdict(comparison)
    data["regressions"] = [asdict(row) for row in comparison.regressions]
    data["inconclusive"] = [asdict(row) for row in comparison.inconclusive]
    data["not_comparable"] = [asdict(row) for row in comparison.not_comparable]
    data["regressed"] = bool(comparison.regressions)
    data["failed"] = comparison.failed
    data["summary"] = summary_line(comparison)
    return data


def format_value(metric_name: str, value: Any) -> str:
    metric = metrics().get(metric_name)
    if metric is None or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{metric.digits}f} {metric.unit}".rstrip()


def format_change(row: Row) -> str:
    """`+12.3%` against a relative threshold, the signed difference in the metric's unit otherwise."""
    if row.change is None:
        return ""
    if row.threshold.endswith("%"):
        return f"{row.relative * 100:+.1f}%" if row.relative is not None else "n/a (base 0)"
    return f"{row.change:+.{metrics()[row.metric].digits}f}"


def _verdict_text(row: Row) -> str:
    if row.verdict == "not comparable":
        return f"not comparable ({row.message})"
    if row.verdict in ("noise", "inconclusive"):
        detail = f"p={row.p_value:.2f}" if row.p_value is not None else "rounds overlap"
        return f"{row.verdict} ({detail})"
    return row.verdict


def render_table(comparison: Comparison) -> str:
    """Aligned columns: case, metric, base, new, change, threshold, verdict."""
    header = ("case", "metric", "base", "new", "change", "threshold", "verdict")
    lines = [header] + [
        (
            row.case,
            row.metric,
            format_value(row.metric, row.base),
            format_value(row.metric, row.new),
            format_change(row),
            row.threshold,
            _verdict_text(row),
        )
        for row in comparison.rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def regression_line(row: Row) -> str:
    """`REGRESSION <case> <metric>: <base> -> <new> (+12.3%, threshold 10%)`."""
    if row.metric == "status":
        because = f": {row.message}" if row.message else ""
        return f"REGRESSION {row.case} status: {row.base} -> {row.new}{because}"
    return (
        f"REGRESSION {row.case} {row.metric}: {format_value(row.metric, row.base)} -> "
        f"{format_value(row.metric, row.new)} ({format_change(row)}, threshold {row.threshold})"
    )


def inconclusive_line(row: Row) -> str:
    """`INCONCLUSIVE <case> e2e: 1.000 s -> 3.000 s (+200.0%, threshold 10%): p=0.20 with 3 and 3 rounds; ...`."""
    detail = f"p={row.p_value:.2f}" if row.p_value is not None else "the rounds overlap"
    base_rounds, new_rounds = row.rounds or (0, 0)
    return (
        f"INCONCLUSIVE {row.case} {row.metric}: {format_value(row.metric, row.base)} -> "
        f"{format_value(row.metric, row.new)} ({format_change(row)}, threshold {row.threshold}): {detail} with "
        f"{base_rounds} and {new_rounds} rounds cannot decide; rounds ordered like these would decide with "
        f"{row.rounds_needed} a side (--rounds {row.rounds_needed})"
    )


def summary_line(comparison: Comparison) -> str:
    compared = [row for row in comparison.rows if row.metric != "machine"]
    cases = len({row.case for row in compared})
    regressions = comparison.regressions
    noise = sum(row.verdict == "noise" for row in comparison.rows)
    improved = sum(row.verdict in ("improved", "fixed") for row in comparison.rows)
    head = (
        f"{len(regressions)} regression(s) in {len({row.case for row in regressions})} case(s)"
        if regressions
        else "no regression"
    )
    if comparison.inconclusive:
        head += (
            f", {len(comparison.inconclusive)} inconclusive ("
            + (
                "fails; --inconclusive pass lets it pass"
                if comparison.inconclusive_fails
                else "passed: --inconclusive pass"
            )
            + ")"
        )
    if comparison.shard_problems:
        head += f", {len(comparison.shard_problems)} shard(s) of NEW missing or failed (fails)"
    only = [f"{len(comparison.not_comparable)} not comparable (another machine or stack)"] * bool(
        comparison.not_comparable
    )
    only += [f"{len(comparison.only_in_base)} only in BASE"] * bool(comparison.only_in_base)
    only += [f"{len(comparison.only_in_new)} only in NEW"] * bool(comparison.only_in_new)
    return (
        f"{head}: {cases} case(s) and {len(compared)} metric(s) compared, {improved} improved, "
        f"{noise} within noise" + "".join(f", {part}" for part in only)
    )


def render(comparison: Comparison) -> str:
    """The whole report: runs, table, cases in one run only, one line per regression, the summary."""
    parts = [
        f"BASE {comparison.base['source']} (run {comparison.base['run_id']})",
        f"NEW  {comparison.new['source']} (run {comparison.new['run_id']})",
        "",
        render_table(comparison) if comparison.rows else "(no case in both runs)",
    ]
    if comparison.only_in_base or comparison.only_in_new:
        parts.append("")
    for side, cases in (("BASE", comparison.only_in_base), ("NEW", comparison.only_in_new)):
        parts.extend([f"only in {side}: {', '.join(cases)}"] if cases else [])
    if comparison.regressions or comparison.inconclusive or comparison.shard_problems:
        parts.append("")
        parts.extend(regression_line(row) for row in comparison.regressions)
        parts.extend(inconclusive_line(row) for row in comparison.inconclusive)
        parts.extend(comparison.shard_problems)  # NEW's: BASE's missing shards are cases only in NEW
    parts.extend(["", summary_line(comparison)])
    return "\n".join(parts)
