"""Sweeps of one case's prepared pipeline (backend applied, already warm) over step counts, sizes and
batch sizes: `--steps-sweep`, `--resolution-sweep`, `--batch-sweep`."""

from __future__ import annotations

import logging
import statistics
from typing import Any, Callable

import torch

from diffbench.case import Resolution, Status
from diffbench.config.settings import RunSettings
from diffbench.measure.compile_watch import CompileWatch
from diffbench.measure.scaling import fit_steps
from diffbench.measure.timing import timed
from diffbench.models.pipelines import release_memory

logger = logging.getLogger(__name__)

# make_call(steps=None, resolution=None, batch=None) -> a function of no arguments running the pipeline
CallFactory = Callable[..., Callable[[], Any]]


def _median_of(device: str, call: Callable[[], Any], rounds: int) -> tuple[float, list[float]]:
    seconds = [timed(device, call)[0] for _ in range(rounds)]
    return statistics.median(seconds), seconds


def steps_sweep(make_call: CallFactory, counts: tuple[int, ...], rounds: int, device: str) -> dict[str, Any]:
    """E2E at each step count (one untimed call first: a new count may build new schedules or graphs),
    and the least-squares line time = per_step * steps + fixed through the medians."""
    points: list[dict[str, Any]] = []
    for steps in counts:
        call = make_call(steps=steps)
        call()
        median, seconds = _median_of(device, call, rounds)
        points.append({"steps": steps, "e2e_s": median, "e2e_rounds_s": seconds})
        logger.info("steps sweep: %d steps, E2E median %.3f s", steps, median)
    fit = fit_steps([p["steps"] for p in points], [p["e2e_s"] for p in points])
    return {"steps_sweep": points, **fit.as_record()}


def resolution_sweep(make_call: CallFactory, sizes: tuple[Resolution, ...], rounds: int, device: str) -> dict[str, Any]:
    """The same compiled pipeline through several sizes: per size, the first call (timed, with the graphs it
    compiled and any recompile-limit hit, counted by torch), then the median of `rounds` calls."""
    points = []
    for size in sizes:
        call = make_call(resolution=size)
        with CompileWatch() as watch:
            first, _ = timed(device, call)
        median, seconds = _median_of(device, call, rounds)
        activity = watch.activity
        points.append(
            {
                "resolution": size.label,
                "first_call_s": first,
                "e2e_s": median,
                "e2e_rounds_s": seconds,
                "graphs_compiled": activity.graphs,
                "recompiled": activity.graphs > 0,
                "compile_s": max(first - median, 0.0) if activity.graphs else 0.0,
                "recompile_limit_hits": activity.limit_hits,
            }
        )
        logger.info(
            "resolution sweep: %s first call %.2f s (%d graph(s) compiled%s), E2E median %.3f s",
            size.label,
            first,
            activity.graphs,
            ", recompile limit hit: runs eagerly" if activity.limit_hits else "",
            median,
        )
    return {
        "resolution_sweep": points,
        "recompiles_in_sweep": sum(p["recompiled"] for p in points),
        "recompile_limit_hit_in_sweep": any(p["recompile_limit_hits"] for p in points),
    }


def batch_sweep(make_call: CallFactory, batches: tuple[int, ...], rounds: int, device: str) -> dict[str, Any]:
    """Images per second at each batch size, in increasing order, until memory runs out: the
    out-of-memory is recorded as that batch's result and ends the sweep."""
    points: list[dict[str, Any]] = []
    for batch in sorted(batches):
        outcome = _batch_point(make_call, batch, rounds, device)
        points.append(outcome)
        if outcome["status"] == Status.OOM:
            logger.info("batch sweep: out of memory at batch %d; the sweep stops there", batch)
            release_memory()
            break
        logger.info("batch sweep: batch %d, %.2f images/s", batch, outcome["images_per_s"])
    return {"batch_sweep": points}


def _batch_point(make_call: CallFactory, batch: int, rounds: int, device: str) -> dict[str, Any]:
    # The OOM is turned into a plain value inside this frame, so its traceback (which holds the
    # batch's tensors) is gone before the caller releases memory.
    try:
        call = make_call(batch=batch)
        call()
        median, seconds = _median_of(device, call, rounds)
    except torch.cuda.OutOfMemoryError as error:
        return {
            "batch": batch,
            "status": Status.OOM,
            "message": str(error).splitlines()[0] if str(error) else "out of memory",
        }
    return {
        "batch": batch,
        "status": Status.OK,
        "e2e_s": median,
        "e2e_rounds_s": seconds,
        "images_per_s": batch / median,
    }


def run_sweeps(
    settings: RunSettings, device: str, make_call: Callable[..., Callable[[], Any]], record: dict[str, Any]
) -> None:
    """The requested sweeps of a case's prepared pipeline, recorded with the case (`diffbench report` plots
    them); `make_call(**change)` is the case's call with steps, resolution or batch changed."""
    if settings.steps_sweep:
        record.update(steps_sweep(make_call, settings.steps_sweep, settings.rounds, device))
    if settings.resolution_sweep:
        record.update(resolution_sweep(make_call, settings.resolution_sweep, settings.rounds, device))
    if settings.batch_sweep:
        record.update(batch_sweep(make_call, settings.batch_sweep, settings.rounds, device))
