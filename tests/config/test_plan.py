"""`--plan`: selected cases and their device time estimated from saved runs, nothing run."""

import json

from test_cli_pytest import run_pytest

from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.config.plan import estimate, format_plan, latest_records


def save_run(folder, run_id, records, gpu="NVIDIA H100 80GB HBM3"):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": run_id, "stack": {"gpu": gpu}}))
    lines = [json.dumps({"run_id": run_id, "status": "ok", "device": "cuda", **record}) for record in records]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")


def test_estimate_adds_load_once_per_model_warmup_and_every_call(tmp_path):
    save_run(
        tmp_path / "old",
        "20260101T000000Z",
        [{"case": "sdxl-t2i-1024-eager", "e2e_s": 9.0, "warmup_s": 1.0, "load_s": 5.0}],
    )
    save_run(
        tmp_path / "new",
        "20260201T000000Z",
        [
            {"case": "sdxl-t2i-1024-eager", "e2e_s": 1.0, "warmup_s": 2.0, "load_s": 10.0},
            {"case": "sdxl-t2i-1024-compile", "e2e_s": 0.5, "warmup_s": 100.0, "load_s": 10.0},
        ],
    )
    save_run(tmp_path / "cpu", "20260301T000000Z", [{"case": "sdxl-t2i-1024-eager", "e2e_s": 99.0, "device": "cpu"}])
    history = latest_records([tmp_path], "cuda")
    assert history["sdxl-t2i-1024-eager"][0]["e2e_s"] == 1.0  # newest GPU run, not the CPU one
    settings = build_settings({"models": "sdxl", "tasks": "t2i", "resolutions": "1024,512", "rounds": 5, "prompts": 3})
    estimates = {item.case.id: item for item in estimate(expand_matrix(settings), settings, history)}
    # load + warmup + (5 + 3 - 1) calls + the host-sync count on CUDA (1.5 calls)
    assert estimates["sdxl-t2i-1024-eager"].seconds == 10.0 + 2.0 + 8.5 * 1.0
    # the model is already loaded; eager's 5 paired rounds and one warm call beside it
    assert estimates["sdxl-t2i-1024-compile"].seconds == 100.0 + 8.5 * 0.5 + 6 * 1.0
    unpaired = build_settings(
        {"models": "sdxl", "tasks": "t2i", "resolutions": "1024", "rounds": 5, "prompts": 3, "pairing": "off"}
    )
    (_, compiled) = estimate(expand_matrix(unpaired), unpaired, history)
    assert compiled.seconds == 100.0 + 8.5 * 0.5
    assert estimates["sdxl-t2i-512-eager"].seconds is None
    summary = format_plan(list(estimates.values()))[-1]
    assert summary == "4 cases, about 2.2 min for the 2 with history; 2 never measured (not counted)"


def test_plan_option_lists_cases_and_runs_nothing(tmp_path):
    save_run(
        tmp_path / "history" / "run",
        "20260201T000000Z",
        [{"case": "tiny-sdxl-t2i-128-eager", "e2e_s": 0.5, "warmup_s": 1.0, "load_s": 2.0, "device": "cpu"}],
    )
    result = run_pytest(
        "-k",
        "tiny-sdxl-t2i",
        "--plan",
        "--plan-history",
        str(tmp_path / "history"),
        "--results-dir",
        str(tmp_path / "runs"),
        "--rounds",
        "2",
        "--prompts",
        "1",
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "tiny-sdxl-t2i-128-eager                    4.0s  20260201T000000Z on NVIDIA H100 80GB HBM3" in result.stdout
    assert "tiny-sdxl-t2i-128-compile                     ?  no saved run of this case" in result.stdout
    assert not (tmp_path / "runs").exists()  # nothing ran
