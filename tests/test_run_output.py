"""What a benchmark run shows and leaves, through the real command line: a line per phase by default, a
results table that fits a terminal (a skip reason given once), and run.json's settings as JSON."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffbench.run.progress import heartbeat

ROOT = Path(__file__).resolve().parents[1]
TINY = "tiny-sdxl-t2i-128"
WIDTH = 120


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Tiny SDXL eager and compile (dynamo only) for real, and four full-size cases that skip for want of a GPU."""
    results_dir = tmp_path_factory.mktemp("runs")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks/",
        "-p",
        "no:cacheprovider",
        "--models",
        "tiny-sdxl,sdxl",
        "--tasks",
        "t2i",
        "--backends",
        "eager,compile",
        "--compiler-config",
        '{"backend": "eager"}',
        "--rounds",
        "2",
        "--prompts",
        "1",
        "--steps",
        "2",
        "--results-dir",
        str(results_dir),
    ]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder,) = results_dir.iterdir()
    return result, folder


def test_each_phase_is_a_short_line_by_default(run):
    result, _ = run
    lines = [line for line in result.stdout.splitlines() if line.startswith("diffbench: ")]
    expected = [
        "diffbench: building tiny-sdxl",
        f"diffbench: {TINY}-eager: 1+ warmup call(s)",
        f"diffbench: {TINY}-compile: 1+ warmup call(s) (this is where it compiles)",
        f"diffbench: {TINY}-compile: warmup ",
        "s; timing 2 rounds",
        f"diffbench: {TINY}-compile: E2E median",
    ]
    for text in expected:
        assert any(text in line for line in lines), (text, lines)
    assert all(len(line) <= WIDTH for line in lines), lines


def test_the_results_table_fits_a_terminal_and_gives_a_skip_reason_once(run):
    result, _ = run
    section = result.stdout.split("diffbench results")[1].split("records: ")[0]
    assert max(map(len, section.splitlines())) <= WIDTH, section
    rows = [line for line in section.splitlines() if line.startswith("| sdxl-t2i-")]
    assert len(rows) == 4 and all("| skipped [1] |" in row for row in rows), section
    assert section.count("no supported GPU: sdxl is a full-size model") == 1
    for backend in ("eager", "compile"):  # "ok (contended)" where other processes shared the cores
        assert re.search(rf"\| {TINY}-{backend} \| ok( \(contended\))? \|", section)


def test_run_json_settings_are_json_a_script_can_read(run):
    _, folder = run
    settings = json.loads((folder / "run.json").read_text())["settings"]
    assert settings["models"] == ["tiny-sdxl", "sdxl"] and settings["backends"] == ["eager", "compile"]
    assert settings["rounds"] == 2 and settings["steps"] == 2 and settings["resolutions"] is None
    assert settings["backend_options"] == {"compile": {"backend": "eager"}}
    assert Path(settings["results_dir"]) == folder.parent and settings["shard"] is None


def test_a_long_warmup_says_it_is_alive_until_it_ends(caplog):
    caplog.set_level(logging.INFO, logger="diffbench.run.progress")
    with heartbeat("sdxl-t2i-1024-compile", compiling=True, interval_s=0.05):
        time.sleep(0.32)
    beats = [record.getMessage() for record in caplog.records]
    assert 3 <= len(beats) <= 7 and beats[0] == "sdxl-t2i-1024-compile: still compiling, 0 s", beats
    time.sleep(0.15)
    assert len(caplog.records) == len(beats)  # stopped with the block
    with heartbeat("tiny-sdxl-t2i-128-eager", interval_s=0.05):
        time.sleep(0.08)
    assert caplog.records[-1].getMessage() == "tiny-sdxl-t2i-128-eager: still warming up, 0 s"
