"""Whether a folder can receive a run's files, checked before any work rather than at the first case."""

from __future__ import annotations

import tempfile
from pathlib import Path

from diffbench.errors import OptionError


def nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its closest ancestor that does (the folder it would be made in)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable_folder(path: Path, flag: str) -> None:
    """Raise OptionError unless `path` is, or can be made as, a folder this process can write in.

    Creates nothing that stays: a probe folder is made in the nearest existing ancestor and removed
    (permission bits alone do not tell; root may write anywhere but in /proc)."""
    path = Path(path).expanduser()
    existing = nearest_existing(path.absolute())
    if not existing.is_dir():
        raise OptionError(f"{flag} {str(path)!r}: {existing} is a file, not a folder; give a folder to write runs into")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".diffbench-probe-").cleanup()
    except OSError as error:
        raise OptionError(
            f"{flag} {str(path)!r} cannot be written here ({error.strerror or error}: "
            f"{existing}); give a folder you can write to"
        ) from None
