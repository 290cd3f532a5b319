"""A case's warmup and timed rounds: warm up until two calls agree, then the rounds under pytest-benchmark,
alternated with eager's where the pipeline allows, and the timing, telemetry, host-load, pairing and
host-sync fields of the record."""

from __future__ import annotations

import logging
import statistics
from typing import Any, Callable

from diffbench.backends.base import Backend
from diffbench.case import Case
from diffbench.config.settings import RunSettings
from diffbench.measure.compile_watch import CompileWatch
from diffbench.measure.pairing import paired_speedup
from diffbench.measure.rounds import Rounds, one_round, timing_summary
from diffbench.measure.telemetry import DeviceTelemetry, HostLoad
from diffbench.measure.timing import settled, timed
from diffbench.run.eager_pairing import pairing_partner
from diffbench.run.progress import heartbeat
from diffbench.run.round_checks import check_warmup_plateau, count_syncs, warn_about_compiles_in_timed_rounds

logger = logging.getLogger(__name__)

# (pipeline, prompt, seed) -> images; a caller builds one for a pipeline, with changed steps if asked
Caller = Callable[..., Callable[..., Any]]


def warm_up(
    settings: RunSettings,
    device: str,
    case: Case,
    call: Callable[..., Any],
    pair: tuple[str, int],
    rounds: Rounds,
    record: dict[str, Any],
) -> None:
    """`--warmups` calls, then more (up to `--max-warmups`) until two agree; their times and compiles."""
    warmups: list[float] = []
    logger.info(
        "%s: %d+ warmup call(s)%s",
        case.id,
        settings.warmups,
        " (this is where it compiles)" if case.backend != "eager" else "",
    )
    limit = max(settings.warmups, settings.max_warmups) if settings.warmups else 0
    with CompileWatch() as warmup_watch, heartbeat(case.id, case.backend != "eager"):  # then until two agree
        while len(warmups) < limit and (len(warmups) < settings.warmups or not settled(warmups)):
            seconds, images = timed(device, call, *pair)
            warmups.append(seconds)
            rounds.first_images = images if rounds.first_images is None else rounds.first_images
    record.update(
        warmup_s=warmups[0] if warmups else None,
        warmup_rounds_s=warmups,
        prompt=pair[0],
        warmup_settled=settled(warmups) if len(warmups) > settings.warmups else None,
    )
    record.update(warmup_watch.activity.as_record("warmup"))


def time_rounds(
    settings: RunSettings,
    device: str,
    backend: Backend,
    case: Case,
    steps: int,
    pipeline: tuple[Any, Callable[..., Any], tuple[str, int], Any],
    rounds: Rounds,
    record: dict[str, Any],
    benchmark: Any,
    caller: Caller,
) -> None:
    """The timed rounds under pytest-benchmark, alternated with eager's (its `setup`, untimed by it) where
    the pipeline allows; then the timing, telemetry, host-load, pairing and host-sync fields. `caller(pipe,
    **change)` builds the case's call on a pipeline (eager's, or this one at other steps)."""
    pipe, call, pair, base = pipeline  # the backend's pipeline and call, the timed prompt, the cached pipeline
    partner = pairing_partner(settings, backend, case, pipe, base, caller)
    telemetry, eager_rounds = DeviceTelemetry(device), Rounds()
    setup = None
    if partner is not None:
        eager_pipe, eager_call = partner
        eager_call(*pair)  # its first call after the backend's warmup is not a round

        def setup() -> None:
            one_round(device, eager_pipe, eager_call, pair, eager_rounds, telemetry, "eager", stages=False)

    logger.info(
        "%s: warmup %s s; timing %d rounds%s",
        case.id,
        ", ".join(f"{w:.2f}" for w in record.get("warmup_rounds_s") or []) or "-",
        settings.rounds,
        ", alternated with eager" if partner else "",
    )
    benchmark.group = f"{case.model}-{case.task}-{case.resolution.label}"
    with CompileWatch() as timed_watch, telemetry, HostLoad() as host:
        benchmark.pedantic(
            one_round,
            args=(device, pipe, call, pair, rounds, telemetry),
            setup=setup,
            rounds=settings.rounds,
            iterations=1,
            warmup_rounds=0,
        )
    images = settings.rounds * settings.batch
    record.update(
        timing_summary(rounds),
        **timed_watch.activity.as_record("timed"),
        **host.record(),
        **telemetry.summary("backend", images),
    )
    if record.get("contended"):
        logger.warning(
            "%s: contended, other processes used %.0f%% of the cores in the timed rounds",
            case.id,
            100 * (record.get("host_other_cpu") or 0),
        )  # one terminal line (120 columns)
    if partner is not None:
        record.update(
            paired_speedup(eager_rounds.seconds, rounds.seconds),
            eager_paired_e2e_s=statistics.median(eager_rounds.seconds),
            eager_paired_rounds_s=eager_rounds.seconds,
            eager_energy_per_image_j=telemetry.summary("eager", images).get("energy_per_image_j"),
        )
    elif case.backend == "eager":
        record["pairing"] = "reference"
    check_warmup_plateau(case, record)
    warn_about_compiles_in_timed_rounds(case, timed_watch.activity)
    count_syncs(device, case, steps, lambda at: lambda: caller(pipe, steps=at)(*pair), record)
