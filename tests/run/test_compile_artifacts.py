"""DIFFBENCH_COMPILE_ARTIFACTS: a process that loads an earlier process's artifacts compiles warm."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffbench.run import compile_artifacts
from diffbench.run.compile_artifacts import ENV, load_compile_artifacts, save_compile_artifacts

SRC = Path(__file__).resolve().parents[2] / "src"
# One compile, then the inductor counters and what was loaded and saved, as JSON on the last line.
PROCESS = """
import json, torch
from torch._dynamo.utils import counters
from diffbench.run.compile_artifacts import load_compile_artifacts, save_compile_artifacts
loaded = load_compile_artifacts()
torch.compile(lambda x: (x.sin() * 2 + 1).cos())(torch.randn(8, 8))
print(json.dumps({"loaded": loaded, "inductor": dict(counters["inductor"]), "saved": save_compile_artifacts()}))
"""


def run_process(folder: Path, inductor_cache: Path) -> dict:
    env = {**os.environ, ENV: str(folder), "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache), "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", PROCESS], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_fresh_inductor_cache_with_the_artifacts_of_an_earlier_process_hits(tmp_path):
    folder = tmp_path / "artifacts"
    first = run_process(folder, tmp_path / "inductor-1")
    assert first["loaded"]["files"] == 0 and first["inductor"].get("fxgraph_cache_miss") == 1
    assert Path(first["saved"]["file"]).parent == folder and first["saved"]["bytes"] > 0
    second = run_process(folder, tmp_path / "inductor-2")  # an empty inductor cache: only the artifacts help
    assert second["loaded"] == {**second["loaded"], "files": 1, "bytes": first["saved"]["bytes"]}
    assert second["inductor"].get("fxgraph_cache_hit") == 1 and "fxgraph_cache_miss" not in second["inductor"]
    assert sorted(p.suffix for p in folder.iterdir()) == [".bin", ".bin"]  # one file per process, none partial


def test_unset_means_nothing_loaded_or_saved(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert load_compile_artifacts() is None and save_compile_artifacts() is None


def test_a_folder_loads_once_per_process_and_a_bad_file_is_a_warning(tmp_path, monkeypatch, caplog):
    (tmp_path / "old.bin").write_bytes(b"not artifacts")
    monkeypatch.setenv(ENV, str(tmp_path))
    monkeypatch.setattr(compile_artifacts, "_loaded_folders", set())
    loaded = load_compile_artifacts()
    assert loaded is not None and loaded["files"] == 1 and loaded["bytes"] == len(b"not artifacts")
    assert "not loaded" in caplog.text and "compile cold" in caplog.text
    assert load_compile_artifacts() is None  # the second session of the process loads nothing again


def test_a_folder_that_cannot_be_written_is_a_warning_not_a_failed_case(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv(ENV, str(blocker / "artifacts"))
    monkeypatch.setattr(compile_artifacts.torch.compiler, "save_cache_artifacts", lambda: (b"artifacts", None))
    assert save_compile_artifacts() is None
    assert "not written" in caplog.text and "compiles cold" in caplog.text
