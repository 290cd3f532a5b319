"""Does diffusers' per-call VAE upcast (an fp16 SDXL VAE whose config says force_upcast is cast to fp32
for the decode and back to fp16 on every call) cost eager SDXL time, or its spread?

Interleaves calls of one random-weight SDXL pipeline with force_upcast true (the SDXL VAE config's
default) and false (what the fp16-fix VAEs set).
Usage (GPU machine, after .ci/gpu-run's install): python3 .ci/gpu-probe-vae-upcast.py [ROUNDS [ARCH DEVICE SIZE]]
(default 8 sdxl cuda 1024; on the CPU e.g. 2 tiny-sdxl cpu 64) > probe.json
"""

from gpu_probe import Probe

probe = Probe(default_rounds=8)


def upcast(value: bool):
    def prepare() -> dict:
        probe.pipe.vae.register_to_config(force_upcast=value)
        return {}

    return prepare


probe.interleave({"force_upcast true": upcast(True), "force_upcast false": upcast(False)})
