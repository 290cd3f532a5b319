"""results/schema.py is the one declaration of the record's fields: every reader iterates it, so a metric added
there is in the records' tables, the report's group table and `diffbench compare`, and statuses are constants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffbench.case import Status, status_name
from diffbench.cli import main
from diffbench.report.groups import Entry, group_table
from diffbench.results import schema
from diffbench.results.field import Field, Gate
from diffbench.results.history import load_run
from diffbench.results.records import RECORD_KEYS, new_record
from diffbench.results.summary import markdown_table
from diffbench.results.thresholds import default_fail, metrics, parse_thresholds

CASE = "tiny-sdxl-t2i-128-eager"
WIDGETS = Field(
    "widgets_per_s",
    "w/s",
    "widgets/s",
    "widgets per second (a metric made up for this test)",
    1,
    table="widgets/s",
    report="widgets per s",
    gate=Gate("widgets", higher_is_better=True, fail="50%"),
)


@pytest.fixture
def with_widgets(monkeypatch):
    """The schema with one more entry: nothing else is patched."""
    monkeypatch.setattr(schema, "FIELDS", (*schema.FIELDS, WIDGETS))


def run_folder(folder: Path, widgets: float) -> Path:
    record = {**new_record(model="tiny-sdxl", task="t2i", resolution="128x128", backend="eager"), "case": CASE}
    record.update(status=Status.OK, steps=4, e2e_s=1.0, widgets_per_s=widgets)
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text(json.dumps(record) + "\n")
    return folder


def test_a_metric_added_to_the_schema_is_in_the_table_the_report_and_compare(with_widgets, tmp_path, capsys):
    base, new = run_folder(tmp_path / "base", 10.0), run_folder(tmp_path / "new", 8.0)
    table = markdown_table(load_run(base).records.values())
    assert table.splitlines()[0].endswith("| speedup | widgets/s |") and table.splitlines()[2].endswith("| 10.0 |")

    run = load_run(new)
    report = group_table([Entry(0, "new", run, run.records[CASE])], False, set())
    assert report.header[-2:] == ["widgets per s", "status"] and report.rows[0][-2] == "8.0"

    assert "widgets" in metrics() and "widgets:50%" in default_fail()
    assert str(parse_thresholds("widgets:10%")["widgets"]) == "10%"
    assert main(["compare", str(base), str(new)]) == 0  # -20%: within the default 50%
    assert "widgets" in capsys.readouterr().out
    assert main(["compare", str(base), str(new), "--fail", "widgets:10%"]) == 1
    out = capsys.readouterr().out
    assert f"REGRESSION {CASE} widgets: 10.0 w/s -> 8.0 w/s (-20.0%, threshold 10%)" in out


def test_the_readers_keep_their_columns_and_order():
    assert RECORD_KEYS[:3] == ("model", "task", "resolution") and RECORD_KEYS[-1] == "image"
    assert [field.table for field in schema.table_fields()] == [
        "warmup s",
        "E2E s med (range)",
        "it/s",
        "peak GiB",
        "SSIM",
        "PSNR dB",
        "speedup",
    ]
    assert list(metrics()) == ["e2e", "its", "warmup", "peak_mem", "ssim", "psnr", "energy"]
    assert parse_thresholds("") == parse_thresholds(
        "e2e:10%,its:10%,peak_mem:10%,warmup:25%,ssim:0.02,psnr:2,energy:15%"
    )


def test_statuses_are_their_strings_on_disk_and_in_tables():
    assert (
        json.dumps({"status": Status.OOM}) == '{"status": "oom"}'
        and Status.OK == "ok"
        and f"{Status.FAILED}" == "failed"
    )
    assert [status_name(status) for status in Status] == ["ok", "skipped", "failed", "OOM", "interrupted"]
    assert status_name("unknown") == "unknown"
