"""What the session checks around a case's timed rounds: a compile inside them, a warmup that settled on a
slow plateau, host syncs that grow with the step count. Each writes its finding into the record and logs it."""

from __future__ import annotations

import logging
from typing import Any, Callable, cast

from diffbench.case import Case
from diffbench.measure.compile_watch import CompileActivity
from diffbench.measure.telemetry import count_host_syncs
from diffbench.measure.timing import SETTLE_TOLERANCE

logger = logging.getLogger(__name__)


def warn_about_compiles_in_timed_rounds(case: Case, activity: CompileActivity) -> None:
    """A compile inside the timed rounds, or torch giving up compiling, changes what the E2E figure means."""
    if activity.graphs:
        logger.warning(
            "%s: %d graph(s) compiled during the timed rounds: the E2E times include compilation "
            "(a recompile after warmup)",
            case.id,
            activity.graphs,
        )
    for message in activity.limit_messages:
        logger.warning(
            "%s: %s: from here torch runs that function eagerly, so this case no longer measures the compiled code",
            case.id,
            message,
        )


def check_warmup_plateau(case: Case, record: dict[str, Any]) -> None:
    """Warmup 'settled' on two slow calls whose timed rounds then ran much faster was a plateau (another
    process on the cores, a lazy initialization), not a steady state: say so rather than 'settled'."""
    last_two = record.get("warmup_rounds_s", [])[-2:]
    if record.get("warmup_settled") and len(last_two) == 2 and record["e2e_s"] * (1 + SETTLE_TOLERANCE) < min(last_two):
        record.update(
            warmup_settled=False,
            warmup_note=(
                f"warmup agreed on {last_two[0]:.3f} and {last_two[1]:.3f} s, but the timed rounds ran "
                f"{record['e2e_s']:.3f} s: a slow plateau (or the host sped up), not a settled warmup"
            ),
        )
        logger.warning("%s: %s", case.id, record["warmup_note"])


def count_syncs(
    device: str, case: Case, steps: int, call_at: Callable[[int], Callable[[], Any]], record: dict[str, Any]
) -> None:
    """Host syncs of one call at the case's steps and at half of them (outside the timed rounds): more
    syncs with more steps means something waits for the GPU every step. `call_at(steps)` is the call at that
    step count."""
    if not device.startswith("cuda"):
        record["host_syncs_note"] = "not counted: no CUDA device"
        return
    # an int per step count on CUDA (None is only off CUDA)
    counts = {n: cast(int, count_host_syncs(device, call_at(n))) for n in dict.fromkeys((steps, max(1, steps // 2)))}
    half = min(counts)
    record.update(
        host_syncs_per_call=counts[steps],
        host_syncs_by_steps=counts,  # +-1 is set-up, not per step
        host_syncs_grow_with_steps=steps > half and counts[steps] - counts[half] >= (steps - half) / 2,
    )
    if record["host_syncs_grow_with_steps"]:
        logger.warning(
            "%s: host syncs grow with the step count (%s): something synchronizes every step, "
            "so the host waits for the GPU instead of running ahead",
            case.id,
            ", ".join(f"{n} steps: {c}" for n, c in counts.items()),
        )
