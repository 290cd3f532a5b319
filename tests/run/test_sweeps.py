"""--steps-sweep, --resolution-sweep and --batch-sweep on tiny models, with what torch really does."""

import pytest
import torch
from helpers import RecordingBenchmark, make_session

from diffbench.backends.base import Backend, register
from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError

EAGER_DYNAMO = '{"backend": "eager"}'


def test_steps_sweep_fits_a_line_through_the_medians(tmp_path):
    session = make_session(
        tmp_path, backends="eager", tasks="t2i", resolutions="64", steps=2, prompts=1, rounds=2, steps_sweep="1,3,6"
    )
    (record,) = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    assert [point["steps"] for point in record["steps_sweep"]] == [1, 3, 6]
    assert all(len(point["e2e_rounds_s"]) == 2 for point in record["steps_sweep"])
    assert record["per_step_s"] > 0 and record["fit_points"] == 3 and record["fit_r_squared"] <= 1.0
    assert "steps_plot" not in record and not (session.run_folder.path / "plots").exists()  # the report draws it


def test_resolution_sweep_counts_the_recompiles_of_a_static_and_a_dynamic_compile(tmp_path):
    """What torch 2.13 does, from dynamo's counters per size: the default compile specializes on the first
    size, then recompiles the UNet and the VAE decoder once with symbolic sizes and reuses them; with
    dynamic=True the UNet never recompiles, but the VAE decoder still does once, on a size guard a
    convolution sets (seen with TORCH_LOGS=recompiles)."""
    torch._dynamo.reset()
    session = make_session(
        tmp_path,
        backends="compile,compile-dynamic",
        tasks="t2i",
        resolutions="64",
        steps=2,
        prompts=1,
        rounds=1,
        compiler_config=EAGER_DYNAMO,
        resolution_sweep="64,96,128",
    )
    static, dynamic = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    assert [p["graphs_compiled"] for p in static["resolution_sweep"]] == [0, 2, 0]
    assert [p["graphs_compiled"] for p in dynamic["resolution_sweep"]] == [0, 1, 0]
    assert static["recompiles_in_sweep"] == dynamic["recompiles_in_sweep"] == 1
    assert [p["resolution"] for p in static["resolution_sweep"]] == ["64", "96", "128"]
    assert static["resolution_sweep"][1]["compile_s"] >= 0 and not static["recompile_limit_hit_in_sweep"]


class OutOfMemoryAboveOneImage(torch.nn.Module):
    """The UNet, except that more than one image (two latents with guidance) runs out of memory."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.config, self.dtype, self.device = unet.config, unet.dtype, unet.device
        self.add_embedding = getattr(unet, "add_embedding", None)

    def forward(self, sample, *args, **kwargs):
        if sample.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB (batch)")
        return self.unet(sample, *args, **kwargs)


@register
class OutOfMemoryAboveOneImageBackend(Backend):
    name = "test-oom-above-one-image"

    def apply(self, pipe):
        pipe.unet = OutOfMemoryAboveOneImage(pipe.unet)
        return pipe


def test_batch_sweep_stops_at_the_first_out_of_memory_and_records_it(tmp_path):
    session = make_session(
        tmp_path,
        backends="eager,test-oom-above-one-image",
        tasks="t2i",
        resolutions="64",
        steps=2,
        prompts=1,
        rounds=1,
        batch_sweep="4,1,2",
    )
    eager, limited = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    assert [p["batch"] for p in eager["batch_sweep"]] == [1, 2, 4] and all(
        p["status"] == "ok" for p in eager["batch_sweep"]
    )
    assert eager["batch_sweep"][2]["images_per_s"] == pytest.approx(4 / eager["batch_sweep"][2]["e2e_s"])
    assert [(p["batch"], p["status"]) for p in limited["batch_sweep"]] == [(1, "ok"), (2, "oom")]
    assert limited["batch_sweep"][1]["message"].startswith("CUDA out of memory") and limited["status"] == "ok"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"steps_sweep": "4,4"}, "at least two different step counts"),
        ({"steps_sweep": "1,two"}, "positive integers"),
        ({"batch_sweep": "0,2"}, "positive integers"),
        ({"models": "tiny-sd3", "resolution_sweep": "64,72"}, "does not divide by 16"),
    ],
)
def test_bad_sweep_values_are_usage_errors(raw, message):
    with pytest.raises(OptionError, match=message):
        build_settings(raw)


def test_the_report_shows_each_sweep_with_the_steps_plot(tmp_path):
    from diffbench.report.document import Figure, Table, to_markdown
    from diffbench.report.sweeps import sweep_blocks

    record = {
        "case": "sdxl-t2i-1024-compile",
        "per_step_s": 0.048,
        "fixed_s": 0.12,
        "fit_r_squared": 0.9991,
        "fitted_steps_per_s": 20.8,
        "steps_sweep": [{"steps": s, "e2e_s": 0.048 * s + 0.12} for s in (1, 4, 16)],
        "resolution_sweep": [
            {
                "resolution": "1024",
                "first_call_s": 0.6,
                "graphs_compiled": 0,
                "recompiled": False,
                "compile_s": 0.0,
                "e2e_s": 0.6,
                "recompile_limit_hits": 0,
            },
            {
                "resolution": "768x1344",
                "first_call_s": 41.0,
                "graphs_compiled": 2,
                "recompiled": True,
                "compile_s": 40.4,
                "e2e_s": 0.6,
                "recompile_limit_hits": 1,
            },
        ],
        "batch_sweep": [
            {"batch": 1, "status": "ok", "e2e_s": 0.6, "images_per_s": 1.67},
            {"batch": 8, "status": "oom", "message": "CUDA out of memory."},
        ],
    }
    blocks = sweep_blocks("compile", record, tmp_path)
    text = to_markdown(blocks)
    assert "48.00 ms per step + 0.120 s fixed" in text and "R^2 0.9991" in text
    assert "| 768x1344 | 41.00 | 2 | yes | 40.40 | 0.600 | HIT: runs eagerly |" in text
    assert "| 8 | - | - | oom: CUDA out of memory. |" in text
    figures = [block.path for block in blocks if isinstance(block, Figure)]
    assert figures == ["steps-sdxl-t2i-1024-compile.png", "batch-sdxl-t2i-1024-compile.png"]
    assert (
        all((tmp_path / name).stat().st_size > 1000 for name in figures)
        and sum(isinstance(b, Table) for b in blocks) == 3
    )
    assert sweep_blocks("eager", {"case": "x"}, tmp_path) == []


def _swept(*points: tuple[str, int, int]) -> dict:
    """A record of a 1024 case whose resolution sweep met (size, graphs compiled, limit hits) in order."""
    return {
        "case": "m-t2i-1024-compile",
        "resolution": "1024x1024",
        "resolution_sweep": [
            {
                "resolution": size,
                "graphs_compiled": graphs,
                "recompiled": graphs > 0,
                "compile_s": 10.0 * graphs,
                "recompile_limit_hits": hits,
            }
            for size, graphs, hits in points
        ],
    }


@pytest.mark.parametrize(
    "points, verdict",
    [
        ((("1024", 0, 0), ("768", 2, 0), ("512", 2, 0)), "recompiles at every new size"),
        (
            (("1024", 0, 0), ("768", 2, 0), ("512", 0, 0), ("768x1344", 0, 0)),
            "recompiled at 768, then reused that graph",
        ),
        ((("1024", 0, 0), ("512", 0, 0)), "no recompile"),
        ((("1024", 0, 0), ("768", 1, 0), ("512", 0, 1)), "hit the recompile limit: runs eagerly from then on"),
    ],
)
def test_the_recompile_verdict_reads_dynamos_counts(points, verdict):
    from diffbench.report.sweeps import recompile_overview, recompile_verdict

    record = _swept(*points)
    assert recompile_verdict(record) == verdict
    table = recompile_overview([("label", record), ("no sweep", {"case": "x"})])[-1]
    assert table.rows == [
        [
            "label",
            ", ".join(p[0] for p in points),
            str(sum(p[1] for p in points)),
            f"{10.0 * sum(p[1] for p in points):.2f}",
            verdict,
        ]
    ]
