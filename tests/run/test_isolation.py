"""Isolation: a child that exits, is killed or hangs becomes a recorded failure; the run goes on."""

import statistics
import time

import numpy as np
import pytest
import support.faulty_backends  # noqa: F401  (registers the test-* backends)
from helpers import RecordingBenchmark, make_session

from diffbench.config.matrix import expand_matrix
from diffbench.results.records import read_results
from diffbench.run.isolation import call_in_child, describe_exit


def test_child_returns_the_value_and_keeps_its_output(tmp_path):
    result = call_in_child("support.children:double", 21, timeout_s=60, log_path=tmp_path / "child.log")
    assert result.ok and result.value == {"doubled": 42} and result.exit_code == 0
    assert "working on 21" in (tmp_path / "child.log").read_text()


@pytest.mark.parametrize(
    "target, expected_error, expected_output",
    [
        ("exit_one_mid_call", "the child process exited with code 1 before returning a result", "Key is empty."),
        (
            "killed_by_signal",
            "the child process was killed by signal SIGKILL (9) before returning a result",
            "about to segfault",
        ),
        ("raise_error", "RuntimeError: No module named 'nexfort.inductor.codegen'", "Traceback"),
    ],
)
def test_child_deaths_become_errors_with_the_output_tail(tmp_path, target, expected_error, expected_output):
    result = call_in_child(f"support.children:{target}", None, timeout_s=60, log_path=tmp_path / "c.log")
    assert not result.ok and result.value is None
    assert result.error == expected_error
    assert expected_output in result.output_tail


def test_a_hanging_child_is_killed_at_its_timeout(tmp_path):
    start = time.monotonic()
    result = call_in_child("support.children:hang", None, timeout_s=3, log_path=tmp_path / "hang.log")
    assert time.monotonic() - start < 30  # killed, not waited for (it sleeps 600 s)
    assert result.error == "timed out after 3 s, so the child process was killed"
    assert "compiling forever" in result.output_tail


def test_describe_exit():
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-11) == "was killed by signal SIGSEGV (11)"


def run_outcomes(session):
    outcomes = {}
    for case in expand_matrix(session.settings):
        try:
            outcomes[case.backend] = session.run(case, RecordingBenchmark())["status"]
        except Exception as error:
            outcomes[case.backend] = type(error).__name__
    return outcomes, {r["backend"]: r for r in read_results(session.run_folder.results)}


def test_faulty_isolated_cases_are_recorded_and_the_run_goes_on(tmp_path):
    session = make_session(
        tmp_path, tasks="t2i", backends="eager,test-exits,test-killed,test-isolated-eager", case_timeout=600
    )
    outcomes, records = run_outcomes(session)
    assert outcomes == {
        "eager": "ok",
        "test-exits": "CaseFailure",
        "test-killed": "CaseFailure",
        "test-isolated-eager": "ok",
    }
    assert list(records) == ["eager", "test-exits", "test-killed", "test-isolated-eager"]
    exits = records["test-exits"]
    assert exits["status"] == "failed"
    assert exits["message"].startswith("isolated case: the child process exited with code 1")
    assert "quantize_pipe ended the interpreter" in exits["message"] and "Key is empty." in exits["message"]
    assert (session.run_folder.path / exits["child_log"]).is_file()
    assert "killed by signal SIGKILL (9)" in records["test-killed"]["message"]


def test_a_hanging_isolated_case_is_killed_at_the_case_timeout(tmp_path):
    # The child needs some seconds to import torch and diffusers and build the tiny model first.
    session = make_session(tmp_path, tasks="t2i", backends="test-hangs,eager", case_timeout=60)
    outcomes, records = run_outcomes(session)
    assert outcomes == {"eager": "ok", "test-hangs": "CaseFailure"}
    assert records["test-hangs"]["status"] == "failed"
    assert "timed out after 60 s, so the child process was killed" in records["test-hangs"]["message"]
    assert "compiling forever" in records["test-hangs"]["message"]


def test_an_isolated_case_is_timed_in_the_child_and_checked_against_eager(tmp_path):
    session = make_session(tmp_path, tasks="t2i", backends="eager,test-isolated-eager", rounds=3)
    cases = expand_matrix(session.settings)
    eager = session.run(cases[0], RecordingBenchmark())
    benchmark = RecordingBenchmark()
    isolated = session.run(cases[1], benchmark)
    assert isolated["status"] == "ok" and isolated["child_log"] == "logs/tiny-sdxl-t2i-128-test-isolated-eager.log"
    # the rounds pytest-benchmark gets are the child's own synchronized round times, not its lifetime
    assert benchmark.replayed == isolated["e2e_rounds_s"] and len(benchmark.replayed) == 3
    assert max(benchmark.replayed) < isolated["load_s"] + isolated["warmup_s"] + 60
    # paired in the child: eager alternated with the backend there, the speedup the median per-pair ratio
    ratios = [e / b for e, b in zip(isolated["eager_paired_rounds_s"], isolated["e2e_rounds_s"])]
    assert isolated["ssim"] == 1.0 and isolated["pairing"] == "paired"
    assert isolated["speedup"] == pytest.approx(statistics.median(ratios)) and eager["pairing"] == "reference"
    saved = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(session.run_folder.path / isolated["image"]))
    assert saved.shape == (128, 128, 3)


def test_an_error_raised_in_the_child_is_recorded_like_in_process_with_its_explanation(tmp_path):
    session = make_session(tmp_path, tasks="t2i", backends="eager,test-raises-in-child", steps=2, prompts=1)
    outcomes, records = run_outcomes(session)
    assert outcomes == {"eager": "ok", "test-raises-in-child": "CaseFailure"}
    assert records["test-raises-in-child"]["message"] == (
        "the wheel lacks nexfort.inductor.codegen. RuntimeError: backend='nexfort' raised: "
        "No module named 'nexfort.inductor.codegen'"
    )
