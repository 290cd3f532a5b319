"""The record's measurement fields of issue 15, each declared once: key, unit, label, digits and what it means.

The terminal table (diffbench.results.summary), the report (diffbench.report.build) and `diffbench compare` read their
labels, units and formats from here, and README/docs point here; adding a metric is one entry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One record key: `unit` as shown after the value, `label` for a column, `compare` the better
    direction ("lower"/"higher") for a field `diffbench compare` gates on, None for one it does not."""

    key: str
    unit: str
    label: str
    doc: str
    digits: int = 2
    compare: str | None = None


FIELDS: tuple[Field, ...] = (
    Field("generator", "", "generator", "device of the torch.Generator passed to the timed call (--generator)"),
    Field(
        "host_syncs_per_call",
        "",
        "host syncs/call",
        "host-device synchronizations one call makes, counted "
        "once outside the timed rounds with torch.cuda.set_sync_debug_mode",
        0,
    ),
    Field(
        "host_syncs_grow_with_steps",
        "",
        "syncs grow with steps",
        "true when a call at half the steps "
        "synchronizes at least one time fewer per two steps left out: something syncs every step or every "
        "other step (a CPU generator, .item() in a scheduler)",
    ),
    Field("text_encode_ms", "ms", "text encode ms", "encode_prompt, median over rounds (CUDA events on a GPU)", 1),
    Field("denoiser_ms_per_step", "ms", "denoiser ms/call", "one denoiser call, median over calls and rounds", 2),
    Field("denoiser_ms", "ms", "denoiser ms", "all denoiser calls of one pipeline call, median over rounds", 1),
    Field("controlnet_ms", "ms", "ControlNet ms", "all ControlNet calls of one pipeline call (controlnet task)", 1),
    Field(
        "vae_decode_ms",
        "ms",
        "VAE decode ms",
        "from the last denoiser call's end to postprocessing: the "
        "VAE decode with the last scheduler step and the pipeline's upcast, median over rounds",
        1,
    ),
    Field(
        "other_ms",
        "ms",
        "other ms",
        "E2E minus the stages above: latents and timesteps set-up, image "
        "encode (img2img), scheduler steps, postprocessing and host gaps",
        1,
    ),
    Field("e2e_p50_s", "s", "E2E p50 s", "50th percentile of the timed rounds (10 rounds or more)", 3),
    Field("e2e_p90_s", "s", "E2E p90 s", "90th percentile of the timed rounds (10 rounds or more)", 3),
    Field("e2e_p99_s", "s", "E2E p99 s", "99th percentile of the timed rounds (10 rounds or more)", 3),
    Field(
        "pairing",
        "",
        "pairing",
        "paired: eager and the backend alternated round by round in one process; "
        "eager-after: eager timed again after the backend (it could not hold both); reference: eager itself",
    ),
    Field("speedup_low", "x", "speedup 95% low", "bootstrap 95% interval of the speedup, low end", 2),
    Field("speedup_high", "x", "speedup 95% high", "bootstrap 95% interval of the speedup, high end", 2),
    Field(
        "eager_drift",
        "",
        "eager drift",
        "eager E2E median timed after the backend / before, minus 1 (eager-after pairing); over 5% flags the speedup",
        3,
    ),
    Field(
        "gpu_util_pct",
        "%",
        "GPU busy %",
        "NVML utilization (share of time a kernel ran) over the timed rounds, mean of samples every 100 ms",
        0,
    ),
    Field("sm_clock_mhz", "MHz", "SM clock MHz", "NVML SM clock over the timed rounds, median", 0),
    Field("power_w", "W", "power W", "NVML board power over the timed rounds, mean", 0),
    Field(
        "energy_per_image_j",
        "J",
        "energy/image J",
        "NVML total-energy counter's difference over the timed rounds, per image",
        1,
        compare="lower",
    ),
    Field("throttle_reasons", "", "throttle", "NVML clock-event reasons seen during the timed rounds"),
    Field("host_bound", "", "host-bound", "true when the GPU was busy less than 80% of the timed rounds"),
    Field("host_cpu_per_wall", "", "CPU/wall", "this process's CPU seconds per wall second over the rounds", 2),
    Field(
        "host_other_cpu",
        "",
        "other CPU",
        "share of all cores other processes used during the rounds (/proc/stat minus this process)",
        2,
    ),
    Field(
        "contended",
        "",
        "contended",
        "true when other processes used over 25% of the cores during the "
        "rounds, or the VM lost over 5% to steal: the times are not this machine's alone",
    ),
    Field(
        "compile_cache",
        "",
        "compile cache",
        "cold | warm | partial: inductor FX-graph and AOTAutograd "
        "cache hits and misses during warmup; none when nothing compiled",
    ),
)
FIELD = {field.key: field for field in FIELDS}


def format_field(key: str, value: Any) -> str:
    """A value as the tables show it: digits from its declaration, `-` for None, yes/no for flags."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    field = FIELD.get(key)
    if isinstance(value, (int, float)) and field is not None:
        return f"{value:.{field.digits}f}"
    return str(value)


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


DRIFT_FLAG = 0.05  # eager moving more than this between before and after the backend flags the speedup
STAGES = ("text_encode_ms", "denoiser_ms", "controlnet_ms", "vae_decode_ms", "other_ms")  # sum to E2E
