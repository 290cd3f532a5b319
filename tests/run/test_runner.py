"""The case runner on tiny CPU models: records, files, speedups, the quality gate, isolation."""

import json

import numpy as np
import pytest
import torch
from helpers import RecordingBenchmark, make_session
from PIL import Image

from diffbench.backends.base import Backend, register
from diffbench.config.matrix import expand_matrix
from diffbench.errors import CaseFailure, QualityError
from diffbench.measure.quality import QualityFloor, assess
from diffbench.results.records import RECORD_KEYS, read_results

EAGER_DYNAMO = json.dumps({"backend": "eager"})  # torch.compile's graph capture without inductor: fast


@register
class PerturbedBackend(Backend):
    """A deliberately wrong backend: its VAE decodes noisier latents."""

    name = "test-perturbed"
    quality_floor = QualityFloor(ssim=0.95, psnr=30.0)

    def apply(self, pipe):
        import copy

        vae = copy.copy(pipe.vae)
        decode = vae.decode

        def noisy_decode(latents, *args, **kwargs):
            # Relative to the latents' own scale: random-weight UNets leave latents of any magnitude.
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0)).to(latents)
            return decode(latents + 0.5 * latents.std() * noise, *args, **kwargs)

        vae.decode = noisy_decode
        pipe.vae = vae
        return pipe


def run_all(session, **only):
    records = {}
    for case in expand_matrix(session.settings):
        if all(getattr(case, key) == value for key, value in only.items()):
            records[case.id] = session.run(case, RecordingBenchmark())
    return records


def test_tiny_matrix_records_every_key_and_writes_files(tmp_path):
    session = make_session(tmp_path, backends="eager,compile", compiler_config=EAGER_DYNAMO)
    records = run_all(session)
    assert list(records) == [
        "tiny-sdxl-t2i-128-eager",
        "tiny-sdxl-t2i-128-compile",
        "tiny-sdxl-i2i-128-eager",
        "tiny-sdxl-i2i-128-compile",
    ]
    assert session.cache.loads == 1  # both tasks share one built model
    for record in records.values():
        assert set(RECORD_KEYS) <= set(record)
        assert record["status"] == "ok" and record["resolution"] == "128x128"
        assert record["device"] == "cpu" and record["dtype"] == "float32" and record["weights"] == "tiny"
        assert record["e2e_s"] > 0 and record["warmup_s"] > 0 and record["its"] > 0 and record["load_s"] > 0
        assert record["peak_mem_gib"] is None  # no CUDA: not invented
        assert len(record["e2e_rounds_s"]) == 2 and record["quality_images"] == 2
        # the case's own wall time holds its warmup and timed rounds (and the paired eager rounds)
        timed = record["warmup_s"] + sum(record["e2e_rounds_s"]) + sum(record.get("eager_paired_rounds_s") or [])
        assert timed < record["case_s"] < timed + 60
    compiled = records["tiny-sdxl-t2i-128-compile"]
    eager = records["tiny-sdxl-t2i-128-eager"]
    # Paired: eager alternated with the backend in its case; the speedup is the median per-pair ratio.
    ratios = [e / b for e, b in zip(compiled["eager_paired_rounds_s"], compiled["e2e_rounds_s"])]
    assert compiled["pairing"] == "paired" and compiled["speedup"] == pytest.approx(float(np.median(ratios)))
    assert compiled["speedup_low"] <= compiled["speedup"] <= compiled["speedup_high"]
    assert compiled["ssim"] > 0.999 and eager["deterministic"] is True
    written = read_results(session.run_folder.results)
    assert [r["case"] for r in written] == list(records)
    saved = np.asarray(Image.open(session.run_folder.path / eager["image"]), dtype=np.float32) / 255
    reference = session.references[expand_matrix(session.settings)[0].reference_key].images[0]
    assert np.abs(saved - reference).max() <= 0.5 / 255 + 1e-6  # the case's own pixels, quantized


def test_a_different_seed_fails_the_gate(tmp_path):
    session = make_session(tmp_path)
    case = expand_matrix(session.settings)[0]
    from diffbench.models.catalog import MODELS

    spec = MODELS[case.model]
    loaded = session.cache.get(spec, "tiny", torch.float32, "cpu")
    call = session._caller(session.cache.task_pipeline(loaded, spec, "t2i"), spec, case)
    prompt = "a cat"
    same = assess(list(call(prompt, 1)), list(call(prompt, 1)), session.settings.quality_floor("compile"))
    other = assess(list(call(prompt, 1)), list(call(prompt, 2)), session.settings.quality_floor("compile"))
    assert same.passed and same.ssim == [1.0]
    assert not other.passed and other.ssim[0] < 0.9


def test_perturbed_backend_fails_and_is_recorded(tmp_path):
    session = make_session(tmp_path, backends="eager,test-perturbed", tasks="t2i")
    cases = expand_matrix(session.settings)
    session.run(cases[0], RecordingBenchmark())
    with pytest.raises(QualityError, match="below the floor"):
        session.run(cases[1], RecordingBenchmark())
    written = read_results(session.run_folder.results)
    assert [r["status"] for r in written] == ["ok", "failed"]
    assert written[1]["message"].startswith("quality gate: image 0: SSIM")
    assert written[1]["ssim"] < 0.95


def state_checksum(pipe):
    return {
        name: float(sum(p.double().sum() for p in getattr(pipe, name).state_dict().values()))
        for name in ("unet", "vae", "text_encoder", "text_encoder_2")
    }


def test_eager_output_is_bit_identical_after_every_other_backend(tmp_path):
    in_place = json.dumps({"backend": "aot_eager", "fuse_qkv_projections": True, "memory_format": "channels_last"})
    session = make_session(tmp_path, backends="eager,compile,test-perturbed", tasks="t2i", compiler_config=in_place)
    eager, compiled, perturbed = expand_matrix(session.settings)
    session.run(eager, RecordingBenchmark())
    before = [image.copy() for image in session.references[eager.reference_key].images]
    base = session.cache._loaded.pipe
    checksum = state_checksum(base)
    assert session.run(compiled, RecordingBenchmark())["status"] == "ok"
    with pytest.raises(QualityError):
        session.run(perturbed, RecordingBenchmark())
    session.run(eager, RecordingBenchmark())
    after = session.references[eager.reference_key].images
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert state_checksum(base) == checksum
    assert type(base.unet).__name__ == "UNet2DConditionModel"  # never replaced by a compiled wrapper
    assert session.cache.loads == 1


def test_task_pipelines_share_modules_without_changing_their_dtype(tmp_path):
    session = make_session(tmp_path, dtype="bfloat16")
    from diffbench.models.catalog import MODELS

    spec = MODELS["tiny-sdxl"]
    loaded = session.cache.get(spec, "tiny", torch.bfloat16, "cpu")
    text_to_image = session.cache.task_pipeline(loaded, spec, "t2i")
    image_to_image = session.cache.task_pipeline(loaded, spec, "i2i")
    assert type(image_to_image).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert image_to_image.unet is text_to_image.unet and image_to_image.vae is text_to_image.vae
    dtypes = {
        p.dtype
        for name in ("unet", "vae", "text_encoder", "text_encoder_2")
        for p in getattr(text_to_image, name).parameters()
    }
    assert dtypes == {torch.bfloat16}


class OutOfMemoryBackend(Backend):
    """Runs out of memory while applied, after taking the pipeline copy (which must then be freed)."""

    name = "test-oom"
    copies: list = []

    def apply(self, pipe):
        import weakref

        self.copies.append(weakref.ref(pipe))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


register(OutOfMemoryBackend)


def test_out_of_memory_is_recorded_memory_released_and_the_run_goes_on(tmp_path):
    session = make_session(tmp_path, backends="eager,test-oom", tasks="t2i", resolutions="128,64")
    cases = expand_matrix(session.settings)
    assert [c.id for c in cases] == [
        "tiny-sdxl-t2i-128-eager",
        "tiny-sdxl-t2i-128-test-oom",
        "tiny-sdxl-t2i-64-eager",
        "tiny-sdxl-t2i-64-test-oom",
    ]
    session.run(cases[0], RecordingBenchmark())
    with pytest.raises(pytest.fail.Exception, match="out of memory .*the run goes on"):
        session.run(cases[1], RecordingBenchmark())
    assert OutOfMemoryBackend.copies[-1]() is None  # the case's pipeline copy was freed
    assert session.run(cases[2], RecordingBenchmark())["status"] == "ok"  # the next case runs
    written = read_results(session.run_folder.results)
    assert [r["status"] for r in written] == ["ok", "oom", "ok"]
    assert written[1]["message"] == "CUDA out of memory. Tried to allocate 20.00 GiB"


class OutOfMemoryDenoiser(torch.nn.Module):
    """A denoiser that runs out of memory when called: an OOM in inference (warmup), not in apply."""

    def __init__(self, unet):
        super().__init__()
        self.config, self.dtype, self.device = unet.config, unet.dtype, unet.device
        self.add_embedding = getattr(unet, "add_embedding", None)

    def forward(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB (inference)")


@register
class OutOfMemoryInInferenceBackend(Backend):
    name = "test-oom-inference"

    def apply(self, pipe):
        pipe.unet = OutOfMemoryDenoiser(pipe.unet)
        return pipe


@pytest.mark.parametrize("phase", ["load", "inference"])
def test_out_of_memory_while_loading_or_denoising_is_a_result_too(tmp_path, monkeypatch, phase):
    session = make_session(
        tmp_path, backends="eager,test-oom-inference", tasks="t2i", resolutions="64", steps=2, prompts=1, rounds=1
    )
    eager, accelerated = expand_matrix(session.settings)
    if phase == "load":  # the first build runs out of memory; the next case builds again and runs
        build = session.cache.get

        def out_of_memory_once(*args, **kwargs):
            monkeypatch.setattr(session.cache, "get", build)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB (load)")

        monkeypatch.setattr(session.cache, "get", out_of_memory_once)
        with pytest.raises(pytest.fail.Exception, match=r"out of memory .*\(load\)"):
            session.run(eager, RecordingBenchmark())
        assert session.run(eager, RecordingBenchmark())["status"] == "ok"  # built again, and runs
        expected = ["oom", "ok"]
    else:
        assert session.run(eager, RecordingBenchmark())["status"] == "ok"
        with pytest.raises(pytest.fail.Exception, match=r"out of memory .*\(inference\)"):
            session.run(accelerated, RecordingBenchmark())
        expected = ["ok", "oom"]
    statuses = [r["status"] for r in read_results(session.run_folder.results)]
    assert statuses[:2] == expected


@register
class ExplainedFailureBackend(Backend):
    name = "test-explained"

    def apply(self, pipe):
        raise RuntimeError("backend='nexfort' raised: " + "trace " * 200 + "No module named 'nexfort.inductor.codegen'")

    def explain(self, message):
        return "the wheel lacks nexfort.inductor.codegen: use mode jit." if "codegen" in message else None


def test_a_known_failure_is_recorded_with_the_backends_explanation_first(tmp_path):
    session = make_session(tmp_path, backends="test-explained", tasks="t2i", resolutions="64", steps=2, prompts=1)
    (case,) = expand_matrix(session.settings)
    with pytest.raises(CaseFailure, match="tiny-sdxl-t2i-64-test-explained: the wheel lacks"):
        session.run(case, RecordingBenchmark())
    (record,) = read_results(session.run_folder.results)
    assert record["status"] == "failed"
    assert record["message"].startswith("the wheel lacks nexfort.inductor.codegen: use mode jit. RuntimeError: ")


@register
class FailingAfterCopyBackend(Backend):
    """Fails in apply after taking a private UNet copy, which the raised failure must not keep alive."""

    name = "test-fails-after-copy"
    copies: list = []

    def apply(self, pipe):
        import weakref

        from diffbench.backends.base import own

        self.copies.append(weakref.ref(own(pipe, "unet")))
        raise RuntimeError("compiler crashed")


def test_a_failure_does_not_hold_the_cases_memory(tmp_path, caplog):
    """pytest keeps the last failure (sys.last_traceback): its traceback must not hold the pipeline."""
    import gc

    session = make_session(
        tmp_path, backends="test-fails-after-copy", tasks="t2i", resolutions="64", steps=2, prompts=1
    )
    (case,) = expand_matrix(session.settings)
    with pytest.raises(CaseFailure, match="RuntimeError: compiler crashed") as raised:
        session.run(case, RecordingBenchmark())
    failure = raised.value  # held, as pytest holds it
    gc.collect()
    assert FailingAfterCopyBackend.copies[-1]() is None
    assert failure.__context__ is None and failure.__cause__ is None
    assert "compiler crashed" in caplog.text and "Traceback" in caplog.text  # the full traceback is logged


def test_settled_compares_the_last_two_calls_relative_to_the_faster():
    from diffbench.measure.timing import settled

    assert not settled([]) and not settled([1.0])
    assert not settled([5.3, 1.44]) and not settled([1.44, 1.14])
    assert settled([1.14, 0.95, 0.90]) and settled([0.90, 0.99])  # 10% of 0.90 is 0.09
    assert not settled([0.90, 0.991])


def test_warmup_goes_on_until_two_calls_agree_then_times(tmp_path, monkeypatch):
    """A fresh process's first calls are slow (3.64, 0.93, 0.83, 0.89 s on an H100 for eager SDXL): with the default
    --max-warmups the case warms up until two calls agree within 10%; --max-warmups 1 keeps one warmup."""
    from diffbench.measure import rounds
    from diffbench.run import timed_rounds

    real_timed, script = timed_rounds.timed, []

    def scripted(device, function, *args, **kwargs):
        seconds, result = real_timed(device, function, *args, **kwargs)
        return (script.pop(0) if script else seconds), result

    monkeypatch.setattr(timed_rounds, "timed", scripted)  # the warmup calls
    monkeypatch.setattr(rounds, "timed", scripted)  # the timed rounds
    session = make_session(tmp_path, rounds=1, prompts=1)
    script[:] = [5.0, 1.5, 1.0, 0.95, 7.0]  # settles at the 4th call; 7.0 would be a timed round
    record = session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    assert record["warmup_rounds_s"] == [5.0, 1.5, 1.0, 0.95] and record["warmup_s"] == 5.0
    assert record["warmup_settled"] is True and record["e2e_rounds_s"] == [7.0]

    script[:] = [5.0, 1.5, 1.0, 0.7, 0.5, 9.0]  # never two alike: stops at --max-warmups calls in all
    session = make_session(tmp_path / "b", rounds=1, prompts=1, max_warmups=5)
    record = session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    assert record["warmup_rounds_s"] == [5.0, 1.5, 1.0, 0.7, 0.5] and record["warmup_settled"] is False
    assert record["e2e_rounds_s"] == [9.0]

    script[:] = [5.0, 1.5]
    session = make_session(tmp_path / "c", rounds=1, prompts=1, max_warmups=1)
    record = session.run(expand_matrix(session.settings)[0], RecordingBenchmark())
    assert record["warmup_rounds_s"] == [5.0] and record["warmup_settled"] is None and record["e2e_rounds_s"] == [1.5]
