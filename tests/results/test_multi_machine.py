"""The nightly over several machines, on the CPU (issue 19): three shard processes stand in for three GPU
machines, each with its own folder (shard 0 as a Slurm array task, .ci/slurm/shard.sbatch; shards 1 and 2
as runners of the Actions matrix, .ci/shard-run), their folders gathered into one night as
download-artifact does, and .ci/shard-merge (through .ci/slurm/merge.sbatch) merges, compares with the
previous night and reports. The second night lacks a shard and has one from another machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from diffbench.cli import main
from diffbench.results.history import load_run

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 3
# Three reference groups (tiny-sdxl t2i and i2i, tiny-sd3 t2i) of eager and compile: one group per shard.
ARGUMENTS = (
    "-q",
    "-k",
    "tiny-sdxl or tiny-sd3",
    "--backends",
    "eager,compile",
    "--device",
    "cpu",
    "--steps",
    "2",
    "--rounds",
    "2",
    "--prompts",
    "1",
    "--compiler-config",
    '{"backend": "eager"}',
)
OTHER_MACHINE = {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "cuda": "13.0"}

pytestmark = pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "activate").is_file(),
    reason="the CI scripts run in the project's .venv, which is not set up (.ci/setup)",
)


def environment(**settings: str) -> dict[str, str]:
    """This process's environment for a script: no setup, no GPU, no hub, a thread per process (2 cores)."""
    base = {
        **os.environ,
        "DIFFBENCH_SKIP_SETUP": "1",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "SLURM_SUBMIT_DIR": str(ROOT),
    }
    base.pop("GITHUB_STEP_SUMMARY", None)
    return {**base, **settings}


def run_machines(root: Path) -> list[subprocess.CompletedProcess]:
    """The three shards at once, each in its own machine's folder, as separate runners would."""
    started = []
    for index in range(SHARDS):
        settings = {"DIFFBENCH_MULTI_DIR": str(root / f"machine-{index}"), "DIFFBENCH_SHARDS": str(SHARDS)}
        if index == 0:  # a Slurm array task: its shard is SLURM_ARRAY_TASK_ID of DIFFBENCH_SHARDS
            command = ["bash", ".ci/slurm/shard.sbatch", *ARGUMENTS]
            settings["SLURM_ARRAY_TASK_ID"] = "0"
        else:  # a runner of the Actions matrix
            command = ["bash", ".ci/shard-run", str(index), str(SHARDS), *ARGUMENTS]
        started.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=environment(**settings),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [process.communicate(timeout=600)[0] for process in started]
    return [
        subprocess.CompletedProcess(process.args, process.returncode, output, "")
        for process, output in zip(started, outputs)
    ]


def gather(root: Path, night: Path, indices: list[int]) -> None:
    """The machines' shard folders and logs copied into one night's folder, as download-artifact does."""
    for index in indices:
        machine = root / f"machine-{index}"
        shutil.copytree(machine / "shards", night / "shards", dirs_exist_ok=True)
        shutil.copytree(machine / "logs", night / "logs", dirs_exist_ok=True)


def on_another_machine(shard_folder: Path) -> None:
    """Make a shard's run look measured on another machine: an H100 with another torch."""
    (run_json,) = shard_folder.glob("*/run.json")
    meta = json.loads(run_json.read_text())
    meta["stack"].update(OTHER_MACHINE)
    run_json.write_text(json.dumps(meta))


def gate(root: Path, night: Path) -> subprocess.CompletedProcess:
    """The merge job of the Slurm version (merge.sbatch: .ci/shard-merge), with generous timing thresholds."""
    settings = {
        "DIFFBENCH_SHARDS": str(SHARDS),
        "DIFFBENCH_NIGHTLY_DIR": str(night),
        "DIFFBENCH_HISTORY_DIR": str(root / "history"),
        "DIFFBENCH_FAIL": "e2e:1000%,its:1000%,warmup:1000%",
    }
    return subprocess.run(
        ["bash", ".ci/slurm/merge.sbatch", *ARGUMENTS],
        cwd=ROOT,
        env=environment(**settings),
        capture_output=True,
        text=True,
        timeout=600,
    )


def merged_run(night: Path) -> Path:
    (run,) = [path.parent for path in night.glob("*/results.jsonl")]  # shards/<i>/<run>/ are one level deeper
    return run


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Night 1: every shard; night 2: shard 2 missing, shard 1 from another machine (the same runs, copied)."""
    root = tmp_path_factory.mktemp("machines")
    machines = run_machines(root)
    for result in machines:
        assert result.returncode == 0, result.stdout[-4000:]
    gather(root, root / "night-1", list(range(SHARDS)))
    first = gate(root, root / "night-1")
    gather(root, root / "night-2", [0, 1])
    on_another_machine(root / "night-2" / "shards" / "1")
    return root, first, gate(root, root / "night-2")


def shard_cases(root: Path, index: int) -> set[str]:
    return set(load_run(next((root / f"machine-{index}" / "shards" / str(index)).glob("*/"))).records)


def test_the_first_night_of_three_machines_merges_every_shard_and_passes(nights):
    root, first, _ = nights
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "first night for these arguments" in first.stdout and "nightly: PASS" in first.stdout
    meta = json.loads((merged_run(root / "night-1") / "run.json").read_text())
    assert meta["shards"] == {
        "count": 3,
        "merged": [0, 1, 2],
        "empty": [],
        "missing": [],
        "failed": [],
        "complete": True,
    }
    assert sorted(part["shard"] for part in meta["parts"]) == ["0/3", "1/3", "2/3"]
    assert all(part["exit_status"] == 0 and len(part["cases"]) == 2 for part in meta["parts"])
    assert all(part["stack"]["cpu_model"] and part["stack"]["torch"] for part in meta["parts"])  # each machine's own
    assert (root / "night-1" / "report" / "report.md").is_file()


def test_a_missing_shard_fails_the_night_and_says_so(nights):
    root, _, second = nights
    assert second.returncode == 1, second.stdout[-4000:] + second.stderr[-4000:]
    meta = json.loads((merged_run(root / "night-2") / "run.json").read_text())
    assert meta["shards"]["missing"] == [2] and meta["shards"]["complete"] is False
    assert set(load_run(merged_run(root / "night-2")).records) == shard_cases(root, 0) | shard_cases(root, 1)
    summary = (root / "night-2" / "report" / "summary.md").read_text()
    assert "SHARD MISSING 2/3: no run or shard folder of it was merged" in summary and "nightly: FAIL" in summary
    assert "SHARD MISSING 2/3" in (root / "night-2" / "report" / "compare.txt").read_text()
    assert json.loads((root / "night-2" / "report" / "compare.json").read_text())["failed"] is True
    report = (root / "night-2" / "report" / "report.md").read_text()
    assert "Machines and shards of" in report and "This run is incomplete: SHARD MISSING 2/3" in report


def test_a_case_from_another_machine_is_not_comparable_never_a_regression(nights):
    root, _, second = nights
    compared = json.loads((root / "night-2" / "report" / "compare.json").read_text())
    other = shard_cases(root, 1)
    assert {row["case"] for row in compared["not_comparable"]} == other
    for row in compared["not_comparable"]:
        assert "different GPU (None -> NVIDIA H100 80GB HBM3)" in row["message"]
        assert "different torch (" in row["message"] and "-> 2.11.0+cu130)" in row["message"]
    assert not [row for row in compared["rows"] if row["case"] in other and row["metric"] != "machine"]
    assert {row["case"] for row in compared["rows"] if row["metric"] == "e2e"} == shard_cases(root, 0)
    assert not compared["regressions"]  # the night fails on its missing shard only
    text = (root / "night-2" / "report" / "compare.txt").read_text()
    assert "not comparable (different GPU (None -> NVIDIA H100 80GB HBM3)" in text
    assert "2 not comparable (another machine or stack)" in text


def test_compare_of_a_complete_night_with_another_machine_passes(nights, tmp_path, capsys):
    root, _, _ = nights
    shards = tmp_path / "shards"
    shutil.copytree(root / "night-1" / "shards", shards)
    on_another_machine(shards / "1")
    assert main(["merge", *map(str, sorted(shards.iterdir())), "--shards", "3", "--out", str(tmp_path / "new")]) == 0
    assert "stacks differ" in capsys.readouterr().err
    base = str(merged_run(root / "night-1"))
    assert main(["compare", base, str(tmp_path / "new")]) == 0
    out, err = capsys.readouterr()
    assert "no regression" in out and "2 not comparable" in out and "2 case(s) not comparable" in err
    assert main(["compare", base, str(tmp_path / "new"), "--across-stacks"]) == 0  # an A/B of stacks: compared
    out, err = capsys.readouterr()
    assert "not comparable (different" not in out and "different GPU (None -> NVIDIA H100 80GB HBM3)" in err
    assert main(["compare", base, str(tmp_path / "new"), "--same-stack"]) == 2
    assert "not compared (--same-stack)" in capsys.readouterr().err
