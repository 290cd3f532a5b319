"""The record's fields, each declared once: key, unit, label, digits, meaning; for a metric also how it is
summarized, where it is a column and how `diffbench compare` gates it. Every reader iterates FIELDS: records
(RECORD_KEYS), the terminal table (summary), the report's group tables (report.groups), compare's metrics and
default thresholds (thresholds) and format_field. Adding a metric is one entry below.
"""

from __future__ import annotations

from typing import Any

from diffbench.results.cells import e2e_text, format_value, roofline_text, speedup_text
from diffbench.results.field import Field, Gate


def _case(key: str, doc: str) -> Field:
    """A key every record has that says which case it is, or how it ran."""
    return Field(key, "", key, doc, every=True)


FIELDS: tuple[Field, ...] = (
    _case("model", "catalog name of the model (diffbench models)"),
    _case("task", "t2i, i2i or controlnet"),
    _case("resolution", "HEIGHTxWIDTH of the images"),
    _case("backend", "the backend's name (diffbench backends)"),
    _case("weights", "hub, random, tiny or the local path of the weights"),
    _case("dtype", "torch dtype of the pipeline"),
    _case("device", "device the case ran on"),
    _case("steps", "denoising steps of one call"),
    _case("batch", "images per prompt"),
    _case("seed", "seed of the timed prompt"),
    _case("status", "ok, skipped, failed, oom or interrupted (diffbench.case.Status)"),
    Field(
        "load_s", "s", "load s", "building the pipeline: its weights loaded or initialized, on the device", every=True
    ),
    Field(
        "warmup_s",
        "s",
        "warmup s",
        "the first call, compile included (cold cache with --compile-cache-check)",
        every=True,
        table="warmup s",
        report="warmup s",
        gate=Gate("warmup", False, "25%", min_change=1.0),
    ),
    Field(
        "case_s",
        "s",
        "case s",
        "wall time of the whole case: build, eager reference, backend, warmup and compile, timed and paired "
        "rounds, quality prompts, sweeps: the device time it cost",
        1,
    ),
    Field(
        "warmup_cached_s",
        "s",
        "warmup, warm cache s",
        "the first call in a fresh process sharing the cold run's inductor cache folder (--compile-cache-check)",
        report="warmup, warm cache s",
        sparse="report",
    ),
    Field(
        "e2e_s",
        "s",
        "E2E s",
        "one pipeline call, median over the timed rounds",
        3,
        rounds="e2e_rounds_s",
        every=True,
        table="E2E s med (range)",
        report="E2E s median (min-max)",
        text=e2e_text,
        gate=Gate("e2e", False, "10%"),
    ),
    Field(
        "its",
        "it/s",
        "it/s",
        "denoising steps per second of one call, median over the timed rounds",
        rounds="its_rounds",
        every=True,
        table="it/s",
        report="it/s",
        gate=Gate("its", True, "10%"),
    ),
    Field(
        "denoiser_tflops",
        "TFLOP/s",
        "denoiser TFLOP/s (MFU)",
        "achieved denoiser TFLOP/s, with its share of "
        "the measured matmul ceiling (mfu) and what bounds the case (--roofline)",
        3,
        report="denoiser TFLOP/s (MFU)",
        sparse="group",
        text=roofline_text,
    ),
    Field(
        "peak_mem_gib",
        "GiB",
        "peak mem GiB",
        "peak CUDA memory allocated during the timed rounds",
        every=True,
        table="peak GiB",
        report="peak mem GiB",
        gate=Gate("peak_mem", False, "10%"),
    ),
    Field(
        "ssim",
        "",
        "SSIM",
        "structural similarity to eager's image, minimum over the quality prompts",
        4,
        every=True,
        table="SSIM",
        report="SSIM min",
        gate=Gate("ssim", True, "0.02"),
    ),
    Field(
        "psnr",
        "dB",
        "PSNR dB",
        "peak signal-to-noise ratio against eager's image, minimum over the quality prompts",
        1,
        every=True,
        table="PSNR dB",
        report="PSNR min dB",
        gate=Gate("psnr", True, "2", ignore_above=60.0),  # >= 60 dB: identical to the eye and to SSIM
    ),
    Field(
        "speedup",
        "x",
        "speedup",
        "eager's E2E over the backend's (paired: median of the pairs' ratios)",
        every=True,
        table="speedup",
        report="speedup vs eager",
        text=speedup_text,
    ),
    _case("image", "the timed prompt's image, relative to the run folder"),
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
        gate=Gate("energy", higher_is_better=False, fail="15%"),
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
    """A value as the tables show it, with the digits of its declaration."""
    field = FIELD.get(key)
    return format_value(value, field.digits if field is not None else None)


def table_fields() -> list[Field]:
    """The terminal table's metric columns, in order."""
    return [field for field in FIELDS if field.table]


def report_fields() -> list[Field]:
    """The report's per-group table's metric columns, in order (sparse ones included)."""
    return [field for field in FIELDS if field.report]


STAGES = ("text_encode_ms", "denoiser_ms", "controlnet_ms", "vae_decode_ms", "other_ms")  # sum to E2E
