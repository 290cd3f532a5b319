"""Functions the isolation tests run in child processes: each ends the way a broken backend can."""

import os
import signal
import sys
import time


def double(value):
    print("working on", value)
    return {"doubled": value * 2}


def exit_one_mid_call(_):
    print("quantizing the UNet")
    sys.stdout.flush()
    sys.stderr.write("Key is empty.\n")  # what nexfort's quantize_pipe prints before the process ends
    sys.stderr.flush()
    os._exit(1)


def killed_by_signal(_):
    print("about to segfault")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def hang(_):
    print("compiling forever")
    sys.stdout.flush()
    time.sleep(600)


def raise_error(_):
    raise RuntimeError("No module named 'nexfort.inductor.codegen'")
