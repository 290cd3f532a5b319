"""A run killed mid-way keeps every finished case's record, and --resume finishes it in its folder."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffbench.config.resume import check_resume_folder, finished_cases
from diffbench.errors import OptionError
from diffbench.results.records import read_results

ROOT = Path(__file__).resolve().parents[2]
SELECTION = ["-k", "tiny-sdxl and eager", "--steps", "2", "--rounds", "1", "--prompts", "1"]


def pytest_command(*arguments):
    return [sys.executable, "-m", "pytest", "benchmarks/", "-q", "-p", "no:cacheprovider", *SELECTION, *arguments]


def test_a_killed_run_keeps_its_records_and_resume_runs_only_the_rest(tmp_path):
    results_dir = tmp_path / "runs"
    process = subprocess.Popen(
        pytest_command("--results-dir", str(results_dir)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it as soon as the first case (t2i) is recorded
        files = list(results_dir.glob("*/results.jsonl"))
        if files and files[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    folder = files[0].parent
    before = read_results(folder / "results.jsonl")
    assert [r["case"] for r in before] == ["tiny-sdxl-t2i-128-eager"] and before[0]["status"] == "ok"

    resumed = subprocess.run(
        pytest_command("--resume", str(folder)), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert "1 passed" in resumed.stdout  # the finished t2i group is not run again
    after = read_results(folder / "results.jsonl")
    assert [r["case"] for r in after] == ["tiny-sdxl-t2i-128-eager", "tiny-sdxl-i2i-128-eager"]
    assert finished_cases(folder) == {"tiny-sdxl-t2i-128-eager", "tiny-sdxl-i2i-128-eager"}
    meta = json.loads((folder / "run.json").read_text())
    assert meta["run_id"] == folder.name and "--resume" in meta["resumed"][0]["command"]
    assert not list(results_dir.glob("*/")) or sorted(p.name for p in results_dir.iterdir()) == [folder.name]


def test_an_unfinished_case_reruns_its_whole_group(tmp_path):
    from diffbench.case import Case, Resolution
    from diffbench.config.resume import split_unfinished

    cases = [
        Case("tiny-sdxl", task, Resolution(128, 128), backend)
        for task in ("t2i", "i2i")
        for backend in ("eager", "compile")
    ]
    finished = {"tiny-sdxl-t2i-128-eager", "tiny-sdxl-t2i-128-compile", "tiny-sdxl-i2i-128-eager"}
    kept, deselected = split_unfinished(cases, finished, lambda case: case)
    assert [c.id for c in kept] == ["tiny-sdxl-i2i-128-eager", "tiny-sdxl-i2i-128-compile"]
    assert [c.id for c in deselected] == ["tiny-sdxl-t2i-128-eager", "tiny-sdxl-t2i-128-compile"]


def test_resume_needs_a_readable_run_folder(tmp_path):
    with pytest.raises(OptionError, match="no results.jsonl there"):
        check_resume_folder(str(tmp_path))
    (tmp_path / "results.jsonl").write_text('{"case": "a", "status": "ok"}\n{broken\n{"case": "b"}\n')
    with pytest.raises(OptionError, match="is corrupt"):
        check_resume_folder(str(tmp_path))
    (tmp_path / "results.jsonl").write_text('{"case": "a", "status": "failed"}\n{"case": "a", "status": "ok"}\n{"ca')
    assert check_resume_folder(str(tmp_path / "results.jsonl")) == tmp_path  # a torn last line is a kill
    (tmp_path / "run.json").write_text('{"run_id": ')
    with pytest.raises(OptionError, match="run.json is not valid JSON"):
        check_resume_folder(str(tmp_path))
    (tmp_path / "run.json").unlink()
    assert finished_cases(tmp_path) == {"a"}


def test_sigterm_records_the_case_under_way_as_interrupted_and_writes_run_json(tmp_path):
    """A time limit (timeout, CI, a device call) sends SIGTERM: the case under way gets an `interrupted`
    record with how long it had run, and the session still ends (run.json with its memory report)."""
    results_dir = tmp_path / "runs"
    command = [*pytest_command("--results-dir", str(results_dir)), "--steps", "400", "--log-cli-level=INFO"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # send it once the first case is warming up
        if "warmup call(s)" in line:
            break
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0
    folder = next(results_dir.glob("*/"))
    records = read_results(folder / "results.jsonl")
    assert [(r["case"], r["status"]) for r in records] == [("tiny-sdxl-t2i-128-eager", "interrupted")], output[-2000:]
    assert "SIGTERM" in records[0]["message"] and "interrupted after" in records[0]["message"]
    assert "memory" in json.loads((folder / "run.json").read_text())
