"""`diffbench selfcheck`: the suite's timed round against a bare loop making the same pipeline call.

One process, one pipeline (the case's backend applied as the suite applies it), the same call arguments
and seed. Each round makes three calls: the bare call (nothing in it but the pipeline call, synchronized on
both sides), the suite's round (`diffbench.measure.rounds.one_round` with its step timer, stage timer and NVML
sampler, exactly as a benchmark case runs it) and the bare call with a plain step-end callback recording a
CUDA event per step (the few lines a user writes to get ms per step, as the seeds' IterationProfiler
does). The order is bare, suite, stepped in even rounds and stepped, suite, bare in odd ones, so a host that
speeds up or slows down through the run biases neither side. The harness overhead is, for E2E, the median
of the per-round ratios suite / bare, minus one; for the time per step, the median of the per-round ratios
of the suite's ms per step over the stepped call's. Each comes with a bootstrap 95% interval (rounds
resampled): `pass` when both intervals lie inside the tolerance, `fail` when one lies wholly outside it,
`inconclusive` otherwise (the host's noise is larger than the tolerance: more rounds, or a quieter machine,
decide). An earlier version took the bare loop's time per step as the difference of a call at the case's
steps and one at twice them; on a host-bound H200 that difference of two noisy calls gave intervals of
-15% to +40% (reports/gpu/2026-12-02-h200-trust/selfcheck/).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, cast

import torch

from diffbench.errors import OptionError
from diffbench.measure.pairing import paired_speedup

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_PCT = 2.0
MAX_WARMUPS = 6
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}


def bare_timed(device: str, function: Callable[[], Any]) -> float:
    """Seconds of one call, synchronized on both sides: nothing of diffbench in between."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bare_call(
    pipe: Any,
    arguments: dict[str, Any],
    prompt: str,
    seed: int,
    generator_device: str,
    callback: Callable[..., dict] | None = None,
) -> Callable[[], Any]:
    """The plain diffusers call a user would write, with the suite's arguments (and a step-end callback)."""

    def call() -> Any:
        generator = torch.Generator(generator_device).manual_seed(seed)
        torch.manual_seed(seed)
        extra = {"callback_on_step_end": callback} if callback is not None else {}
        return pipe(prompt=prompt, generator=generator, **arguments, **extra).images

    return call


class PlainStepClock:
    """A user's step-end callback: a CUDA event (a clock read on the CPU) per step; ms per step between
    the first and the last step end (the first step pays for text encoding, as in the seeds)."""

    def __init__(self, device: str):
        self.device = device
        self.marks: list[Any] = []  # CUDA events, or host clock readings

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        if self.device.startswith("cuda"):
            self.marks.append(torch.cuda.Event(enable_timing=True))
            self.marks[-1].record()
        else:
            self.marks.append(time.perf_counter())
        return callback_kwargs

    def take_ms_per_step(self) -> float | None:
        """Ms per step of the call just made (None under two steps), then forget its marks."""
        marks, self.marks = self.marks, []
        if len(marks) < 2:
            return None
        if self.device.startswith("cuda"):
            marks[-1].synchronize()
            return marks[0].elapsed_time(marks[-1]) / (len(marks) - 1)
        return (marks[-1] - marks[0]) * 1000.0 / (len(marks) - 1)


def compare_rounds(
    bare: list[float], bare_step_ms: list[float], suite: list[float], suite_its: list[float], tolerance_pct: float
) -> dict[str, Any]:
    """The self-check's verdict from its round times (seconds; ms per step; suite_its in steps per second)."""
    suite_step_ms = [1000.0 / its for its in suite_its]
    e2e = _overhead([s / b for s, b in zip(suite, bare)])
    step = (
        _overhead([s / b for s, b in zip(suite_step_ms, bare_step_ms)])
        if (len(suite_step_ms) == len(bare_step_ms) and all(bare_step_ms))
        else None
    )
    overheads = [o for o in (e2e, step) if o is not None]
    if any(o[1] > tolerance_pct or o[2] < -tolerance_pct for o in overheads):  # an interval wholly outside
        verdict = "fail"
    elif step is not None and all(-tolerance_pct <= o[1] and o[2] <= tolerance_pct for o in overheads):
        verdict = "pass"
    else:
        verdict = "inconclusive"
    return {
        "bare_e2e_s": statistics.median(bare),
        "suite_e2e_s": statistics.median(suite),
        "e2e_overhead_pct": e2e[0] if e2e else None,
        "e2e_overhead_interval_pct": list(e2e[1:]) if e2e else None,
        "bare_ms_per_step": statistics.median(bare_step_ms) if bare_step_ms else None,
        "suite_ms_per_step": statistics.median(suite_step_ms) if suite_step_ms else None,
        "step_overhead_pct": step[0] if step else None,
        "step_overhead_interval_pct": list(step[1:]) if step else None,
        "tolerance_pct": tolerance_pct,
        "verdict": verdict,
        "within_tolerance": verdict == "pass",
        "rounds_s": {"bare": bare, "suite": suite},
        "rounds_ms_per_step": {"bare": bare_step_ms, "suite": suite_step_ms},
        "suite_its": suite_its,
    }


def _overhead(ratios: list[float]) -> tuple[float, float, float] | None:
    """(median, low, high) of the ratios minus one, in percent: the median and its bootstrap 95% interval."""
    if not ratios:
        return None
    found = paired_speedup(ratios, [1.0] * len(ratios))
    return tuple((value - 1.0) * 100.0 for value in (found["speedup"], found["speedup_low"], found["speedup_high"]))


def run_selfcheck(arguments: argparse.Namespace) -> dict[str, Any]:
    """Build the case's pipeline as the suite does, then alternate the bare loop and the suite's round."""
    from diffbench.config.matrix import build_settings, expand_matrix
    from diffbench.measure.rounds import Rounds, one_round
    from diffbench.measure.telemetry import DeviceTelemetry
    from diffbench.models.catalog import MODELS
    from diffbench.models.inputs import prompt_seed_pairs
    from diffbench.models.pipelines import shallow_copy
    from diffbench.results.records import RunFolder
    from diffbench.run.session import BenchSession

    settings = build_settings(
        {
            "models": arguments.model,
            "backends": arguments.backend,
            "tasks": "t2i",
            "weights": arguments.weights,
            "resolutions": arguments.resolution,
            "steps": arguments.steps,
            "rounds": arguments.rounds,
            "prompts": 1,
            "device": arguments.device,
            "generator": arguments.generator,
            "results_dir": tempfile.mkdtemp(),
        }
    )
    case = expand_matrix(settings)[0]
    session = BenchSession(settings, RunFolder(settings.results_dir))
    spec, device = MODELS[case.model], session.device
    reason = session.skip_reason(case, spec)
    if reason:
        raise OptionError(f"selfcheck cannot run {case.id} here: {reason}")
    loaded = session.cache.get(
        spec, settings.weights_for(spec), settings.torch_dtype(spec, device), device, settings.variant
    )
    pipe = session.backends[case.backend].apply(shallow_copy(session.cache.task_pipeline(loaded, spec, "t2i")))
    suite_call = session._caller(pipe, spec, case)
    prompt, seed = prompt_seed_pairs("t2i", 1, settings.seed, settings.prompt)[0]  # the suite's timed prompt
    clock = PlainStepClock(device)
    plain = bare_call(pipe, suite_call.arguments, prompt, seed, session.generator_device)
    stepped = bare_call(pipe, suite_call.arguments, prompt, seed, session.generator_device, clock)
    warmups = _warm(device, plain, stepped, clock)
    logger.info(
        "selfcheck %s: warmup %s s; %d rounds", case.id, ", ".join(f"{w:.3f}" for w in warmups), settings.rounds
    )
    bare, bare_step_ms, suite = [], [], Rounds()
    for index in range(settings.rounds):
        order = ("bare", "suite", "stepped") if index % 2 == 0 else ("stepped", "suite", "bare")
        for side in order:
            if side == "bare":
                bare.append(bare_timed(device, plain))
            elif side == "stepped":
                bare_timed(device, stepped)
                bare_step_ms.append(clock.take_ms_per_step())
            else:
                with DeviceTelemetry(device) as telemetry:
                    one_round(device, pipe, suite_call, (prompt, seed), suite, telemetry)
    # a step time is None only under two steps, where compare_rounds' all() gives no step verdict
    step_ms = cast(list[float], bare_step_ms)
    result = compare_rounds(bare, step_ms, suite.seconds, suite.its, arguments.tolerance)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    return {
        "case": case.id,
        "device": gpu,
        "torch": torch.__version__,
        "generator": session.generator_device,
        "steps": settings.steps_for(spec),
        "rounds": settings.rounds,
        "warmup_s": warmups,
        **result,
    }


def _warm(device: str, plain: Callable[[], Any], stepped: Callable[[], Any], clock: PlainStepClock) -> list[float]:
    """Warm both bare calls up: the plain one until two calls agree within 5% (at most MAX_WARMUPS)."""
    warmups = [bare_timed(device, plain) for _ in range(2)]
    while len(warmups) < MAX_WARMUPS and abs(warmups[-1] - warmups[-2]) > 0.05 * min(warmups[-2:]):
        warmups.append(bare_timed(device, plain))
    warmups.append(bare_timed(device, stepped))
    clock.take_ms_per_step()
    return warmups


def render(result: dict[str, Any]) -> str:
    def pct(value: float | None, interval: list[float] | None) -> str:
        if value is None:
            return "-"
        return f"{value:+.2f}% [{interval[0]:+.1f}, {interval[1]:+.1f}]" if interval else f"{value:+.2f}%"

    suite_step = result["suite_ms_per_step"]
    lines = [
        f"selfcheck {result['case']} on {result['device']} (torch {result['torch']}, generator "
        f"{result['generator']}), {result['rounds']} rounds alternated",
        f"{'':16}{'bare loop':>12}{'diffbench':>12}  overhead: median of per-round ratios [95% interval]",
        f"{'E2E s (median)':16}{result['bare_e2e_s']:12.4f}{result['suite_e2e_s']:12.4f}  "
        f"{pct(result['e2e_overhead_pct'], result['e2e_overhead_interval_pct'])}",
        f"{'ms per step':16}{result['bare_ms_per_step'] or float('nan'):12.2f}"
        f"{suite_step if suite_step is not None else float('nan'):12.2f}  "
        f"{pct(result['step_overhead_pct'], result['step_overhead_interval_pct'])}",
        f"{result['verdict']}: tolerance +-{result['tolerance_pct']:g}%"
        + (
            " (an interval reaches past it: more rounds or a quieter host decide)"
            if result["verdict"] == "inconclusive"
            else ""
        ),
    ]
    return "\n".join(lines)


def selfcheck_command(arguments: argparse.Namespace) -> int:
    try:
        result = run_selfcheck(arguments)
    except OptionError as error:
        print(f"diffbench selfcheck: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(result, indent=1))
    return EXIT_CODES[result["verdict"]]


def add_selfcheck_command(commands: Any) -> None:
    check = commands.add_parser(
        "selfcheck",
        help="time the suite's round against a bare loop making the same call; "
        "exit 0 pass, 1 fail (the harness adds more than the "
        "tolerance), 3 inconclusive (the host's noise is wider)",
    )
    check.add_argument("--model", default="sdxl", help="a catalog model with a text-to-image pipeline (default sdxl)")
    check.add_argument("--backend", default="eager", help="the backend applied to the pipeline (default eager)")
    check.add_argument("--resolution", default="1024", help="size, 1024 or HEIGHTxWIDTH (default 1024)")
    check.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    check.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="rounds of each of the three calls: bare, suite, bare with a step clock (default 10)",
    )
    check.add_argument("--weights", default="random", help="hub | random (default) | tiny | PATH, as --weights")
    check.add_argument("--device", default="auto", help="auto (default) | cpu | cuda | cuda:N")
    check.add_argument("--generator", default="device", help="device (default) | cpu, as --generator")
    check.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE_PCT,
        help=f"largest harness overhead in percent that passes (default {DEFAULT_TOLERANCE_PCT:g})",
    )
    check.add_argument("--json", default=None, help="also write the result as JSON to this file")
    check.set_defaults(run=selfcheck_command)
