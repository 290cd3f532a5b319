"""Where the committed fixtures live: component configs, tokenizer files, input images and prompts."""

from __future__ import annotations

import os
from pathlib import Path

FIXTURES_ENV_VAR = "DIFFBENCH_FIXTURES"
DEFAULT_FIXTURES_DIR = Path(__file__).resolve().parents[3] / "fixtures"


def fixtures_dir() -> Path:
    """The fixtures folder: $DIFFBENCH_FIXTURES if set, else the repository's fixtures/ (read at each call)."""
    return Path(os.environ.get(FIXTURES_ENV_VAR) or DEFAULT_FIXTURES_DIR)
