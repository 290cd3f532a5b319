"""What a run shows while it works: diffbench's phase lines (building, warmup, timing N rounds, quality)
on pytest's terminal by default, and a heartbeat with the elapsed time during a long warmup (a compile)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Iterator

logger = logging.getLogger(__name__)

PACKAGE_LOGGER = "diffbench"
HEARTBEAT_S = 30.0  # a cold SDXL compile takes minutes: a line every half minute says it is alive
_WRITE_LOCK = threading.Lock()  # the heartbeat thread and the main thread share the terminal


class TerminalLines(logging.Handler):
    """Writes diffbench's log lines (INFO and up) on pytest's terminal, between the result dots."""

    def __init__(self, reporter: Any, capture: Any):
        super().__init__(logging.INFO)
        self.reporter, self.capture = reporter, capture
        self.setFormatter(logging.Formatter("diffbench: %(message)s"))
        # An isolated child's every output line is logged at INFO: it stays in logs/<case>.log.
        self.addFilter(lambda record: not record.name.startswith("diffbench.run.isolation"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            with _WRITE_LOCK, self._terminal():
                self.reporter.write_line(line)
        except Exception:  # logging's rule: a handler reports its own failure, never raises into the caller
            self.handleError(record)

    def _terminal(self) -> contextlib.AbstractContextManager:
        """Output capture suspended, so the line reaches the terminal, not the test's captured output."""
        return self.capture.global_and_fixture_disabled() if self.capture else contextlib.nullcontext()


def wanted(config: Any) -> bool:
    """Shown unless the run shows nothing (--collect-only, -q) or pytest's live log already does (--log-cli-level)."""
    live_log = config.getoption("log_cli_level", None) is not None or bool(config.getini("log_cli"))
    return not (config.option.collectonly or config.option.verbose < 0 or live_log)


def show_progress(config: Any) -> None:
    """Install TerminalLines on the `diffbench` logger for this pytest run (undone at its end)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not wanted(config):
        return
    package = logging.getLogger(PACKAGE_LOGGER)
    handler, level = TerminalLines(reporter, config.pluginmanager.get_plugin("capturemanager")), package.level
    package.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        package.setLevel(logging.INFO)

    def undo() -> None:
        package.removeHandler(handler)
        package.setLevel(level)

    config.add_cleanup(undo)


@contextlib.contextmanager
def heartbeat(label: str, compiling: bool = False, interval_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Log `<label>: still compiling, 60 s` (or `still warming up`) every `interval_s` while the block
    runs, from a timer thread (never around the timed rounds: only warmups are wrapped in this)."""
    stop, start = threading.Event(), time.perf_counter()
    doing = "compiling" if compiling else "warming up"

    def beat() -> None:
        while not stop.wait(interval_s):
            logger.info("%s: still %s, %.0f s", label, doing, time.perf_counter() - start)

    thread = threading.Thread(target=beat, name="diffbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
