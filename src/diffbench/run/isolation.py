"""Calling a function in a child process, so that a crash, a hang or a leak there becomes a
recorded failure with the child's last output, and the parent goes on.

The child is a fresh interpreter (`python -m diffbench.run.isolation REQUEST RESULT`), not a fork: a
forked CUDA context is unusable, and a fresh process frees every byte of GPU memory when it ends.
The request and the result travel as pickle files; the child's stdout and stderr (C libraries'
output included, e.g. nexfort's "Key is empty." before it exits) go to a log file that is kept.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TAIL_LINES = 15
KILL_GRACE_S = 10.0


@dataclass
class ChildResult:
    """What came back: the function's value, or why none did."""

    value: Any = None
    error: str | None = None  # None when the function returned
    exit_code: int | None = None
    output_tail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_exit(code: int) -> str:
    """'exited with code 1' or 'was killed by signal SIGKILL (9)' (a negative Popen return code)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {name} ({-code})"
    return f"exited with code {code}"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the child's process group (it may have children of its own), then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


class _LogFollower:
    """Forwards the child's new output lines to the log as they appear: the progress display."""

    def __init__(self, path: Path, prefix: str):
        self.path, self.prefix, self.offset = path, prefix, path.stat().st_size if path.exists() else 0

    def forward(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            if line.strip():
                logger.info("%s| %s", self.prefix, line)


def call_in_child(
    target: str,
    argument: Any,
    *,
    timeout_s: float,
    log_path: Path,
    label: str = "child",
    env: dict[str, str] | None = None,
) -> ChildResult:
    """Call `target` ('package.module:function') with `argument` in a fresh interpreter (with `env`
    added to this process's environment).

    Never raises for what happens in the child: an exception there, a non-zero exit, a signal or
    a timeout (the whole process group is then killed) comes back as `error`, with the output tail.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diffbench-child-") as folder:
        request, result = Path(folder) / "request.pkl", Path(folder) / "result.pkl"
        with open(request, "wb") as handle:
            pickle.dump({"target": target, "argument": argument, "sys_path": sys.path}, handle)
        follower = _LogFollower(log_path, label)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "diffbench.run.isolation", str(request), str(result)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
            timed_out = _wait(process, timeout_s, follower)
        follower.forward()
        outcome = ChildResult(
            exit_code=process.returncode, output_tail=tail(log_path), seconds=time.perf_counter() - start
        )
        if timed_out:
            outcome.error = f"timed out after {timeout_s:g} s, so the child process was killed"
        elif result.exists():
            _read_result(result, outcome)
        else:
            outcome.error = f"the child process {describe_exit(process.returncode)} before returning a result"
    return outcome


def _wait(process: subprocess.Popen, timeout_s: float, follower: _LogFollower) -> bool:
    """Wait for the child, forwarding its output; True if it ran out of time and was killed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            process.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            return False
        except subprocess.TimeoutExpired:
            follower.forward()
            if time.monotonic() >= deadline:
                _kill_group(process)
                return True
        except KeyboardInterrupt:  # Ctrl-C: don't leave an orphan holding the GPU
            _kill_group(process)
            raise


def _read_result(path: Path, outcome: ChildResult) -> None:
    with open(path, "rb") as handle:
        payload = pickle.load(handle)
    if "raised" in payload:
        outcome.error = payload["raised"]
    else:
        outcome.value = payload["value"]


def _child_main(request_path: str, result_path: str) -> int:
    with open(request_path, "rb") as handle:
        request = pickle.load(handle)
    sys.path[:0] = [entry for entry in request["sys_path"] if entry not in sys.path]
    module_name, _, function_name = request["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        payload = {"value": function(request["argument"])}
    except Exception as error:  # reported to the parent; SystemExit and signals end the process
        traceback.print_exc()
        payload = {"raised": f"{type(error).__name__}: {error}"}
    temporary = Path(result_path + ".tmp")
    with open(temporary, "wb") as handle:
        pickle.dump(payload, handle)
    os.replace(temporary, result_path)  # the parent never reads half a result
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
