"""The steps fit and FLOP counting, against numbers worked out by hand."""

import pytest
import torch

from diffbench.errors import OptionError
from diffbench.measure.flops import count_pipeline_flops, measured_matmul_tflops
from diffbench.measure.scaling import fit_steps


def test_a_synthetic_linear_timing_recovers_its_slope_and_intercept():
    steps = [1, 2, 4, 8, 16, 32]
    fit = fit_steps(steps, [0.045 * s + 0.31 for s in steps])
    assert fit.per_step_s == pytest.approx(0.045) and fit.fixed_s == pytest.approx(0.31)
    assert fit.r_squared == pytest.approx(1.0) and fit.steps_per_s == pytest.approx(1 / 0.045)


def test_noise_lowers_r_squared_but_the_fit_stays_close():
    steps = [1, 2, 4, 8, 16, 32]
    noise = [0.02, -0.015, 0.01, -0.02, 0.015, -0.01]
    fit = fit_steps(steps, [0.05 * s + 0.2 + n for s, n in zip(steps, noise)])
    assert abs(fit.per_step_s - 0.05) < 0.002 and abs(fit.fixed_s - 0.2) < 0.03
    assert 0.99 < fit.r_squared < 1.0


@pytest.mark.parametrize("steps, seconds", [([4, 4, 4], [1.0, 1.1, 0.9]), ([1, 2], [1.0])])
def test_a_fit_needs_two_step_counts_and_one_time_each(steps, seconds):
    with pytest.raises(OptionError, match="steps fit needs"):
        fit_steps(steps, seconds)


class TinyVae:
    def __init__(self):
        self.weight = torch.randn(32, 64)

    def decode(self, latents):
        return latents @ self.weight  # (4 x 32) @ (32 x 64): 2*4*32*64 FLOPs


def test_flops_of_denoiser_calls_and_the_vae_decode_match_hand_counts():
    denoiser = torch.nn.Linear(16, 32, bias=False)  # (4 x 16) @ (16 x 32): 2*4*16*32 = 4096 FLOPs a call
    vae = TinyVae()
    text_encoder = torch.randn(16, 16)

    def call():
        hidden = torch.randn(4, 16) @ text_encoder  # 2*4*16*16 = 2048, neither denoiser nor VAE
        for _ in range(3):
            latents = denoiser(hidden)
        return vae.decode(latents)

    flops = count_pipeline_flops(denoiser, vae, call)
    assert flops.denoiser_calls == 3 and flops.denoiser_per_call == 4096 and flops.denoiser == 3 * 4096
    assert flops.vae_decode == 2 * 4 * 32 * 64
    assert flops.total == 3 * 4096 + 2 * 4 * 32 * 64 + 2048
    assert "decode" not in vae.__dict__ and not denoiser._forward_hooks and not denoiser._forward_pre_hooks


def test_an_instance_decode_set_by_a_backend_is_put_back():
    vae = TinyVae()
    replaced = vae.decode
    vae.decode = replaced  # as the compile backend sets a compiled decode on its private VAE
    count_pipeline_flops(torch.nn.Identity(), vae, lambda: vae.decode(torch.randn(4, 32)))
    assert vae.__dict__["decode"] is replaced


def test_the_matmul_ceiling_is_a_positive_rate():
    assert measured_matmul_tflops("cpu", torch.float32, size=128, repeats=2) > 0


def test_roofline_records_the_same_flops_for_eager_and_compile_and_fewer_for_deepcache(tmp_path):
    """--roofline: FLOPs counted once per group on eager (compile computes the same), a cache counts
    what it runs; achieved TFLOP/s = FLOPs per denoiser call x it/s, over the measured matmul ceiling."""
    from helpers import RecordingBenchmark, make_session

    from diffbench.config.matrix import expand_matrix

    pytest.importorskip("DeepCache")
    torch._dynamo.reset()
    session = make_session(
        tmp_path,
        backends="eager,compile,deepcache",
        tasks="t2i",
        resolutions="64",
        steps=6,
        prompts=1,
        compiler_config='{"backend": "eager"}',
        roofline=True,
    )
    eager, compiled, cached = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    assert eager["tflop_per_denoiser_call"] > 0 and eager["denoiser_calls_counted"] == 6
    assert compiled["tflop_per_denoiser_call"] == eager["tflop_per_denoiser_call"]
    assert cached["tflop_per_denoiser_call"] < eager["tflop_per_denoiser_call"]  # shallow steps skip most of the UNet
    for record in (eager, compiled, cached):
        assert record["denoiser_tflops"] == pytest.approx(record["tflop_per_denoiser_call"] * record["its"])
        assert record["mfu"] == pytest.approx(record["denoiser_tflops"] / record["ceiling_tflops"])
        assert record["ceiling_dtype"] == "float32" and record["tflop_per_call"] > record["tflop_vae_decode"] > 0


def test_no_utilisation_against_the_wrong_ceiling_for_fp8_or_int8_matmuls():
    import types

    from diffbench.measure.flops import PipelineFlops
    from diffbench.run.roofline import Roofline

    flops = PipelineFlops(total=5e12, denoiser=4e12, denoiser_calls=10, vae_decode=0.5e12)
    fields = Roofline("cpu").record(
        flops, types.SimpleNamespace(matmul_dtype="float8_e4m3fn"), torch.float16, its=20.0, e2e_s=1.0
    )
    assert fields["denoiser_tflops"] == pytest.approx(0.4 * 20) and fields["e2e_tflops"] == pytest.approx(5.0)
    assert fields["mfu"] is None and "float8_e4m3fn" in fields["mfu_note"]


def test_busy_time_is_the_union_of_kernel_intervals():
    from diffbench.measure.boundness import busy_seconds

    assert busy_seconds([]) == 0.0
    assert busy_seconds([(0.0, 1.0), (0.5, 1.5), (2.0, 3.0), (2.2, 2.4)]) == pytest.approx(2.5)


@pytest.mark.parametrize(
    "idle, mfu, bound",
    [
        (0.45, 0.10, "launch-bound"),
        (0.05, 0.55, "arithmetic-bound"),
        (0.05, 0.20, "GPU-bound below the matmul ceiling"),
        (0.05, None, "GPU-bound below the matmul ceiling"),
        (None, 0.5, None),
    ],
)
def test_the_stated_criterion_classifies_cases(idle, mfu, bound):
    from diffbench.measure.boundness import classify

    assert classify(idle, mfu) == bound


def test_no_gpu_activity_off_cuda():
    from diffbench.measure.boundness import gpu_activity

    assert gpu_activity("cpu", lambda: None, 1.0) is None


def test_idle_fraction_is_against_the_unprofiled_wall_time_and_bounded():
    from diffbench.measure.boundness import idle_fraction

    assert idle_fraction(0.3, 1.0) == pytest.approx(0.7)
    assert idle_fraction(1.2, 1.0) == 0.0  # busy measured in another (profiled) call can exceed it
    assert idle_fraction(0.0, 2.0) == 1.0 and idle_fraction(0.5, 0.0) is None
