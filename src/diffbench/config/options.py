"""The command-line options of a run, each declared once: flag, RunSettings field, parser and help (whose
`{default}` is the field's default); config.matrix.build_settings loops over OPTIONS, add_options adds them."""

from __future__ import annotations

from typing import Any

from diffbench.backends.base import registry
from diffbench.case import TASKS
from diffbench.config.option import Option, default_of, switch
from diffbench.config.parsers import (
    as_is,
    check_device,
    check_image,
    count,
    names,
    one_of,
    parse_dtype,
    parse_quality_floors,
    parse_weights,
    positive_ints,
    positive_timeout,
    results_dir,
    sizes,
    steps_sweep,
)
from diffbench.config.resume import check_resume_folder
from diffbench.config.settings import GENERATORS, PAIRINGS
from diffbench.models.catalog import MODELS
from diffbench.models.controlnet import parse_controlnet_source
from diffbench.results.shard import parse_shard

OPTIONS: tuple[Option, ...] = (
    Option(
        "--models",
        ("models",),
        names("model", "models", lambda: list(MODELS)),
        "comma-separated models (default: all); see `diffbench models`",
    ),
    Option(
        "--tasks",
        ("tasks",),
        names("task", "tasks", lambda: list(TASKS)),
        "comma-separated tasks: t2i (text-to-image), i2i (image-to-image), controlnet (SDXL family: "
        "text-to-image with a ControlNet; runs only when named); default {default}",
    ),
    Option(
        "--resolutions",
        ("resolutions",),
        lambda text: sizes(text) or None,
        "comma-separated sizes, 1024 or HEIGHTxWIDTH (default: each model's own)",
    ),
    Option(
        "--backends",
        ("backends",),
        names("backend", "backends", lambda: list(registry())),
        "comma-separated backends (default: {default}); see `diffbench backends`",
    ),
    Option(
        "--weights",
        ("default_weights", "weights"),
        parse_weights,
        "{default} (default) | random | tiny | PATH (folder or single file); per model with "
        "MODEL=VALUE, e.g. random,realvisxl=/models/RealVisXL_V4.0.safetensors",
    ),
    Option("--variant", ("variant",), as_is, "weights variant for hub/folder loading, e.g. fp16"),
    Option(
        "--steps",
        ("steps",),
        count("steps"),
        "denoising steps (default: the model's, 10 for the SDXL family, 28 for SD3.5)",
        int,
    ),
    Option(
        "--warmups",
        ("warmups",),
        count("warmups", 0),
        "untimed-for-E2E warmup calls; the first is recorded as warmup_s (default {default})",
        int,
    ),
    Option(
        "--max-warmups",
        ("max_warmups",),
        count("max_warmups"),
        "after --warmups calls, warm up on until two calls in a row agree within 10%, up to this "
        "many calls in all (default {default}; equal to --warmups turns it off)",
        int,
    ),
    Option(
        "--rounds", ("rounds",), count("rounds"), "timed rounds per case; E2E is their median (default {default})", int
    ),
    Option("--batch", ("batch",), count("batch"), "images per prompt (default {default})", int),
    Option(
        "--seed", ("seed",), as_is, "seed of the first prompt; quality prompt i uses seed+i (default {default})", int
    ),
    Option("--prompt", ("prompt",), as_is, "replace the first (timed) prompt of the task"),
    Option(
        "--prompts",
        ("prompts",),
        count("prompts"),
        "prompt/seed pairs compared against eager for quality (default {default})",
        int,
    ),
    Option(
        "--dtype",
        ("dtype",),
        parse_dtype,
        "{default} (default: fp16, bf16 for SD3, fp32 on CPU) | float16 | bfloat16 | float32",
    ),
    Option(
        "--device",
        ("device",),
        lambda text: check_device(text or "auto"),
        "{default} (default: cuda if present) | cpu | cuda | cuda:N",
    ),
    Option(
        "--generator",
        ("generator",),
        one_of("--generator value", "generator", GENERATORS),
        "{default} (default: the torch.Generator on the case's device, as OneDiff's scripts do) | cpu "
        "(images identical across devices, but ancestral/SDE schedulers then copy each step's "
        "noise to the GPU with a blocking copy, which slows the timed call)",
    ),
    Option(
        "--pairing",
        ("pairing",),
        one_of("--pairing value", "pairing", PAIRINGS),
        "{default} (default: each backend's rounds alternate with eager's in one process where both fit "
        "on the device, else eager is timed again after the backend) | eager-after | off",
    ),
    Option(
        "--compile-mode",
        (),
        None,
        "torch.compile mode: default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs",
    ),
    Option(
        "--compiler-config",
        (),
        None,
        "JSON options of the compile backend, e.g. "
        '\'{{"mode": "max-autotune", "fullgraph": true, "dynamic": false, '
        '"memory_format": "channels_last", "fuse_qkv_projections": true}}\'',
    ),
    Option(
        "--input-image",
        ("input_image",),
        check_image,
        "input image of image-to-image cases (default fixtures/images/astronaut.png)",
    ),
    Option(
        "--controlnet",
        ("controlnet",),
        parse_controlnet_source,
        "ControlNet of controlnet cases: {default} (default; full-size or tiny random weights from "
        "fixtures/models/*-controlnet, following --weights) | hub id, e.g. "
        "diffusers/controlnet-canny-sdxl-1.0 | folder written by save_pretrained",
    ),
    Option(
        "--control-image",
        ("control_image",),
        lambda text: check_image(text, "--control-image"),
        "control image of controlnet cases, resized to each case's size (default: Canny edges of the input image)",
    ),
    Option(
        "--quality-floor",
        ("quality_floors",),
        parse_quality_floors,
        "per-backend minimum SSIM/PSNR, e.g. compile=0.97/32 (defaults in README)",
    ),
    Option(
        "--results-dir",
        ("results_dir",),
        results_dir,
        "where each run's folder (results.jsonl, run.json, images/) goes (default {default})",
    ),
    Option(
        "--resume",
        ("resume",),
        check_resume_folder,
        "RUN_FOLDER: go on with an interrupted run in its folder: groups (model, task, size) whose "
        "cases all finished are not run again, the others run whole",
    ),
    Option(
        "--steps-sweep",
        ("steps_sweep",),
        steps_sweep,
        "comma-separated step counts: after each case's timing, time its pipeline at each "
        "count and fit time = per_step * steps + fixed, e.g. 1,2,4,8,16,32",
    ),
    Option(
        "--resolution-sweep",
        ("resolution_sweep",),
        sizes,
        "comma-separated sizes: after each case's timing, run the same (compiled) "
        "pipeline at each and record time and recompiles, e.g. 1024,768,512,256,768x1344",
    ),
    Option(
        "--batch-sweep",
        ("batch_sweep",),
        lambda text: positive_ints("--batch-sweep", text),
        "comma-separated batch sizes: images per second at each, in increasing order, "
        "until out of memory (recorded), e.g. 1,2,4,8,16",
    ),
    Option(
        "--lora",
        ("lora",),
        None,
        "run every case with a LoRA adapter on the denoiser: random:RANK (seeded, no download), a local "
        ".safetensors file or folder, or a hub id; case ids get lora-LABEL-MODE, e.g. -k lora",
    ),
    Option(
        "--lora-modes",
        ("lora_modes",),
        None,
        "comma-separated LoRA modes: unfused, fused, hotswap (default unfused,fused; with --lora-switch also hotswap)",
    ),
    Option(
        "--shard",
        ("shard",),
        parse_shard,
        "INDEX/COUNT: run only shard INDEX (from 0) of COUNT of the selected cases, split by "
        "model, task and resolution, e.g. --shard 0/2 on GPU 0 and --shard 1/2 on GPU 1",
    ),
    Option(
        "--backend-config",
        ("backend_options",),
        None,
        "options of one backend as a JSON object, e.g. "
        "'deepcache={{\"cache_interval\": 3}}'; repeat the flag for several backends; "
        "see `diffbench backends` for each backend's options",
        None,
        extra={"action": "append", "metavar": "NAME=JSON"},
        default=[],
    ),
    switch(
        "--isolate",
        ("isolate",),
        "run every case in its own child process, so a crash or hang becomes a recorded "
        "failure and the run goes on (backends that can kill the interpreter always are)",
    ),
    switch(
        "--roofline",
        ("roofline",),
        "count each case group's FLOPs once (torch's FlopCounterMode, one extra eager call), "
        "measure this device's matmul rate per dtype once, and record achieved TFLOP/s and "
        "the utilisation (mfu) of every case",
    ),
    switch(
        "--compile-cache-check",
        ("compile_cache_check",),
        "run each compiled case in a fresh process with an empty inductor cache folder, then "
        "warm up again in a second fresh process sharing it: records warmup_s (cold) and "
        "warmup_cached_s (warm on-disk cache); doubles those cases' time",
    ),
    Option(
        "--lora-switch",
        ("lora_switch",),
        None,
        "after each compiled LoRA case, swap the adapter, change its scale and unload it on the warm "
        "pipeline: switch time, graphs recompiled, next-call time and quality vs eager (lora_switch); "
        "--lora-switch=swap,unload runs only those, in that order (default all three)",
        None,
        extra={"nargs": "?", "const": True, "metavar": "SCENARIOS"},
    ),
    Option(
        "--case-timeout",
        ("case_timeout_s",),
        positive_timeout,
        "seconds an isolated case may take before its child is killed and the case "
        "recorded as failed (default {default})",
        float,
    ),
    switch(
        "--plan",
        (),
        "print the selected cases and their device time estimated from saved runs, then "
        "stop without running anything (implies --collect-only)",
    ),
    Option(
        "--plan-history",
        (),
        None,
        "comma-separated folders searched for saved runs by --plan (default {default})",
        None,
        default=f"{default_of('results_dir')},reports/gpu",
    ),
)


def add_options(parser: Any) -> None:
    """Every option of OPTIONS in pytest's parser, under `diffbench_<name>`, in the table's order."""
    group = parser.getgroup("diffbench", "diffbench benchmark matrix")
    for option in OPTIONS:
        arguments: dict[str, Any] = {"dest": f"diffbench_{option.name}", "help": option.help_text(), **option.extra}
        if option.type is not None:
            arguments["type"] = option.type
        if option.extra.get("action") != "store_true":
            arguments["default"] = option.default
        group.addoption(option.flag, **arguments)
