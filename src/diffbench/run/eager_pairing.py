"""Eager beside a backend: the copy of the cached pipeline its rounds alternate with (paired timing), or,
where it cannot run beside the backend, eager timed again after it, so drift on the host is flagged."""

from __future__ import annotations

import logging
from typing import Any, Callable

from diffbench.backends.base import Backend
from diffbench.case import Case
from diffbench.config.settings import RunSettings
from diffbench.measure.pairing import unpaired_speedup
from diffbench.measure.rounds import Rounds, one_round
from diffbench.models.pipelines import shallow_copy
from diffbench.run.isolated_case import Reference

logger = logging.getLogger(__name__)


def pairing_partner(
    settings: RunSettings,
    backend: Backend,
    case: Case,
    pipe: Any,
    base: Any,
    caller_for: Callable[[Any], Callable[..., Any]],
) -> tuple[Any, Callable] | None:
    """(eager pipeline, its call) to alternate with, or None where eager cannot run beside the backend:
    a component of the cached pipeline parked on the CPU or moved by the backend, or pairing turned off.
    `caller_for(pipe)` is the case's call on a pipeline."""
    if (
        case.backend == "eager"
        or base is None
        or settings.pairing != "auto"
        or not backend.pairable
        or pipe.__dict__.get("_diffbench_parked")
    ):
        return None
    eager_pipe = shallow_copy(base)
    return eager_pipe, caller_for(eager_pipe)


def time_eager_after(
    settings: RunSettings,
    device: str,
    case: Case,
    reference: Reference | None,
    eager_pipe: Any,
    call: Callable[..., Any],
    pair: tuple[str, int],
    record: dict[str, Any],
) -> None:
    """The speedup of a case that could not alternate with eager: eager's rounds from its own case (or,
    without one, timed now), with eager timed again now, after the backend, so host drift is flagged.
    `call` is eager's call on `eager_pipe`, a copy of the cached pipeline."""
    before = reference.rounds_s if reference is not None and reference.rounds_s else None
    if settings.pairing == "off":
        record["pairing"] = "off"
        return
    after = Rounds()
    logger.info(
        "%s: timing eager again after the backend (%d rounds): it could not alternate with it", case.id, settings.rounds
    )
    for _ in range(settings.rounds):
        one_round(device, eager_pipe, call, pair, after, stages=False)
    record.update(unpaired_speedup(before or after.seconds, record["e2e_rounds_s"], after.seconds if before else None))
