"""Backends that fail the way OneDiff's can (the process exits, is killed, hangs), for --isolate tests."""

import os
import signal
import sys
import time

from diffbench.backends.base import Backend, register
from diffbench.measure.quality import QualityFloor


class _Isolated(Backend):
    quality_floor = QualityFloor(ssim=0.999, psnr=50.0)

    @property
    def isolated(self) -> bool:
        return True


@register
class ExitsBackend(_Isolated):
    name = "test-exits"

    def apply(self, pipe):
        sys.stderr.write("Key is empty.\n")
        sys.stderr.flush()
        os._exit(1)

    def explain(self, message):
        return "quantize_pipe ended the interpreter" if "Key is empty." in message else None


@register
class KilledBackend(_Isolated):
    name = "test-killed"

    def apply(self, pipe):
        os.kill(os.getpid(), signal.SIGKILL)


@register
class HangsBackend(_Isolated):
    name = "test-hangs"

    def apply(self, pipe):
        print("compiling forever", flush=True)
        time.sleep(600)


@register
class IsolatedEagerBackend(_Isolated):
    """Eager, but always in a child: its timings and images must come back intact."""

    name = "test-isolated-eager"


@register
class RaisesInChildBackend(_Isolated):
    """Raises in the child: the child records the failure, with the explanation, and returns normally."""

    name = "test-raises-in-child"

    def apply(self, pipe):
        raise RuntimeError("backend='nexfort' raised: No module named 'nexfort.inductor.codegen'")

    def explain(self, message):
        return "the wheel lacks nexfort.inductor.codegen." if "codegen" in message else None
