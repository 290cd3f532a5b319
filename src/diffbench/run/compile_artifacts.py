"""torch's portable compile caches (`torch.compiler.save_cache_artifacts` / `load_cache_artifacts`), so a
run that starts on a fresh machine with an earlier run's artifacts compiles warm.

Set DIFFBENCH_COMPILE_ARTIFACTS=FOLDER. The first BenchSession of a process loads every `*.bin` in FOLDER
(those of earlier runs, or of the parallel processes of `.ci/gpu-precompile`); after each compiled case the
process writes everything it compiled or loaded so far to its own file there, `<host>-<pid>.bin`, replacing
its last one (written to a temporary name, then renamed: a run killed mid-write leaves the previous file).
Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR) already serves every process of one machine; the
artifacts carry it to another machine or a later device call. A folder that is absent is created.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ENV = "DIFFBENCH_COMPILE_ARTIFACTS"
_loaded_folders: set[Path] = set()


def artifacts_folder() -> Path | None:
    """The folder named by DIFFBENCH_COMPILE_ARTIFACTS, or None when it is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def own_file(folder: Path) -> Path:
    return folder / f"{socket.gethostname()}-{os.getpid()}.bin"


def load_compile_artifacts() -> dict[str, Any] | None:
    """Load the folder's artifacts into this process's compile caches, once per process; what was loaded
    (files, bytes, seconds), or None when no folder is set or it was loaded already."""
    folder = artifacts_folder()
    if folder is None or folder.resolve() in _loaded_folders:
        return None
    _loaded_folders.add(folder.resolve())
    files = sorted(folder.glob("*.bin")) if folder.is_dir() else []
    started, total = time.perf_counter(), 0
    for file in files:
        data = file.read_bytes()
        total += len(data)
        try:
            info = torch.compiler.load_cache_artifacts(data)
            problem = None if info is not None else "torch could not read it"
        except Exception as error:  # e.g. a file of another torch version
            problem = f"{type(error).__name__}: {error}"
        if problem:  # compile cold instead of failing the run
            logger.warning("compile artifacts %s not loaded (%s); those graphs compile cold", file, problem)
    loaded = {"folder": str(folder), "files": len(files), "bytes": total, "load_s": time.perf_counter() - started}
    logger.info(
        "compile artifacts: loaded %d files (%.1f MB) from %s in %.2f s",
        len(files),
        total / 1e6,
        folder,
        loaded["load_s"],
    )
    return loaded


def save_compile_artifacts() -> dict[str, Any] | None:
    """Write this process's compile artifacts to its own file in the folder; what was written (file, bytes),
    or None when no folder is set, nothing was compiled or loaded, or the file could not be written (a
    warning says why)."""
    folder = artifacts_folder()
    if folder is None:
        return None
    saved = torch.compiler.save_cache_artifacts()
    if saved is None or not saved[0]:
        return None
    data = saved[0]
    target = own_file(folder)
    partial = target.with_suffix(".partial")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        partial.replace(target)
    except OSError as error:  # a full disk or a read-only folder must not fail the case that compiled
        logger.warning("compile artifacts not written to %s (%s); the next run there compiles cold", target, error)
        return None
    logger.info("compile artifacts: %.1f MB written to %s", len(data) / 1e6, target)
    return {"file": str(target), "bytes": len(data)}
