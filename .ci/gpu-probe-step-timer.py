"""Does diffbench's per-step timer (measure.StepTimer as callback_on_step_end) slow the call it times?

On the H100, eager SDXL 1024 cases' timed rounds (which pass the StepTimer) ran 1.09-1.35 s while warmup
calls and sweep points of the same pipeline in the same process (no callback) ran 0.82-0.89 s. This
interleaves calls without a callback, with a no-op callback, and with StepTimer, on one pipeline.
Usage (GPU machine, after .ci/gpu-run's install): python3 .ci/gpu-probe-step-timer.py [ROUNDS [ARCH DEVICE SIZE]]
(default 6 sdxl cuda 1024; on the CPU e.g. 2 tiny-sdxl cpu 64) > probe.json
"""

import json
import statistics
import sys

import torch

from diffbench.measure import StepTimer, timed
from diffbench.random_weights import build_random_pipeline

rounds, arch, device, size = (int(sys.argv[1]), *sys.argv[2:4], int(sys.argv[4])) if len(sys.argv) > 2 else (
    int(sys.argv[1]) if len(sys.argv) > 1 else 6, "sdxl", "cuda", 1024)
pipe = build_random_pipeline(arch, torch.float16 if device == "cuda" else torch.float32, device)
pipe.set_progress_bar_config(disable=True)
kwargs = dict(prompt="a cat sitting on a lap", height=size, width=size, num_inference_steps=10, output_type="np")


def call(callback=None):
    extra = {"callback_on_step_end": callback} if callback else {}
    return pipe(generator=torch.Generator("cpu").manual_seed(333), **kwargs, **extra).images


variants = {"no callback": lambda: None, "no-op callback": lambda: (lambda p, i, t, k: k),
            "StepTimer": lambda: StepTimer(device)}
warm = [timed(device, call)[0] for _ in range(4)]
seconds = {name: [] for name in variants}
for _ in range(rounds):
    for name, make in variants.items():
        seconds[name].append(timed(device, call, make())[0])
print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__, "warmup_s": warm,
                  "seconds": seconds, "median_s": {n: statistics.median(s) for n, s in seconds.items()}}, indent=1))
