"""Does diffbench's per-step timer (measure.StepTimer as callback_on_step_end) slow the call it times?

On the H100, eager SDXL 1024 cases' timed rounds (which pass the StepTimer) ran 1.09-1.35 s while warmup
calls and sweep points of the same pipeline in the same process (no callback) ran 0.82-0.89 s. This
interleaves calls without a callback, with a no-op callback, and with StepTimer, on one pipeline.
Usage (GPU machine, after .ci/gpu-run's install): python3 .ci/gpu-probe-step-timer.py [ROUNDS [ARCH DEVICE SIZE]]
(default 6 sdxl cuda 1024; on the CPU e.g. 2 tiny-sdxl cpu 64) > probe.json
"""

from gpu_probe import Probe

from diffbench.measure.timing import StepTimer

probe = Probe(default_rounds=6)
probe.interleave(
    {
        "no callback": lambda: {},
        "no-op callback": lambda: {"callback_on_step_end": lambda pipe, step, timestep, kwargs: kwargs},
        "StepTimer": lambda: {"callback_on_step_end": StepTimer(probe.device)},
    }
)
