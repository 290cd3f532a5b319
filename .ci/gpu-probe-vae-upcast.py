"""Does diffusers' per-call VAE upcast (an fp16 SDXL VAE whose config says force_upcast is cast to fp32
for the decode and back to fp16 on every call) cost eager SDXL time, or its spread?

Interleaves calls of one random-weight SDXL pipeline with force_upcast true (the SDXL VAE config's
default) and false (what the fp16-fix VAEs set).
Usage (GPU machine, after .ci/gpu-run's install): python3 .ci/gpu-probe-vae-upcast.py [ROUNDS [ARCH DEVICE SIZE]]
(default 8 sdxl cuda 1024; on the CPU e.g. 2 tiny-sdxl cpu 64) > probe.json
"""

import json
import statistics
import sys

import torch

from diffbench.measure import timed
from diffbench.random_weights import build_random_pipeline

rounds, arch, device, size = (int(sys.argv[1]), *sys.argv[2:4], int(sys.argv[4])) if len(sys.argv) > 2 else (
    int(sys.argv[1]) if len(sys.argv) > 1 else 8, "sdxl", "cuda", 1024)
pipe = build_random_pipeline(arch, torch.float16 if device == "cuda" else torch.float32, device)
pipe.set_progress_bar_config(disable=True)
kwargs = dict(prompt="a cat sitting on a lap", height=size, width=size, num_inference_steps=10, output_type="np")


def call():
    return pipe(generator=torch.Generator("cpu").manual_seed(333), **kwargs).images


warm = [timed(device, call)[0] for _ in range(4)]
seconds = {"force_upcast true": [], "force_upcast false": []}
for _ in range(rounds):
    for name in seconds:
        pipe.vae.register_to_config(force_upcast=name.endswith("true"))
        seconds[name].append(timed(device, call)[0])
print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__,
                  "vae_dtype": str(pipe.vae.dtype), "warmup_s": warm, "seconds": seconds,
                  "median_s": {n: statistics.median(s) for n, s in seconds.items()}}, indent=1))
