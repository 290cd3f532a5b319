"""Issue 15: the generator on the case's device, paired rounds and their interval, stage times, telemetry's
absence on the CPU, host load, compile-cache state, percentiles, the warmup plateau and the self-check."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import RecordingBenchmark, make_session

from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError
from diffbench.measure import pairing
from diffbench.measure import rounds as rounds_module
from diffbench.measure.compile_watch import CompileActivity
from diffbench.measure.pairing import paired_speedup, unpaired_speedup
from diffbench.measure.rounds import Rounds, timing_summary
from diffbench.measure.stages import StageTimer
from diffbench.measure.telemetry import DeviceTelemetry, HostLoad, count_host_syncs, launch_probe
from diffbench.results.cells import speedup_text
from diffbench.results.schema import FIELD
from diffbench.run import session as runner
from diffbench.run import timed_rounds
from diffbench.run.round_checks import check_warmup_plateau
from diffbench.run.selfcheck import compare_rounds

EAGER_DYNAMO = '{"backend": "eager"}'  # torch.compile through dynamo without inductor: fast on the CPU


def test_generator_follows_the_case_device_unless_told_cpu():
    assert build_settings({}).generator_device("cuda:1") == "cuda:1"
    assert build_settings({"generator": "cpu"}).generator_device("cuda:1") == "cpu"
    with pytest.raises(OptionError, match="--generator value 'gpu'.*device, cpu"):
        build_settings({"generator": "gpu"})
    with pytest.raises(OptionError, match="--pairing value 'sometimes'"):
        build_settings({"pairing": "sometimes"})


def test_the_timed_call_gets_a_generator_on_the_session_device(tmp_path, monkeypatch):
    """The call builds torch.Generator(<the session's generator device>), whatever that device is."""
    session = make_session(tmp_path)
    case = expand_matrix(session.settings)[0]
    made = []

    class FakeGenerator:
        def __init__(self, device):
            made.append(device)

        def manual_seed(self, seed):
            return self

    class FakePipe:
        def __call__(self, **kwargs):
            self.generator = kwargs["generator"]
            return type("Output", (), {"images": np.zeros((1, 8, 8, 3))})()

    monkeypatch.setattr(torch, "Generator", FakeGenerator)
    session.generator_device = "cuda:3"  # as a CUDA session would have it
    pipe = FakePipe()
    session._caller(pipe, runner.MODELS[case.model], case)("a cat", 1)
    assert made == ["cuda:3"] and isinstance(pipe.generator, FakeGenerator)


def test_paired_case_alternates_eager_and_backend_and_records_an_interval(tmp_path, monkeypatch):
    session = make_session(
        tmp_path, backends="eager,compile", compiler_config=EAGER_DYNAMO, tasks="t2i", rounds=3, prompts=1
    )
    order = []
    real = timed_rounds.one_round

    def spy(device, pipe, call, pair, rounds, telemetry=None, label="backend", stages=True):
        order.append(label)
        return real(device, pipe, call, pair, rounds, telemetry, label, stages)

    monkeypatch.setattr(timed_rounds, "one_round", spy)
    records = {}
    for case in expand_matrix(session.settings):
        records[case.backend] = session.run(case, RecordingBenchmark())
    assert order == ["backend"] * 3 + pairing.paired_order(3)  # eager's own case, then E, B, E, B, E, B
    compiled = records["compile"]
    assert compiled["pairing"] == "paired" and records["eager"]["pairing"] == "reference"
    assert len(compiled["eager_paired_rounds_s"]) == 3 and len(compiled["speedup_pair_ratios"]) == 3
    assert compiled["speedup_low"] <= compiled["speedup"] <= compiled["speedup_high"]
    assert compiled["generator"] == "cpu" and compiled["status"] == "ok"


def test_unpairable_backend_times_eager_again_after_it(tmp_path, monkeypatch):
    session = make_session(
        tmp_path, backends="eager,compile", compiler_config=EAGER_DYNAMO, tasks="t2i", rounds=2, prompts=1
    )
    monkeypatch.setattr(session.backends["compile"], "pairable", False)
    records = {case.backend: session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings)}
    compiled = records["compile"]
    assert compiled["pairing"] == "eager-after" and len(compiled["eager_after_rounds_s"]) == 2
    expected = statistics.median(records["eager"]["e2e_rounds_s"]) / compiled["e2e_s"]
    assert compiled["speedup"] == pytest.approx(expected)
    assert compiled["eager_drift"] == pytest.approx(compiled["eager_after_e2e_s"] / records["eager"]["e2e_s"] - 1.0)


def test_paired_interval_on_scripted_rounds():
    exact = paired_speedup([2.0] * 10, [1.0] * 10)
    assert exact["speedup"] == 2.0 and exact["speedup_low"] == 2.0 and exact["speedup_high"] == 2.0
    rng = np.random.default_rng(1)
    drift = np.linspace(1.0, 1.4, 10)  # the host slows through the run: both sides alike
    eager, backend = list(2.0 * drift * rng.normal(1, 0.01, 10)), list(1.0 * drift * rng.normal(1, 0.01, 10))
    paired = paired_speedup(eager, backend)
    assert 1.96 < paired["speedup_low"] <= paired["speedup"] <= paired["speedup_high"] < 2.04
    assert pairing.half_width(paired) < 0.02
    unpaired = unpaired_speedup(eager, backend)  # the same rounds, unpaired: drift widens the interval
    assert unpaired["speedup_high"] - unpaired["speedup_low"] > paired["speedup_high"] - paired["speedup_low"]
    with pytest.raises(ValueError, match="as many on both sides"):
        paired_speedup([1.0, 2.0], [1.0])


def test_eager_drift_flags_the_speedup():
    flagged = unpaired_speedup([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], eager_after_s=[1.1, 1.1, 1.1])
    assert flagged["pairing"] == "eager-after" and flagged["speedup_drift_flagged"] is True
    assert flagged["eager_drift"] == pytest.approx(0.1) and "eager drift +10%" in speedup_text(flagged)
    steady = unpaired_speedup([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], eager_after_s=[1.02, 1.01, 1.0])
    assert steady["speedup_drift_flagged"] is False and speedup_text(steady) == "2.00x [2.00-2.00]"


def test_percentiles_only_from_ten_rounds():
    many, few = Rounds(seconds=[float(i) for i in range(1, 11)]), Rounds(seconds=[1.0] * 9)
    summary = timing_summary(many)
    assert summary["e2e_p50_s"] == pytest.approx(5.5) and summary["e2e_p90_s"] == pytest.approx(9.1)
    assert summary["e2e_p99_s"] == pytest.approx(9.91)
    assert "e2e_p90_s" not in timing_summary(few)


def test_stage_times_add_up_and_the_instruments_come_off(tmp_path):
    session = make_session(tmp_path, tasks="t2i", steps=3)
    case = expand_matrix(session.settings)[0]
    spec = runner.MODELS[case.model]
    pipe = session.cache.task_pipeline(session.cache.get(spec, "tiny", torch.float32, "cpu"), spec, "t2i")
    call, done = session._caller(pipe, spec, case), Rounds()
    rounds_module.one_round("cpu", pipe, call, ("a cat", 1), done)
    times = done.stages[0]
    assert len(times["denoiser_call_ms"]) == 3 and times["text_encode_ms"] > 0 and times["vae_decode_ms"] > 0
    total = times["text_encode_ms"] + times["denoiser_ms"] + times["vae_decode_ms"] + times["other_ms"]
    assert total == pytest.approx(done.seconds[0] * 1000.0) and times["other_ms"] > 0
    assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks
    assert "encode_prompt" not in pipe.__dict__ and "postprocess" not in pipe.image_processor.__dict__
    summary = timing_summary(done)
    assert summary["denoiser_ms_per_step"] == pytest.approx(statistics.median(times["denoiser_call_ms"]))
    assert summary["denoiser_calls"] == 3


def test_stage_timer_restores_an_instance_attribute_it_replaced():
    class Pipe:
        def encode_prompt(self):
            return "class"

    pipe = Pipe()
    pipe.encode_prompt = lambda: "instance"
    with StageTimer(pipe, "cpu"):
        assert pipe.encode_prompt() == "instance"
    assert pipe.encode_prompt() == "instance" and pipe.__dict__["encode_prompt"]() == "instance"


def test_telemetry_absent_on_the_cpu_is_said_not_zeroed():
    telemetry = DeviceTelemetry("cpu")
    with telemetry, telemetry.window("backend"):
        pass
    assert not telemetry.available and telemetry.summary("backend", 1) == {
        "telemetry_note": "no telemetry: cpu is not a CUDA device"
    }
    assert count_host_syncs("cpu", lambda: None) is None
    probe = launch_probe("cpu", launches=50)
    assert probe["us_per_launch"] > 0 and probe["launches"] == 50


def test_host_load_flags_other_processes(monkeypatch):
    """Other processes' CPU ticks (all cores' busy ticks minus this process's) flag the rounds as contended."""
    from diffbench.measure import telemetry

    ticks = telemetry.os.sysconf("SC_CLK_TCK")
    stats = iter([(0, 0), (int(ticks * 2.0 * (telemetry.os.cpu_count() or 1)), 0)])  # every core busy 2 s
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(telemetry, "_proc_stat", lambda: next(stats))
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(telemetry.time, "process_time", lambda: 0.0)  # this process used none of it
    with HostLoad() as load:
        pass
    record = load.record()
    assert record["host_other_cpu"] == pytest.approx(1.0) and record["contended"] is True


def test_compile_cache_state_from_torch_counters():
    assert CompileActivity(cache=(0, 0, 0, 0)).cache_state == "none"
    assert CompileActivity(cache=(0, 3, 0, 3)).cache_state == "cold"
    assert CompileActivity(cache=(3, 0, 3, 0)).cache_state == "warm"
    assert CompileActivity(cache=(2, 1, 3, 0)).cache_state == "partial"
    assert CompileActivity(cache=(1, 2, 3, 4)).as_record("warmup")["warmup_fxgraph_cache_misses"] == 2


def test_warmup_settled_on_a_slow_plateau_is_not_settled(tmp_path):
    session = make_session(tmp_path)
    case = expand_matrix(session.settings)[0]
    record = {"warmup_settled": True, "warmup_rounds_s": [9.0, 8.8, 8.8], "e2e_s": 1.9}
    check_warmup_plateau(case, record)
    assert record["warmup_settled"] is False and "slow plateau" in record["warmup_note"]
    steady = {"warmup_settled": True, "warmup_rounds_s": [2.0, 1.95], "e2e_s": 1.9}
    check_warmup_plateau(case, steady)
    assert steady["warmup_settled"] is True and "warmup_note" not in steady


def test_selfcheck_verdict_on_scripted_rounds():
    bare, bare_steps = [1.0, 1.01, 0.99], [90.0, 91.0, 89.0]  # E2E s and the stepped call's ms per step
    close = compare_rounds(bare, bare_steps, [1.005, 1.015, 0.995], [1000 / 90.5, 1000 / 91.5, 1000 / 89.5], 2.0)
    assert close["verdict"] == "pass" and close["within_tolerance"] and close["bare_ms_per_step"] == pytest.approx(90.0)
    assert close["e2e_overhead_pct"] == pytest.approx(0.5, abs=0.05)
    assert close["step_overhead_pct"] == pytest.approx(100 * (90.5 / 90.0 - 1), abs=0.01)
    low, high = close["e2e_overhead_interval_pct"]
    assert -2.0 <= low <= close["e2e_overhead_pct"] <= high <= 2.0
    slow = compare_rounds(bare, bare_steps, [1.05, 1.06, 1.04], [1000 / 90.5] * 3, 2.0)
    assert slow["verdict"] == "fail" and slow["e2e_overhead_pct"] == pytest.approx(5.0, abs=0.1)
    # Each round's suite step is 5% over that round's stepped call: the per-round ratios are paired.
    slow_steps = compare_rounds(bare, bare_steps, [1.0, 1.01, 0.99], [1000 / (1.05 * ms) for ms in bare_steps], 2.0)
    assert slow_steps["verdict"] == "fail" and slow_steps["step_overhead_pct"] == pytest.approx(5.0, abs=0.01)
    # A noisy host: the median ratio is 1.0, but single rounds swing by 10%: the interval decides nothing.
    noisy = compare_rounds([1.0] * 5, [90.0] * 5, [0.9, 1.1, 1.0, 0.9, 1.1], [1000 / 90.0] * 5, 2.0)
    assert noisy["verdict"] == "inconclusive" and noisy["e2e_overhead_pct"] == pytest.approx(0.0)
    # Without a per-step figure from the bare loop nothing can pass.
    assert compare_rounds(bare, [], [1.0, 1.01, 0.99], [], 2.0)["verdict"] == "inconclusive"


def test_plain_step_clock_times_between_the_first_and_last_step_end(monkeypatch):
    from diffbench.run import selfcheck

    stamps = iter([10.0, 10.1, 10.3, 10.6])
    monkeypatch.setattr(selfcheck.time, "perf_counter", lambda: next(stamps))
    clock = selfcheck.PlainStepClock("cpu")
    for step in range(4):
        assert clock(None, step, None, {"latents": step}) == {"latents": step}
    assert clock.take_ms_per_step() == pytest.approx(200.0) and clock.marks == []
    assert clock.take_ms_per_step() is None


def selfcheck(*options: str) -> subprocess.CompletedProcess:
    """`diffbench selfcheck` on tiny-sdxl's tiny weights at 64 px, with `options`, in a fresh interpreter."""
    command = [sys.executable, "-m", "diffbench.cli", "selfcheck", "--model", "tiny-sdxl", "--weights", "tiny"]
    return subprocess.run([*command, "--resolution", "64", *options], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_selfcheck_command_on_a_tiny_model(tmp_path):
    out = tmp_path / "selfcheck.json"
    done = selfcheck("--steps", "2", "--rounds", "2", "--device", "cpu", "--tolerance", "1000", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["case"] == "tiny-sdxl-t2i-64-eager" and result["verdict"] in ("pass", "inconclusive")
    assert [len(result["rounds_s"][side]) for side in ("bare", "suite")] == [2, 2]
    assert len(result["rounds_ms_per_step"]["bare"]) == 2 and all(ms > 0 for ms in result["rounds_ms_per_step"]["bare"])
    assert "bare loop" in done.stdout and "tolerance +-1000%" in done.stdout
    bad = selfcheck("--device", "cuda:7")
    assert bad.returncode == 2 and "diffbench selfcheck:" in bad.stderr


def test_every_new_record_field_is_declared_once():
    keys = [field.key for field in runner_fields()]
    assert len(keys) == len(set(keys))
    for key in ("host_syncs_per_call", "energy_per_image_j", "speedup_low", "compile_cache", "denoiser_ms_per_step"):
        assert FIELD[key].unit is not None and FIELD[key].doc


def runner_fields():
    from diffbench.results.schema import FIELDS

    return FIELDS


def test_a_contended_case_is_marked_in_the_table_and_the_report(tmp_path):
    from diffbench.report.stages import conditions_section
    from diffbench.results.summary import markdown_table

    record = {
        "case": "tiny-sdxl-t2i-128-eager",
        "status": "ok",
        "e2e_s": 1.0,
        "contended": True,
        "host_other_cpu": 0.6,
        "speedup": 1.0,
        "pairing": "reference",
    }
    assert "| ok (contended) |" in markdown_table([record])
    assert "| ok |" in markdown_table([{**record, "contended": False}])
    (heading, _, table) = conditions_section([("case", record)])
    assert table.header[-1] == "contended" and table.rows[0][-1] == "yes" and "0.60" in table.rows[0]
