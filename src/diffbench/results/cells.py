"""Table cells: a value with its digits, and the cells that are more than one number (E2E with its range, the
speedup with its interval, the roofline), which results.schema's fields point to."""

from __future__ import annotations

from typing import Any

DRIFT_FLAG = 0.05  # eager moving more than this between before and after the backend flags the speedup


def number(value: Any, digits: int = 2) -> str:
    """`value` with `digits` decimals, `-` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def format_value(value: Any, digits: int | None) -> str:
    """`-` for None, yes/no for flags, lists joined, numbers with `digits` decimals (None: as they are)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, (int, float)) and digits is not None:
        return f"{value:.{digits}f}"
    return str(value)


def e2e_text(record: dict[str, Any]) -> str:
    """`0.691 (0.650-0.754)`: the median with the fastest and the slowest round."""
    if record.get("e2e_s") is None:
        return "-"
    median = record["e2e_s"]
    return f"{median:.3f} ({record.get('e2e_min_s', median):.3f}-{record.get('e2e_max_s', median):.3f})"


def speedup_text(record: dict[str, Any]) -> str:
    """`1.77x [1.72-1.81]`, `1.77x (eager drift +8%)` when flagged, `-` without a speedup."""
    speedup = record.get("speedup")
    if speedup is None:
        return "-"
    text = f"{speedup:.2f}x"
    if record.get("speedup_low") is not None and record.get("speedup_high") is not None:
        text += f" [{record['speedup_low']:.2f}-{record['speedup_high']:.2f}]"
    drift = record.get("eager_drift")
    if drift is not None and abs(drift) > DRIFT_FLAG:
        text += f" (eager drift {drift:+.0%})"
    return text


def roofline_text(record: dict[str, Any]) -> str:
    """`281 (39%), launch-bound`: achieved denoiser TFLOP/s, its share of the measured matmul ceiling, and
    what bounds the case (boundness.classify)."""
    achieved, mfu = record.get("denoiser_tflops"), record.get("mfu")
    if achieved is None:
        return "-"
    text = f"{achieved:.3g} ({mfu:.0%})" if mfu is not None else f"{achieved:.3g} (-)"
    return f"{text}, {record['bound']}" if record.get("bound") else text
