"""The pytest command-line options of diffbench, in one group, read back as raw values."""

from __future__ import annotations

from typing import Any

# Timed rounds per case. Six, not three: `diffbench compare`'s exact test (p <= 0.05) then still decides a
# clear change with one stray round on either side (p = 0.03), where 3 a side decide only when every
# round is ordered (one slow BASE round hid a 3x slowdown at p = 0.35).
DEFAULT_ROUNDS = 6

# (flag, type, help). Values stay strings/ints here; diffbench.config.settings validates them all at once.
OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--models", str, "comma-separated models (default: all); see `diffbench models`"),
    (
        "--tasks",
        str,
        "comma-separated tasks: t2i (text-to-image), i2i (image-to-image), controlnet (SDXL family: "
        "text-to-image with a ControlNet; runs only when named); default t2i,i2i",
    ),
    ("--resolutions", str, "comma-separated sizes, 1024 or HEIGHTxWIDTH (default: each model's own)"),
    ("--backends", str, "comma-separated backends (default: eager,compile); see `diffbench backends`"),
    (
        "--weights",
        str,
        "hub (default) | random | tiny | PATH (folder or single file); per model with "
        "MODEL=VALUE, e.g. random,realvisxl=/models/RealVisXL_V4.0.safetensors",
    ),
    ("--variant", str, "weights variant for hub/folder loading, e.g. fp16"),
    ("--steps", int, "denoising steps (default: the model's, 10 for the SDXL family, 28 for SD3.5)"),
    ("--warmups", int, "untimed-for-E2E warmup calls; the first is recorded as warmup_s (default 1)"),
    (
        "--max-warmups",
        int,
        "after --warmups calls, warm up on until two calls in a row agree within 10%, up to this "
        "many calls in all (default 5; equal to --warmups turns it off)",
    ),
    ("--rounds", int, f"timed rounds per case; E2E is their median (default {DEFAULT_ROUNDS})"),
    ("--batch", int, "images per prompt (default 1)"),
    ("--seed", int, "seed of the first prompt; quality prompt i uses seed+i (default 333)"),
    ("--prompt", str, "replace the first (timed) prompt of the task"),
    ("--prompts", int, "prompt/seed pairs compared against eager for quality (default 3)"),
    ("--dtype", str, "auto (default: fp16, bf16 for SD3, fp32 on CPU) | float16 | bfloat16 | float32"),
    ("--device", str, "auto (default: cuda if present) | cpu | cuda | cuda:N"),
    (
        "--generator",
        str,
        "device (default: the torch.Generator on the case's device, as OneDiff's scripts do) | cpu "
        "(images identical across devices, but ancestral/SDE schedulers then copy each step's "
        "noise to the GPU with a blocking copy, which slows the timed call)",
    ),
    (
        "--pairing",
        str,
        "auto (default: each backend's rounds alternate with eager's in one process where both fit "
        "on the device, else eager is timed again after the backend) | eager-after | off",
    ),
    (
        "--compile-mode",
        str,
        "torch.compile mode: default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs",
    ),
    (
        "--compiler-config",
        str,
        "JSON options of the compile backend, e.g. "
        '\'{"mode": "max-autotune", "fullgraph": true, "dynamic": false, '
        '"memory_format": "channels_last", "fuse_qkv_projections": true}\'',
    ),
    ("--input-image", str, "input image of image-to-image cases (default fixtures/images/astronaut.png)"),
    (
        "--controlnet",
        str,
        "ControlNet of controlnet cases: random (default; full-size or tiny random weights from "
        "fixtures/models/*-controlnet, following --weights) | hub id, e.g. "
        "diffusers/controlnet-canny-sdxl-1.0 | folder written by save_pretrained",
    ),
    (
        "--control-image",
        str,
        "control image of controlnet cases, resized to each case's size (default: Canny edges of the input image)",
    ),
    ("--quality-floor", str, "per-backend minimum SSIM/PSNR, e.g. compile=0.97/32 (defaults in README)"),
    ("--results-dir", str, "where each run's folder (results.jsonl, run.json, images/) goes (default reports/runs)"),
    (
        "--resume",
        str,
        "RUN_FOLDER: go on with an interrupted run in its folder: groups (model, task, size) whose "
        "cases all finished are not run again, the others run whole",
    ),
    (
        "--steps-sweep",
        str,
        "comma-separated step counts: after each case's timing, time its pipeline at each "
        "count and fit time = per_step * steps + fixed, e.g. 1,2,4,8,16,32",
    ),
    (
        "--resolution-sweep",
        str,
        "comma-separated sizes: after each case's timing, run the same (compiled) "
        "pipeline at each and record time and recompiles, e.g. 1024,768,512,256,768x1344",
    ),
    (
        "--batch-sweep",
        str,
        "comma-separated batch sizes: images per second at each, in increasing order, "
        "until out of memory (recorded), e.g. 1,2,4,8,16",
    ),
    (
        "--lora",
        str,
        "run every case with a LoRA adapter on the denoiser: random:RANK (seeded, no download), a local "
        ".safetensors file or folder, or a hub id; case ids get lora-LABEL-MODE, e.g. -k lora",
    ),
    (
        "--lora-modes",
        str,
        "comma-separated LoRA modes: unfused, fused, hotswap (default unfused,fused; with --lora-switch also hotswap)",
    ),
    (
        "--shard",
        str,
        "INDEX/COUNT: run only shard INDEX (from 0) of COUNT of the selected cases, split by "
        "model, task and resolution, e.g. --shard 0/2 on GPU 0 and --shard 1/2 on GPU 1",
    ),
)


def dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_options(parser: Any) -> None:
    group = parser.getgroup("diffbench", "diffbench benchmark matrix")
    for flag, kind, help_text in OPTIONS:
        group.addoption(flag, dest=f"diffbench_{dest(flag)}", type=kind, default=None, help=help_text)
    group.addoption(
        "--backend-config",
        action="append",
        dest="diffbench_backend_config",
        default=[],
        metavar="NAME=JSON",
        help="options of one backend as a JSON object, e.g. "
        "'deepcache={\"cache_interval\": 3}'; repeat the flag for several backends; "
        "see `diffbench backends` for each backend's options",
    )
    group.addoption(
        "--isolate",
        action="store_true",
        dest="diffbench_isolate",
        help="run every case in its own child process, so a crash or hang becomes a recorded "
        "failure and the run goes on (backends that can kill the interpreter always are)",
    )
    group.addoption(
        "--roofline",
        action="store_true",
        dest="diffbench_roofline",
        help="count each case group's FLOPs once (torch's FlopCounterMode, one extra eager call), "
        "measure this device's matmul rate per dtype once, and record achieved TFLOP/s and "
        "the utilisation (mfu) of every case",
    )
    group.addoption(
        "--compile-cache-check",
        action="store_true",
        dest="diffbench_compile_cache_check",
        help="run each compiled case in a fresh process with an empty inductor cache folder, then "
        "warm up again in a second fresh process sharing it: records warmup_s (cold) and "
        "warmup_cached_s (warm on-disk cache); doubles those cases' time",
    )
    group.addoption(
        "--lora-switch",
        nargs="?",
        const=True,
        default=None,
        dest="diffbench_lora_switch",
        metavar="SCENARIOS",
        help="after each compiled LoRA case, swap the adapter, change its scale and unload it on the warm "
        "pipeline: switch time, graphs recompiled, next-call time and quality vs eager (lora_switch); "
        "--lora-switch=swap,unload runs only those, in that order (default all three)",
    )
    group.addoption(
        "--case-timeout",
        type=float,
        dest="diffbench_case_timeout",
        default=None,
        help="seconds an isolated case may take before its child is killed and the case "
        "recorded as failed (default 1800)",
    )
    group.addoption(
        "--plan",
        action="store_true",
        dest="diffbench_plan",
        help="print the selected cases and their device time estimated from saved runs, then "
        "stop without running anything (implies --collect-only)",
    )
    group.addoption(
        "--plan-history",
        dest="diffbench_plan_history",
        default="reports/runs,reports/gpu",
        help="comma-separated folders searched for saved runs by --plan (default reports/runs,reports/gpu)",
    )


def raw_values(config: Any) -> dict[str, Any]:
    values = {dest(flag): config.getoption(f"diffbench_{dest(flag)}") for flag, _, _ in OPTIONS}
    for name in ("backend_config", "isolate", "case_timeout", "roofline", "compile_cache_check", "lora_switch"):
        values[name] = config.getoption(f"diffbench_{name}")
    return values
