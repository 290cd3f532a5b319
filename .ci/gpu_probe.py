"""What the GPU probes (.ci/gpu-probe-*.py) share: the command line, one random-weight pipeline, a
seeded call, and the JSON they print. Each probe interleaves variants of a call on that one pipeline.
Arguments: [ROUNDS [ARCH DEVICE SIZE]] (default: the probe's rounds, sdxl cuda 1024; on the CPU e.g.
2 tiny-sdxl cpu 64)."""

import json
import statistics
import sys
from typing import Any, Callable

import torch

from diffbench.measure.timing import timed
from diffbench.models.random_weights import build_random_pipeline

WARMUPS = 4


class Probe:
    """The pipeline of the command line's arch on its device, and `call(**extra)`: one 10-step image."""

    def __init__(self, default_rounds: int, argv: list[str] = sys.argv[1:]) -> None:
        self.rounds = int(argv[0]) if argv else default_rounds
        arch, self.device, size = (argv[1], argv[2], int(argv[3])) if len(argv) > 1 else ("sdxl", "cuda", 1024)
        self.pipe = build_random_pipeline(arch, torch.float16 if self.device == "cuda" else torch.float32, self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.kwargs = dict(
            prompt="a cat sitting on a lap", height=size, width=size, num_inference_steps=10, output_type="np"
        )

    def call(self, **extra: Any) -> Any:
        return self.pipe(generator=torch.Generator("cpu").manual_seed(333), **self.kwargs, **extra).images

    def interleave(self, variants: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Any]:
        """Warm up, then `rounds` times each variant in turn (each gives the call's extra arguments, after
        setting up what it needs); prints and returns the seconds and their medians as JSON."""
        warm = [timed(self.device, self.call)[0] for _ in range(WARMUPS)]
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(self.rounds):
            for name, prepare in variants.items():
                seconds[name].append(timed(self.device, self.call, **prepare())[0])
        result = {
            "device": torch.cuda.get_device_name() if self.device == "cuda" else self.device,
            "torch": torch.__version__,
            "vae_dtype": str(self.pipe.vae.dtype),
            "warmup_s": warm,
            "seconds": seconds,
            "median_s": {n: statistics.median(s) for n, s in seconds.items()},
        }
        print(json.dumps(result, indent=1))
        return result
