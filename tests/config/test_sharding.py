"""`--shard INDEX/COUNT` and `diffbench merge`: shards partition the selected matrix by reference group,
contiguous and balanced; bad values are usage errors; merged runs hold every case once, or say which
case two runs share; merged shards say which are missing or failed, and keep each case's machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffbench.case import Case, Resolution
from diffbench.cli import main
from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError
from diffbench.results.history import load_run
from diffbench.results.records import RunFolder, new_record
from diffbench.results.shard import Shard, assign_groups, parse_shard, reference_groups, shard_of_cases, split_items

ROOT = Path(__file__).resolve().parents[2]


def full_matrix() -> list[Case]:
    return expand_matrix(build_settings({}))


def uneven_matrix() -> list[Case]:
    """Groups of 1 to 4 cases, as `-k` leaves them: cost differs from group to group."""
    backends = ("eager", "compile", "nexfort", "deepcache")
    cases = []
    for number, model in enumerate(("a", "b", "c", "d", "e", "f", "g")):
        for size in (512, 1024):
            width = 1 + (number + size // 512) % len(backends)
            cases += [Case(model, "t2i", Resolution(size, size), backend) for backend in backends[:width]]
    return cases


def shards_of(cases: list[Case], count: int) -> list[list[Case]]:
    """What each of `count` shard processes keeps, computed as each process does (items = cases)."""
    return [split_items(cases, Shard(index, count), lambda item: item)[0] for index in range(count)]


@pytest.mark.parametrize("matrix", [full_matrix, uneven_matrix])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_cases_and_keep_each_reference_group_together(matrix, count):
    cases = matrix()
    shards = shards_of(cases, count)
    kept = [case for shard in shards for case in shard]
    assert sorted(case.id for case in kept) == sorted(case.id for case in cases)  # union, no case twice
    owner = {}
    for index, shard in enumerate(shards):
        for case in shard:
            assert owner.setdefault(case.reference_key, index) == index  # a group lives in one shard
    for shard in shards:  # the eager reference runs first, beside the backends compared with it
        for group in reference_groups(shard):
            assert group[0].backend == "eager" or all(case.backend != "eager" for case in group)


@pytest.mark.parametrize("matrix", [full_matrix, uneven_matrix])
@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_shards_are_balanced_within_one_group_and_contiguous(matrix, count):
    cases = matrix()
    groups = reference_groups(cases)
    largest = max(len(group) for group in groups)
    sizes = [len(shard) for shard in shards_of(cases, count)]
    for size in sizes:
        assert abs(size - len(cases) / count) <= largest, sizes
    if len({len(group) for group in groups}) == 1 and len(groups) >= count:
        assert min(sizes) > 0  # equal groups, enough of them: no shard idles
    owners = [shard_of_cases(cases, count)[case.id] for case in cases]
    assert owners == sorted(owners)  # contiguous in matrix order: each model in as few shards as possible


def test_a_model_is_built_in_few_shards():
    cases = full_matrix()
    for count in (2, 4, 8):
        owner = shard_of_cases(cases, count)
        pairs = {(case.model, owner[case.id]) for case in cases}
        assert len(pairs) <= len({case.model for case in cases}) + count - 1


def test_assignment_follows_the_middle_of_each_group():
    assert assign_groups([1, 1, 1, 1], 3) == [0, 1, 1, 2]
    assert assign_groups([6, 1, 1, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1, 1, 1]
    assert assign_groups([2, 2], 4) == [1, 3]  # fewer groups than shards: some shards run nothing
    assert assign_groups([], 2) == []


def test_items_that_are_not_cases_run_in_shard_zero():
    items = ["not a case", *full_matrix()[:4]]
    case_of = lambda item: item if isinstance(item, Case) else None  # noqa: E731
    first, second = (split_items(items, Shard(index, 2), case_of) for index in range(2))
    assert "not a case" in first[0] and "not a case" in second[1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("2/2", "INDEX must be below COUNT (shards are numbered from 0); valid: 0/2, 1/2"),
        ("5/3", "INDEX must be below COUNT"),
        ("0/0", "COUNT must be at least 1"),
        ("1", "write INDEX/COUNT"),
        ("-1/2", "write INDEX/COUNT"),
        ("a/b", "write INDEX/COUNT"),
        ("", "write INDEX/COUNT"),
    ],
)
def test_bad_shard_values_are_option_errors(text, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_settings({"shard": text})


def test_shard_values():
    assert build_settings({"shard": " 1 / 2 "}).shard == Shard(1, 2)
    assert build_settings({}).shard is None
    assert parse_shard("0/1") == Shard(0, 1) and str(Shard(3, 8)) == "3/8"


def test_a_bad_shard_is_a_usage_error_before_any_work():
    # (Shards of a real run, -k applied before the split, are run and merged in test_nightly.py.)
    command = [sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", "--shard", "2/2"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 4  # pytest's usage error
    assert "--shard '2/2': INDEX must be below COUNT" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def make_run(
    results_dir: Path, cases: dict[str, float], stack_gpu: str | None = None, shard: str | None = None
) -> Path:
    """A run folder with an ok record and an image per case (its e2e_s given), like the runner writes."""
    folder = RunFolder(results_dir)
    folder.write_meta(
        {
            "run_id": folder.run_id,
            "started": folder.run_id,
            "commit": "abc",
            "stack": {"gpu": stack_gpu, "torch": "2.13.0"},
            "command": ["pytest"],
            "settings": {"shard": shard},
        }
    )
    for case, e2e in cases.items():
        image = folder.save_image(case, np.full((8, 8, 3), e2e % 1.0))
        folder.append(
            new_record(case=case, status="ok", e2e_s=e2e, e2e_rounds_s=[e2e], image=image, run_id=folder.run_id)
        )
    return folder.path


def test_merge_writes_one_run_with_every_case_images_and_parts(tmp_path, capsys):
    first = make_run(tmp_path / "a", {"m-t2i-512-eager": 1.0, "m-t2i-512-compile": 0.5})
    second = make_run(tmp_path / "b", {"m-i2i-512-eager": 2.0}, stack_gpu="other")
    out = tmp_path / "merged" / "night"
    assert main(["merge", str(first), str(second / "results.jsonl"), "--out", str(out)]) == 0
    run = load_run(out)
    assert list(run.records) == ["m-t2i-512-eager", "m-t2i-512-compile", "m-i2i-512-eager"]
    assert run.run_id == "night" and all(run.image_path(case) for case in run.records)
    meta = json.loads((out / "run.json").read_text())
    assert [part["cases"] for part in meta["parts"]] == [["m-t2i-512-eager", "m-t2i-512-compile"], ["m-i2i-512-eager"]]
    assert meta["parts"][1]["stack"]["gpu"] == "other" and meta["stack_differences"] == ["gpu: None -> other"]
    assert "stacks differ" in capsys.readouterr().err
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]  # written via os.replace
    assert main(["compare", str(out), str(out)]) == 0  # compare reads it like any run


def test_a_case_in_two_runs_is_an_error_unless_prefer_last(tmp_path, capsys):
    first = make_run(tmp_path / "a", {"m-t2i-512-eager": 1.0, "m-t2i-512-compile": 0.5})
    second = make_run(tmp_path / "b", {"m-t2i-512-compile": 0.25})
    out = tmp_path / "merged"
    assert main(["merge", str(first), str(second), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"1 case(s) recorded in more than one run: m-t2i-512-compile (in {first} and {second})" in error
    assert "--prefer-last" in error and not (out / "results.jsonl").exists()
    assert main(["merge", str(first), str(second), "--out", str(out), "--prefer-last"]) == 0
    assert "m-t2i-512-compile: kept the record of the run given last" in capsys.readouterr().err
    run = load_run(out)
    assert run.records["m-t2i-512-compile"]["e2e_s"] == 0.25 and len(run.records) == 2
    assert main(["merge", str(first), "--out", str(out)]) == 2  # never over an existing run
    assert "already holds a run" in capsys.readouterr().err


def test_merge_of_an_unreadable_run_is_exit_2(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "diffbench merge: no run" in capsys.readouterr().err


def make_shard(
    root: Path, index: int, count: int, exit_status: int | None, cases: dict[str, float], stack_gpu: str = "NVIDIA H200"
) -> Path:
    """A shard's folder as .ci/shard-run leaves it: its run folder (if it has cases) and shard.json (unless
    None: a shard killed before it could write one)."""
    folder = root / "shards" / str(index)
    folder.mkdir(parents=True)
    if cases:
        make_run(folder, cases, stack_gpu, shard=f"{index}/{count}")
    if exit_status is not None:
        (folder / "shard.json").write_text(json.dumps({"shard": f"{index}/{count}", "exit_status": exit_status}))
    return folder


def test_merged_shards_say_which_are_missing_failed_or_empty_and_exit_1(tmp_path, capsys):
    shards = [
        make_shard(tmp_path, 0, 5, 0, {"a-t2i-512-eager": 1.0}),
        make_shard(tmp_path, 1, 5, 1, {"b-t2i-512-eager": 1.0}),  # a case failed
        make_shard(tmp_path, 2, 5, None, {"c-t2i-512-eager": 1.0}),  # killed: no shard.json
        make_shard(tmp_path, 4, 5, 5, {}),
    ]  # no case to run; shard 3 never arrived
    out = tmp_path / "night"
    assert main(["merge", *map(str, shards), "--shards", "5", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    meta = json.loads((out / "run.json").read_text())
    assert meta["shards"] == {
        "count": 5,
        "merged": [0, 1, 2],
        "empty": [4],
        "missing": [3],
        "complete": False,
        "failed": [{"index": 1, "exit_status": 1}, {"index": 2, "exit_status": None}],
    }
    assert [part["exit_status"] for part in meta["parts"]] == [0, 1, None, 5]
    assert "SHARD MISSING 3/5: no run or shard folder of it was merged" in printed
    assert "SHARD FAILED 1/5: pytest exit status 1 (a case failed); the cases it recorded are merged" in printed
    assert "SHARD FAILED 2/5: no exit status: it was stopped before it ended" in printed
    assert set(load_run(out).records) == {"a-t2i-512-eager", "b-t2i-512-eager", "c-t2i-512-eager"}
    assert main(["compare", str(out), str(out)]) == 1  # the gate fails on it: an incomplete NEW run
    assert "SHARD MISSING 3/5" in capsys.readouterr().out


def test_the_shard_count_is_taken_from_the_runs_and_a_wrong_folder_is_named(tmp_path, capsys):
    first = make_shard(tmp_path, 0, 2, 0, {"a-t2i-512-eager": 1.0})
    assert main(["merge", str(first), "--out", str(tmp_path / "one")]) == 1  # 0/2: so 1/2 is missing
    assert "SHARD MISSING 1/2" in capsys.readouterr().out
    second = make_shard(tmp_path, 1, 2, 0, {"b-t2i-512-eager": 1.0})
    assert main(["merge", str(first), str(second), "--out", str(tmp_path / "two")]) == 0
    assert json.loads((tmp_path / "two" / "run.json").read_text())["shards"]["complete"] is True
    (second / "shard.json").write_text(json.dumps({"shard": "0/2", "exit_status": 0}))
    assert main(["merge", str(first), str(second), "--out", str(tmp_path / "three")]) == 2
    error = capsys.readouterr().err
    assert "ran shard 1/2, but" in error and "shard.json says 0/2: a shard's folder must hold its own run" in error
    (second / "shard.json").write_text("{}")
    assert main(["merge", str(second), "--out", str(tmp_path / "four")]) == 2
    assert "is not a shard's record" in capsys.readouterr().err


def test_a_merge_of_merged_runs_keeps_each_cases_machine(tmp_path, capsys):
    h200 = make_shard(tmp_path / "x", 0, 2, 0, {"a-t2i-512-eager": 1.0}, stack_gpu="NVIDIA H200")
    h100 = make_shard(tmp_path / "y", 1, 2, 0, {"b-t2i-512-eager": 2.0}, stack_gpu="NVIDIA H100")
    assert main(["merge", str(h200), "--shards", "2", "--out", str(tmp_path / "half")]) == 1
    assert main(["merge", str(tmp_path / "half"), str(h100), "--out", str(tmp_path / "whole")]) == 0
    run = load_run(tmp_path / "whole")
    assert (
        run.stack_of("a-t2i-512-eager")["gpu"] == "NVIDIA H200"
        and run.stack_of("b-t2i-512-eager")["gpu"] == "NVIDIA H100"
    )
    assert run.shards["complete"] is True and [part["shard"] for part in run.parts] == ["0/2", "1/2"]
    assert "stacks differ" in capsys.readouterr().err
