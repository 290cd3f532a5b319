"""SIGTERM ends a run as Ctrl-C does, so the case under way is recorded as `interrupted` and run.json,
the terminal table and pytest-benchmark's JSON are still written (a CI or device time limit sends it)."""

from __future__ import annotations

import signal
import threading
from typing import Callable


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def interrupt_on_sigterm() -> Callable[[], None] | None:
    """Turn SIGTERM into a `Terminated` (a KeyboardInterrupt) from here on; returns the function that
    puts the previous handler back, or None where signals can't be handled (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
