"""`diffbench compare`: thresholds, the noise rule, status changes, unusable input and exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from diffbench.cli import main
from diffbench.errors import OptionError
from diffbench.results.noise import higher_beyond_noise, p_value_higher
from diffbench.results.thresholds import parse_thresholds

ROOT = Path(__file__).resolve().parents[2]
CASE = "tiny-sdxl-t2i-128-eager"


@dataclass
class TinyRun:
    folder: Path  # the run folder: results.jsonl, run.json
    benchmark_json: Path
    runs_dir: Path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One real tiny CPU run, made once for the module; tests compare edited copies of it."""
    root = tmp_path_factory.mktemp("compare")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks/",
        "-k",
        "tiny-sdxl-t2i",
        "--backends",
        "eager",
        "--rounds",
        "3",
        "--prompts",
        "1",
        "--results-dir",
        str(root / "runs"),
        "--benchmark-json",
        str(root / "b.json"),
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder,) = (root / "runs").iterdir()
    steady_rounds(root / "b.json", folder / "results.jsonl")
    return TinyRun(folder, root / "b.json", root / "runs")


def steady(record: dict) -> None:
    """Rounds 1% apart around the real median: on a busy CPU the real rounds can spread by 2x, and
    these tests edit them by known factors to check the comparison logic, not this machine's noise."""
    median = record["e2e_s"]
    record["e2e_rounds_s"] = [median * 0.99, median, median * 1.01]
    if record.get("its"):
        record["its_rounds"] = [record["its"] * 1.01, record["its"], record["its"] * 0.99]


def steady_rounds(benchmark_json: Path, results: Path) -> None:
    data = json.loads(benchmark_json.read_text())
    for benchmark in data["benchmarks"]:
        steady(benchmark["extra_info"])
    benchmark_json.write_text(json.dumps(data))
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    for record in records:
        steady(record)
    results.write_text("".join(json.dumps(record) + "\n" for record in records))


def copy_run(run: TinyRun, target: Path, edit=None) -> Path:
    """A copy of the run folder; `edit(records)` changes its records (a list of dicts) in place."""
    shutil.copytree(run.folder, target)
    records = [json.loads(line) for line in (target / "results.jsonl").read_text().splitlines()]
    if edit:
        edit(records)
    (target / "results.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return target


def edited_benchmark_json(run: TinyRun, target: Path, edit) -> Path:
    """A copy of the pytest-benchmark JSON whose case record (`extra_info`) `edit` changes."""
    data = json.loads(run.benchmark_json.read_text())
    edit(data["benchmarks"][0]["extra_info"])
    target.write_text(json.dumps(data))
    return target


def slower(factor: float):
    def edit(record: dict) -> None:
        record["e2e_s"] *= factor
        record["e2e_rounds_s"] = [value * factor for value in record["e2e_rounds_s"]]

    return edit


def compare(capsys, base, new, *options):
    code = main(["compare", str(base), str(new), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_runs_pass(tiny_run, capsys, tmp_path):
    code, out, err = compare(capsys, tiny_run.folder, copy_run(tiny_run, tmp_path / "copy"))
    assert code == 0, out + err
    assert f"{CASE}  e2e" in out and "REGRESSION" not in out and "no regression" in out
    assert "peak_mem" not in out  # None on the CPU: skipped silently
    assert err == ""


def test_slower_beyond_noise_regresses_naming_case_and_metric(tiny_run, capsys, tmp_path):
    new = edited_benchmark_json(tiny_run, tmp_path / "slow.json", slower(1.5))
    code, out, _ = compare(capsys, tiny_run.benchmark_json, new, "--results-dir", str(tiny_run.runs_dir))
    assert code == 1
    assert f"REGRESSION {CASE} e2e:" in out and "(+50.0%, threshold 10%)" in out
    assert "1 regression(s) in 1 case(s)" in out


def test_slower_inside_noise_is_not_a_regression(tiny_run, capsys, tmp_path):
    def noisy(records):  # BASE's rounds spread 0.5-2x; NEW's median 30% slower, its rounds as spread
        record = records[0]
        median = record["e2e_s"]
        record["e2e_rounds_s"] = [median * 0.5, median, median * 2.0]

    def interleaved(records):
        noisy(records)
        record = records[0]
        median = record["e2e_s"]
        record["e2e_rounds_s"], record["e2e_s"] = [median * 0.6, median * 1.3, median * 1.4], median * 1.3

    base = copy_run(tiny_run, tmp_path / "base", noisy)
    code, out, err = compare(capsys, base, copy_run(tiny_run, tmp_path / "noisy", interleaved))
    assert code == 0, out + err
    assert "+30.0%" in out and "noise (p=0.50)" in out and "INCONCLUSIVE" not in out


def one_slow_round(rounds: int):
    """BASE: `rounds` steady rounds, the last one 3.05x slower; NEW: 3x slower, steady (issue 16's case)."""

    def base(records):
        median = records[0]["e2e_s"]
        records[0]["e2e_rounds_s"] = [median * (1 + i / 1000) for i in range(rounds - 1)] + [median * 3.05]
        records[0]["e2e_s"] = median

    def new(records):
        median = records[0]["e2e_s"]
        records[0]["e2e_rounds_s"] = [median * (3 + i / 1000) for i in range(rounds)]
        records[0]["e2e_s"] = median * 3

    return base, new


def test_a_large_change_too_few_rounds_can_decide_is_inconclusive_and_fails(tiny_run, capsys, tmp_path):
    edit_base, edit_new = one_slow_round(3)
    base, new = copy_run(tiny_run, tmp_path / "base", edit_base), copy_run(tiny_run, tmp_path / "new", edit_new)
    code, out, err = compare(capsys, base, new)
    assert code == 1, out + err
    assert "+200.0%" in out and "inconclusive (p=0.35)" in out and "REGRESSION" not in out
    assert (
        f"INCONCLUSIVE {CASE} e2e:" in out
        and "p=0.35 with 3 and 3 rounds cannot decide" in out
        and "would decide with 18 a side (--rounds 18)" in out
    )
    assert "1 inconclusive (fails; --inconclusive pass lets it pass)" in out
    code, out, _ = compare(capsys, base, new, "--inconclusive", "pass", "--json", str(tmp_path / "c.json"))
    assert code == 0 and f"INCONCLUSIVE {CASE} e2e:" in out
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["failed"] is False and data["inconclusive"][0]["rounds_needed"] == 18


def test_the_default_rounds_decide_past_one_stray_round(tiny_run, capsys, tmp_path):
    from diffbench.config.matrix import build_settings
    from diffbench.config.settings import RunSettings

    assert RunSettings().rounds == build_settings({"models": "tiny-sdxl"}).rounds == 6
    edit_base, edit_new = one_slow_round(RunSettings().rounds)
    base, new = copy_run(tiny_run, tmp_path / "base", edit_base), copy_run(tiny_run, tmp_path / "new", edit_new)
    code, out, _ = compare(capsys, base, new)
    assert code == 1 and f"REGRESSION {CASE} e2e:" in out and "(+200.0%, threshold 10%)" in out


def test_lower_its_beyond_noise_regresses(tiny_run, capsys, tmp_path):
    def fewer_its(records):
        records[0]["its"] *= 0.5
        records[0]["its_rounds"] = [value * 0.5 for value in records[0]["its_rounds"]]

    code, out, _ = compare(capsys, tiny_run.folder, copy_run(tiny_run, tmp_path / "its", fewer_its))
    assert code == 1 and f"REGRESSION {CASE} its:" in out and "-50.0%, threshold 10%" in out


@pytest.mark.parametrize(
    "metric, base_value, new_value, expected",
    [
        (
            "peak_mem_gib",
            10.0,
            11.5,
            "REGRESSION tiny-sdxl-t2i-128-eager peak_mem: 10.00 GiB -> 11.50 GiB (+15.0%, threshold 10%)",
        ),
        ("ssim", 1.0, 0.95, "REGRESSION tiny-sdxl-t2i-128-eager ssim: 1.0000 -> 0.9500 (-0.0500, threshold 0.02)"),
    ],
)
def test_memory_and_quality_use_plain_thresholds(tiny_run, capsys, tmp_path, metric, base_value, new_value, expected):
    def setter(value):
        return lambda records: records[0].update({metric: value})

    base = copy_run(tiny_run, tmp_path / "base", setter(base_value))
    code, out, _ = compare(capsys, base, copy_run(tiny_run, tmp_path / "new", setter(new_value)))
    assert code == 1 and expected in out


def test_a_metric_given_overrides_only_itself(tiny_run, capsys, tmp_path):
    def slow_and_blurry(records):
        slower(1.5)(records[0])
        records[0]["ssim"] = 0.95

    new = copy_run(tiny_run, tmp_path / "new", slow_and_blurry)
    code, out, _ = compare(capsys, tiny_run.folder, new, "--fail", "e2e:60%")
    assert code == 1 and "e2e:" not in "".join(line for line in out.splitlines() if "REGRESSION" in line)
    assert f"REGRESSION {CASE} ssim:" in out


def test_ok_to_failed_regresses_with_status_and_message(tiny_run, capsys, tmp_path):
    def failed(records):
        records[0].update(status="failed", message="SSIM 0.91 below the floor 0.98")

    code, out, _ = compare(capsys, tiny_run.folder, copy_run(tiny_run, tmp_path / "failed", failed))
    assert code == 1
    assert f"REGRESSION {CASE} status: ok -> failed: SSIM 0.91 below the floor 0.98" in out


def test_cases_in_one_run_only_are_listed_not_regressions(tiny_run, capsys, tmp_path):
    def extra_case(records):
        records.append(dict(records[0], case="tiny-sdxl-t2i-256-eager"))

    code, out, _ = compare(capsys, tiny_run.folder, copy_run(tiny_run, tmp_path / "more", extra_case))
    assert code == 0 and "only in NEW: tiny-sdxl-t2i-256-eager" in out and "1 only in NEW" in out
    code, out, _ = compare(capsys, tmp_path / "more", tiny_run.folder)
    assert code == 0 and "only in BASE: tiny-sdxl-t2i-256-eager" in out


def test_a_new_run_holding_none_of_the_base_cases_is_exit_2(tiny_run, capsys, tmp_path):
    def other_cases(records):
        records[:] = [dict(records[0], case="tiny-sdxl-t2i-256-eager"), dict(records[0], case="tiny-sdxl-t2i-64-eager")]

    code, out, err = compare(capsys, tiny_run.folder, copy_run(tiny_run, tmp_path / "lost", other_cases))
    assert code == 2 and out == ""
    assert f"no case of BASE (1 case(s), e.g. {CASE}) is in NEW" in err and "nothing to compare" in err


def test_corrupt_and_missing_files_exit_2_naming_them(tiny_run, capsys, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"benchmarks": [')
    code, out, err = compare(capsys, tiny_run.folder, corrupt)
    assert code == 2 and f"{corrupt} is not valid JSON" in err and "Traceback" not in out + err
    torn = copy_run(tiny_run, tmp_path / "torn")
    (torn / "results.jsonl").write_text("{oops\n" + (tiny_run.folder / "results.jsonl").read_text())
    code, _, err = compare(capsys, torn, tiny_run.folder)
    assert code == 2 and f"{torn / 'results.jsonl'} has a corrupt line" in err
    code, _, err = compare(capsys, tiny_run.folder, tmp_path / "nosuch.json", "--storage", str(tmp_path))
    assert code == 2 and "no run" in err and "nosuch.json" in err


def damaged(run: TinyRun, target: Path, damage: str) -> tuple[Path, str]:
    """A copy of the run damaged one way, and what the error must say about it."""
    if damage.startswith("benchmarks"):
        target.mkdir()
        body = {"benchmarks=5": 5, "benchmarks=[1, 2]": [1, 2]}[damage]
        (target / "b.json").write_text(json.dumps({"benchmarks": body}))
        expected = {
            "benchmarks=5": "is not a pytest-benchmark JSON file (no 'benchmarks' list)",
            "benchmarks=[1, 2]": "benchmark 1 is not a pytest-benchmark entry (a JSON object): '1'",
        }[damage]
        return target / "b.json", expected
    folder = copy_run(run, target)
    results = folder / "results.jsonl"
    good = results.read_bytes()
    results.write_bytes(
        {"binary": b"\xff\xfe\x00\x01" + good, "42": b"42\n" + good, "null": b"null\n" + good, "empty": b""}[damage]
    )
    expected = {
        "binary": "is not a results file: byte 0 is not UTF-8 text",
        "42": "line 1 is not a diffbench record (a JSON object with a case): '42'",
        "null": "line 1 is not a diffbench record",
        "empty": "holds no diffbench case record",
    }[damage]
    return folder, expected


@pytest.mark.parametrize("damage", ["binary", "42", "null", "empty", "benchmarks=5", "benchmarks=[1, 2]"])
def test_damaged_input_is_exit_2_for_compare_and_report(tiny_run, capsys, tmp_path, damage):
    bad, expected = damaged(tiny_run, tmp_path / "bad", damage)
    code, out, err = compare(capsys, tiny_run.folder, bad)
    assert code == 2 and expected in err and str(bad) in err and out == "", err
    code = main(["report", str(tiny_run.folder), str(bad), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and not (tmp_path / "report").exists(), err
    if bad.is_dir() and damage != "empty":  # `diffbench table` and `diffbench merge` read results.jsonl the same way
        assert main(["table", str(bad / "results.jsonl")]) == 2 and expected in capsys.readouterr().err
        assert main(["merge", str(bad), "--out", str(tmp_path / "merged")]) == 2 and expected in capsys.readouterr().err


def test_a_torn_last_line_is_left_out_with_a_warning(tiny_run, capsys, tmp_path):
    torn = copy_run(tiny_run, tmp_path / "torn")
    with open(torn / "results.jsonl", "a") as handle:
        handle.write('{"case": "tiny-sdxl-t2i-256-eag')  # a run killed while writing its second record
    code, out, err = compare(capsys, tiny_run.folder, torn)
    assert code == 0 and "no regression" in out
    assert f"warning: {torn / 'results.jsonl'}: its last line (line 2) is cut short" in err
    for command in (
        ["report", str(torn), "--out", str(tmp_path / "report")],
        ["table", str(torn / "results.jsonl")],
        ["merge", str(torn), "--out", str(tmp_path / "merged")],
    ):
        assert main(command) == 0
        assert f"diffbench {command[0]}: warning: " in capsys.readouterr().err


def test_non_numeric_metric_exits_2_naming_file_case_and_key(tiny_run, capsys, tmp_path):
    bad = copy_run(tiny_run, tmp_path / "bad", lambda records: records[0].update(e2e_s="fast"))
    code, _, err = compare(capsys, tiny_run.folder, bad)
    assert code == 2 and f"case {CASE!r} has a non-numeric e2e_s: 'fast'" in err and str(bad) in err


def test_a_case_on_another_stack_is_not_comparable_across_stacks_compares_same_stack_refuses(
    tiny_run, capsys, tmp_path
):
    other = copy_run(tiny_run, tmp_path / "h100", lambda records: slower(9)(records[0]))
    meta = json.loads((other / "run.json").read_text())
    meta["stack"].update(gpu="NVIDIA H100 80GB HBM3", driver="580.159.04")
    (other / "run.json").write_text(json.dumps(meta))
    code, out, err = compare(capsys, tiny_run.folder, other)  # 9x slower, on another GPU: not a regression
    assert code == 0 and "1 case(s) not comparable" in err and "REGRESS" not in out
    assert re.search(
        rf"^{CASE} +machine +.*not comparable \(different GPU \(None -> NVIDIA H100 80GB HBM3\), "
        r"different driver \(None -> 580\.159\.04\)\)$",
        out,
        flags=re.MULTILINE,
    ), out
    assert "1 not comparable (another machine or stack)" in out
    code, out, err = compare(capsys, tiny_run.folder, other, "--across-stacks")  # an A/B of two stacks
    assert code == 1 and "warning" in err and "gpu: None -> NVIDIA H100 80GB HBM3" in err
    assert "driver: None -> 580.159.04" in err and f"REGRESSION {CASE} e2e" in out
    code, out, err = compare(capsys, tiny_run.folder, other, "--same-stack")
    assert code == 2 and "--same-stack" in err and "gpu: None -> NVIDIA H100 80GB HBM3" in err and out == ""


@pytest.mark.parametrize(
    "value, complaint",
    [
        ("e2e:fast", "'fast' is not a number"),
        ("speed:10%", "unknown metric 'speed'"),
        ("e2e", "expected METRIC:AMOUNT"),
    ],
)
def test_bad_fail_option_is_a_usage_error_listing_metrics(tiny_run, capsys, value, complaint):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(tiny_run.folder), str(tiny_run.folder), "--fail", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and complaint in err
    assert "valid metrics: e2e, its, warmup, peak_mem, ssim, psnr" in err and "Traceback" not in err


def test_json_output_holds_the_regressions(tiny_run, capsys, tmp_path):
    new = copy_run(tiny_run, tmp_path / "slow", lambda records: slower(2.0)(records[0]))
    code, _, _ = compare(capsys, tiny_run.folder, new, "--json", str(tmp_path / "comparison.json"))
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert code == 1 and data["regressed"] is True
    (regression,) = data["regressions"]
    assert regression["case"] == CASE and regression["metric"] == "e2e" and regression["relative"] == pytest.approx(1.0)
    assert regression["noise_rule"] == "mann-whitney" and regression["p_value"] == pytest.approx(0.05)


def test_console_script_exit_code(tiny_run, tmp_path):
    new = copy_run(tiny_run, tmp_path / "slow", lambda records: slower(1.5)(records[0]))
    script = Path(sys.executable).parent / "diffbench"
    result = subprocess.run(
        [str(script), "compare", str(tiny_run.folder), str(new)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"REGRESSION {CASE} e2e:" in result.stdout and "Traceback" not in result.stderr


def test_thresholds_parse_percent_and_absolute():
    thresholds = parse_thresholds("e2e:5%, psnr:1.5")
    assert str(thresholds["e2e"]) == "5%" and thresholds["e2e"].relative and thresholds["e2e"].amount == 0.05
    assert str(thresholds["psnr"]) == "1.5" and not thresholds["psnr"].relative
    assert str(thresholds["warmup"]) == "25%" and str(thresholds["ssim"]) == "0.02"  # defaults kept
    with pytest.raises(OptionError, match="must be a finite number >= 0"):
        parse_thresholds("e2e:-5%")


def test_noise_rule_both_sides():
    base = [1.00, 1.01, 1.02]
    assert higher_beyond_noise(base, [1.20, 1.21, 1.22]).outside  # every round slower: p = 1/20
    assert not higher_beyond_noise(base, [1.00, 1.21, 1.22]).outside  # one round overlaps: p = 2/20
    # With 5 rounds a side, one overlapping round no longer hides a clear shift (Mann-Whitney) ...
    test = higher_beyond_noise([1.00, 1.01, 1.02, 1.03, 1.205], [1.20, 1.21, 1.22, 1.23, 1.24])
    assert test.outside and test.rule == "mann-whitney" and test.p_value == pytest.approx(2 / 252)
    # ... too few rounds for the test: complete separation decides; no rounds: the threshold alone.
    assert higher_beyond_noise([1.0, 1.1], [1.2, 1.3]).rule == "separation"
    assert not higher_beyond_noise([1.0, 1.25], [1.2, 1.3]).outside
    assert higher_beyond_noise(None, [1.2]).rule == "no rounds"
    assert p_value_higher(list(range(30)), [x + 100 for x in range(30)]) < 1e-9  # normal approximation


def test_psnr_above_60_db_and_tiny_warmup_changes_do_not_count():
    from diffbench.results.compare import compare_metric
    from diffbench.results.thresholds import metrics, parse_thresholds

    METRICS, thresholds = metrics(), parse_thresholds("")
    identical = compare_metric("c", METRICS["psnr"], {"psnr": 73.3}, {"psnr": 68.1}, thresholds["psnr"])
    assert identical.verdict == "same"
    visible = compare_metric("c", METRICS["psnr"], {"psnr": 45.0}, {"psnr": 40.0}, thresholds["psnr"])
    assert visible.verdict == "REGRESSED"
    jitter = compare_metric("c", METRICS["warmup"], {"warmup_s": 1.2}, {"warmup_s": 2.0}, thresholds["warmup"])
    assert jitter.verdict == "same"  # +67% but under a second
    slower = compare_metric("c", METRICS["warmup"], {"warmup_s": 100.0}, {"warmup_s": 140.0}, thresholds["warmup"])
    assert slower.verdict == "REGRESSED"


def test_a_cold_compile_against_a_warm_one_is_not_comparable(tiny_run, capsys, tmp_path):
    """Issue 15: 68 s warm against 106 s cold was reported REGRESSED; the cache states now say why not."""

    def warmup(seconds, cache):
        return lambda records: records[0].update(warmup_s=seconds, compile_cache=cache)

    base = copy_run(tiny_run, tmp_path / "warm", warmup(68.0, "warm"))
    code, out, _ = compare(capsys, base, copy_run(tiny_run, tmp_path / "cold", warmup(106.0, "cold")))
    assert code == 0 and "REGRESSION" not in out
    assert "not comparable (compile cache warm in BASE, cold in NEW)" in out
    code, out, _ = compare(capsys, base, copy_run(tiny_run, tmp_path / "cold-again", warmup(106.0, "warm")))
    assert code == 1 and f"REGRESSION {CASE} warmup:" in out  # the same cache state: a real regression


def test_energy_per_image_is_gated(tiny_run, capsys, tmp_path):
    def energy(joules):
        return lambda records: records[0].update(energy_per_image_j=joules)

    base = copy_run(tiny_run, tmp_path / "base", energy(300.0))
    code, out, _ = compare(capsys, base, copy_run(tiny_run, tmp_path / "new", energy(400.0)))
    assert code == 1 and f"REGRESSION {CASE} energy: 300.0 J -> 400.0 J (+33.3%, threshold 15%)" in out
