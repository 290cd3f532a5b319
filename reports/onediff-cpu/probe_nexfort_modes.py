"""Probe each nexfort mode (and quantize_pipe, and OneFlow) on tiny SDXL on the CPU, each in its own process.

Run from the repository root inside .venv-onediff:  python reports/onediff-cpu/probe_nexfort_modes.py
Writes reports/onediff-cpu/modes.json and prints a Markdown table. One child per probe, because some
of them end the interpreter (nexfort's license check exits with "Key is empty.").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Mode names found in nexfort 0.1.dev330's nexfort/fx_compiler/mode.so; ':' combines them.
MODES = ["jit", "disable-inductor", "max-autotune", "max-optimize", "low-precision", "cudagraphs", "freezing",
         "cache-all", "cpp-wrapper", "disable-runtime-fusion", "fast-accum", "inductor-cudagraphs",
         "inductor-freezing", "benchmark", "O2", "O3", "max-optimize:max-autotune:low-precision",
         "max-optimize:max-autotune:freezing", "jit:disable-inductor", "jit:freezing", "jit:low-precision"]
JIT = {"mode": "jit", "dynamic": False}
INT8 = {"quant_type": "int8_dynamic"}
INT8_UNFUSED = {"options": JIT, "quantize": INT8, "fuse_qkv_projections": False}
SEED_EXTRAS = {"memory_format": "channels_last", "dynamic": True}
# dynamic=False: with dynamic shapes (nexfort's default lets dynamo choose) the jit tracer fails on the
# text encoders ("SymIntArrayRef expected to contain only concrete integers"); the unset rows show it.
PROBES = {f"mode {mode}": ("nexfort", {"options": {"mode": mode, "dynamic": False}}, {}) for mode in MODES}
PROBES.update({
    "jit, dynamic unset": ("nexfort", {"options": {"mode": "jit"}}, {}),
    "disable-inductor, dynamic unset": ("nexfort", {"options": {"mode": "disable-inductor"}}, {}),
    "jit + channels_last + dynamic true": ("nexfort", {"options": {"mode": "jit", **SEED_EXTRAS}}, {}),
    "jit + channels_last, dynamic false": ("nexfort", {"options": {**JIT, "memory_format": "channels_last"}}, {}),
    "jit, dynamic unset, text encoders left eager": ("nexfort", {"options": {"mode": "jit"},
                                                 "ignores": ["text_encoder", "text_encoder_2"]}, {}),
    "backend defaults (seeds' options)": ("nexfort", {}, {}),
    "no options (nexfort's own default)": ("nexfort", {"options": None}, {}),
    "quantize fp8 + jit (nexfort-fp8)": ("nexfort-fp8", {"options": JIT}, {}),
    "quantize int8 + jit": ("nexfort", {"options": JIT, "quantize": INT8}, {}),
    "quantize int8 + jit, bfloat16": ("nexfort", {"options": JIT, "quantize": INT8}, {}, "bfloat16"),
    "quantize int8 + jit, bfloat16, no QKV fusion": ("nexfort", INT8_UNFUSED, {}, "bfloat16"),
    "quantize int8 + jit, bfloat16, no QKV fusion, made-up license key": (
        "nexfort", INT8_UNFUSED, {"SILICON_ONEDIFF_LICENSE_KEY": "not-a-key"}, "bfloat16"),
    "oneflow (onediffx default backend)": ("oneflow", {}, {}),
})
TIMEOUT_S = 900


def child(name: str) -> None:
    """Build tiny SDXL, make the eager image, apply the probe's backend, call twice, compare."""
    import numpy as np
    import torch

    from diffbench.backends.base import get_backend_class
    from diffbench.models.catalog import MODELS
    from diffbench.models.pipelines import shallow_copy
    from diffbench.measure.quality import compare
    from diffbench.models.weights import load_pipeline

    backend_name, options, _, *dtype = PROBES[name]
    spec = MODELS["tiny-sdxl"]
    base = load_pipeline(spec, "tiny", getattr(torch, dtype[0] if dtype else "float32"), "cpu")
    base.set_progress_bar_config(disable=True)

    def call(pipe):
        generator = torch.Generator("cpu").manual_seed(0)
        return pipe(prompt="a cat", generator=generator, num_inference_steps=4, height=128, width=128,
                    output_type="np").images[0]

    reference = call(base)
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    backend = get_backend_class(backend_name)(options)
    start = time.perf_counter()
    pipe = backend.apply(shallow_copy(base))
    first = call(pipe)
    compile_s = time.perf_counter() - start
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        last = call(pipe)
        seconds.append(time.perf_counter() - start)
    eager_seconds = []
    for _ in range(3):
        start = time.perf_counter()
        eager_after = call(base)
        eager_seconds.append(time.perf_counter() - start)
    ssim, psnr = compare(reference, last)
    untouched = all(torch.equal(before[k], v) for k, v in base.unet.state_dict().items())
    print("RESULT " + json.dumps({
        "status": "ok", "apply_and_first_call_s": round(compile_s, 2), "median_call_s": round(sorted(seconds)[1], 3),
        "eager_median_call_s": round(sorted(eager_seconds)[1], 3), "ssim": round(ssim, 4), "psnr": round(psnr, 2),
        "repeatable": bool(np.array_equal(first, last)), "cached_unet_untouched": untouched,
        "eager_unchanged_after": bool(np.array_equal(reference, eager_after))}))


def run_probe(name: str) -> dict:
    env = {**os.environ, **PROBES[name][2], "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {TIMEOUT_S} s"}
    output = done.stdout + done.stderr
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[len("RESULT "):]), "seconds": round(time.perf_counter() - start, 1)}
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line or "Key is empty" in line]
    return {"status": f"exit {done.returncode}", "message": (errors or lines or [""])[-1][:400],
            "tail": "\n".join(lines[-6:])[-1500:], "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    only = sys.argv[1:]
    results = {}
    for name in PROBES:
        if only and name not in only:
            continue
        results[name] = run_probe(name)
        print(f"{name}: {results[name].get('status')} {results[name].get('message', '')}", flush=True)
    (HERE / "modes.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n| probe | outcome | apply + first call s | median call s (eager) | SSIM | PSNR dB |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        outcome = result["status"] if result["status"] == "ok" else f"{result['status']}: `{result.get('message')}`"
        print(f"| {name} | {outcome} | {result.get('apply_and_first_call_s', '')} | "
              f"{result.get('median_call_s', '')} ({result.get('eager_median_call_s', '')}) | "
              f"{result.get('ssim', '')} | {result.get('psnr', '')} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        child(sys.argv[2])
    else:
        main()
