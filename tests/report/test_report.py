"""`diffbench report` on two real tiny CPU runs: tables hold the records' numbers, charts and image grids
hold the right pixels, a trend appears for cases in both runs, and unreadable input is exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffbench.cli import main
from diffbench.report.grid import MISSING_FILL, fit_image, image_box
from diffbench.report.groups import run_labels
from diffbench.results.cells import speedup_text
from diffbench.results.history import load_run

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 256
TINY = "tiny-sdxl-t2i-128"
SKIPPED = "sdxl-t2i-512-eager"  # a full-size case: skipped on a machine without a CUDA GPU
RUN_ARGUMENTS = ("--rounds", "2", "--prompts", "1", "--steps", "2", "-p", "no:cacheprovider", "-q")


def _bench(results_dir: Path, *selection: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks/",
        *selection,
        *RUN_ARGUMENTS,
        "--results-dir",
        str(results_dir),
    ]
    # Two runs side by side on 2 cores: one thread each. No GPU and no hub, so the full-size case is
    # skipped on every machine, never downloaded or run.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory) -> list[Path]:
    """Two tiny runs: eager, compile (dynamo only) and a skipped full-size case; then eager alone."""
    base = tmp_path_factory.mktemp("runs")
    first = _bench(base / "first", "-k", f"{TINY} or {SKIPPED}", "--compiler-config", '{"backend": "eager"}')
    second = _bench(base / "second", "-k", TINY, "--backends", "eager")
    for process in (first, second):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
    return [next((base / name).iterdir()) for name in ("first", "second")]


@pytest.fixture(scope="module")
def report(run_folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code = main(
        ["report", *map(str, run_folders), "--out", str(out), "--title", "tiny runs", "--image-size", str(IMAGE_SIZE)]
    )
    assert code == 0
    return out


def _cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each `## heading`'s first table as rows of {column: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and heading not in tables and lines[index + 1].startswith("|---"):
            header = _cells(line)
            rows = []
            for row_line in lines[index + 2 :]:
                if not row_line.startswith("|"):
                    break
                rows.append(dict(zip(header, _cells(row_line))))
            tables[heading] = rows
    return tables


def expected_cells(record: dict) -> dict[str, str]:
    """A record's values as the report must show them."""

    def fixed(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    e2e = f"{record['e2e_s']:.3f} ({record['e2e_min_s']:.3f}-{record['e2e_max_s']:.3f})" if record["e2e_s"] else "-"
    return {
        "warmup s": fixed(record["warmup_s"], 2),
        "E2E s median (min-max)": e2e,
        "it/s": fixed(record["its"], 2),
        "peak mem GiB": fixed(record["peak_mem_gib"], 2),
        "SSIM min": fixed(record["ssim"], 4),
        "PSNR min dB": fixed(record["psnr"], 1),
        "speedup vs eager": speedup_text(record),
    }


def test_tables_hold_every_records_measured_numbers(run_folders, report):
    runs = [load_run(folder) for folder in run_folders]
    tables = markdown_tables((report / "report.md").read_text())
    checked = 0
    for run, label in zip(runs, run_labels(runs)):
        for record in run.records.values():
            heading = f"{record['model']} {record['task']} {record['resolution']}"
            (row,) = [row for row in tables[heading] if row["backend"] == record["backend"] and row["run"] == label]
            assert {column: row[column] for column in expected_cells(record)} == expected_cells(record)
            checked += record["status"] == "ok"
    assert checked == 3  # eager and compile of the first run, eager of the second


def test_a_skipped_case_shows_its_reason(run_folders, report):
    skipped = load_run(run_folders[0]).records[SKIPPED]
    assert skipped["status"] == "skipped" and "GPU" in skipped["message"]
    (row,) = markdown_tables((report / "report.md").read_text())["sdxl t2i 512x512"]
    assert row["status"] == f"skipped: {skipped['message']}"


def test_charts_are_valid_pngs_and_linked(report):
    markdown, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    for name in ("speedup.png", "trend.png", "grid-tiny-sdxl-t2i-128x128.png", "grid-sdxl-t2i-512x512.png"):
        with Image.open(report / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
        assert f"]({name})" in markdown and f'src="{name}"' in page
    assert not (report / "memory.png").exists()  # a CPU run has no CUDA peak memory: said, not drawn
    assert "No peak-memory chart" in markdown


def test_grid_cells_hold_each_cases_own_output(run_folders, report):
    grid = np.asarray(Image.open(report / "grid-tiny-sdxl-t2i-128x128.png").convert("RGB"), dtype=np.int16)
    places = {(0, 0): (run_folders[0], "eager"), (0, 1): (run_folders[0], "compile"), (1, 0): (run_folders[1], "eager")}
    for (row, column), (folder, backend) in places.items():
        with Image.open(folder / "images" / f"{TINY}-{backend}.png") as output:
            expected = np.asarray(fit_image(output, IMAGE_SIZE), dtype=np.int16)
        left, top, right, bottom = image_box(row, column, (expected.shape[1], expected.shape[0]), IMAGE_SIZE)
        cell = grid[top:bottom, left:right]
        assert expected.std() > 5  # a real picture, not a flat fill that anything would match
        assert np.abs(cell - expected).mean() < 1.0, (row, column)
    left, top, right, bottom = image_box(1, 1, (IMAGE_SIZE, IMAGE_SIZE), IMAGE_SIZE)  # compile: not in run 2
    assert tuple(grid[top + 5, left + 5]) == MISSING_FILL


def test_two_runs_give_a_trend_of_the_shared_cases(run_folders, report):
    runs = [load_run(folder) for folder in run_folders]
    labels = run_labels(runs)
    (row,) = markdown_tables((report / "report.md").read_text())["Trend over runs"]
    assert row["case"] == f"{TINY}-eager"
    assert [row[label] for label in labels] == [f"{run.records[f'{TINY}-eager']['e2e_s']:.3f}" for run in runs]


def test_cases_not_ok_in_a_run_are_named_in_the_trend(run_folders, tmp_path):
    """Two runs of the main job on a CPU: the full-size case skipped in both, the tiny one failed in one."""
    second = tmp_path / "second"
    shutil.copytree(run_folders[0], second)
    results = second / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for record in records:
        if record["case"] == f"{TINY}-compile":
            record.update(status="failed", message="quality gate: SSIM 0.5 below 0.98")
    results.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "out"
    assert main(["report", str(run_folders[0]), str(second), "--out", str(out)]) == 0
    rows = {
        row["case"]: list(row.values()) for row in markdown_tables((out / "report.md").read_text())["Trend over runs"]
    }
    assert rows[SKIPPED][1:3] == ["skipped", "skipped"]
    assert rows[f"{TINY}-compile"][2] == "failed" and rows[f"{TINY}-eager"][2] != "-"


def test_a_report_that_fails_half_way_leaves_no_half_report(run_folders, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.txt").write_text("kept")  # the nightly writes beside the report

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("diffbench.report.trend.trend_chart", full_disk)  # after the grids and charts are drawn
    assert main(["report", *map(str, run_folders), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == ["compare.txt"]


def test_a_missing_image_is_reported_not_fatal(run_folders, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folders[1], folder)
    (folder / "images" / f"{TINY}-eager.png").unlink()
    assert main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert f"Image not available for {TINY}-eager" in (tmp_path / "out" / "report.md").read_text()
    grid = Image.open(tmp_path / "out" / "grid-tiny-sdxl-t2i-128x128.png").convert("RGB")
    left, top, _, _ = image_box(0, 0, (256, 256), 256)
    assert grid.getpixel((left + 5, top + 5)) == MISSING_FILL


def test_a_corrupt_results_file_is_exit_2_naming_it(run_folders, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run_folders[1], folder)
    results = folder / "results.jsonl"
    results.write_text("{not json\n" + results.read_text())
    assert main(["report", str(folder), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("diffbench report: ") and str(results) in error and "Traceback" not in error
    assert not (tmp_path / "out" / "report.md").exists()


def test_a_warm_cache_warmup_gets_its_column_when_recorded(run_folders, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folders[0], folder)
    results = folder / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for record in records:
        if record["case"] == f"{TINY}-compile":
            record["warmup_cached_s"] = 1.234
    results.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    rows = markdown_tables((tmp_path / "out" / "report.md").read_text())["tiny-sdxl t2i 128x128"]
    assert [row["warmup, warm cache s"] for row in rows] == ["-", "1.23"]


def test_lora_cost_and_control_image_are_shown_with_their_group(run_folders, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folders[0], folder)
    results = folder / "results.jsonl"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    for record in [r for r in records if r["case"].startswith(TINY)]:  # as LoRA and ControlNet cases record them
        record.update(
            lora_load_s=1.25,
            lora_memory_gib=0.173,
            lora_layers=560,
            lora_fuse_s=0.119 if record["backend"] == "compile" else None,
            controlnet="random",
            controlnet_load_s=0.165,
            control_image="images/control.png",
        )
    results.write_text("".join(json.dumps(record) + "\n" for record in records))
    Image.new("RGB", (8, 8), (255, 255, 255)).save(folder / "images" / "control.png")
    assert main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| backend | LoRA load s"))
    header = _cells(lines[start])
    rows = [dict(zip(header, _cells(line))) for line in lines[start + 2 : start + 4]]
    assert [(r["backend"], r["LoRA load s"], r["fuse s"], r["layers with the adapter"]) for r in rows] == [
        ("eager", "1.250", "-", "560"),
        ("compile", "1.250", "0.119", "560"),
    ]
    assert "ControlNet: random, loaded in 0.165 s." in text
    assert "](control-tiny-sdxl-t2i-128x128.png)" in text
    assert Image.open(tmp_path / "out" / "control-tiny-sdxl-t2i-128x128.png").size == (8, 8)


def test_files_are_replaced_whole_or_not_at_all(tmp_path):
    from diffbench.results.records import atomic_path, write_text_atomically

    target = tmp_path / "report.md"
    write_text_atomically(target, "old report")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half a new rep")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "old report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    write_text_atomically(target, "new report")
    assert target.read_text() == "new report"


def test_image_path_finds_the_jpeg_copy_of_a_committed_run(tmp_path):
    from diffbench.results.history import Run

    (tmp_path / "images").mkdir()
    run = Run(
        tmp_path / "results.jsonl",
        "r1",
        {"a": {"case": "a", "image": "images/a.png"}, "b": {"case": "b", "image": "images/b.png"}},
        folder=tmp_path,
    )
    (tmp_path / "images" / "a.jpg").write_bytes(b"jpeg")
    assert run.image_path("a") == tmp_path / "images" / "a.jpg"
    assert run.image_path("b") is None  # neither file: the grid says so
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    assert run.image_path("a") == tmp_path / "images" / "a.png"  # the original wins


def test_the_group_table_shows_achieved_tflops_and_mfu_when_recorded():
    from diffbench.results.cells import roofline_text

    assert roofline_text({"denoiser_tflops": 281.4, "mfu": 0.386}) == "281 (39%)"
    assert roofline_text({"denoiser_tflops": 8.0, "mfu": None}) == "8 (-)"
    assert roofline_text({}) == "-"
    assert roofline_text({"denoiser_tflops": 60.0, "mfu": 0.08, "bound": "launch-bound"}) == "60 (8%), launch-bound"


def test_a_trend_renders_every_status_a_case_can_end_in(tmp_path):
    """Unit-level guard of the trend's status cells (a NameError here once failed every report whose trend
    held a case that was not ok in one run): no benchmark run needed, every status once."""
    from diffbench.report.trend import trend_section
    from diffbench.results.history import Run

    def record(status, e2e_s=None):
        return {
            "case": "m-t2i-64x64-eager",
            "model": "m",
            "task": "t2i",
            "resolution": "64x64",
            "backend": "eager",
            "status": status,
            "e2e_s": e2e_s,
            "message": "why",
        }

    statuses = ["ok", "failed", "oom", "skipped", "interrupted"]
    runs = [
        Run(
            Path(f"run{index}"),
            f"run{index}",
            {"m-t2i-64x64-eager": record(status, 1.0 if status == "ok" else None)},
            label=f"r{index}",
        )
        for index, status in enumerate(statuses)
    ]
    blocks = trend_section(runs, [run.label for run in runs], tmp_path, {"eager": "#000000"})
    (table,) = [block for block in blocks if hasattr(block, "rows")]
    assert table.rows == [["m-t2i-64x64-eager", "1.000", "failed", "OOM", "skipped", "interrupted", "-"]]
