"""Matrix expansion, case ids and option validation."""

import pytest

from diffbench.case import Case, Resolution
from diffbench.config.matrix import build_settings, expand_matrix
from diffbench.errors import OptionError


def ids(**raw):
    return [case.id for case in expand_matrix(build_settings(raw))]


def test_default_matrix_covers_every_model_task_resolution_and_backend():
    cases = ids()
    assert "sdxl-t2i-1024-compile" in cases
    assert "sdxl-i2i-512-eager" in cases
    assert "ip2p-i2i-1024-eager" in cases
    assert "sd35-large-t2i-1024-compile" in cases
    assert "tiny-sd3-t2i-128-eager" in cases
    assert not any(case.startswith("ip2p-t2i") for case in cases)  # ip2p has no t2i pipeline
    assert not any(case.startswith("sd35-large-i2i") for case in cases)
    assert "realvisxl-lightning-5step-t2i-512-compile" in cases
    assert len(cases) == len(set(cases)) == 46


def test_cases_of_one_reference_are_adjacent_and_eager_comes_first():
    cases = expand_matrix(build_settings({"backends": "compile,eager"}))
    keys = [case.reference_key for case in cases]
    assert keys == sorted(keys, key=keys.index)  # grouped: each key appears in one run
    for first, second in zip(cases[::2], cases[1::2]):
        assert first.reference_key == second.reference_key
        assert (first.backend, second.backend) == ("eager", "compile")  # eager first, whatever the order given


def test_selection_and_non_square_resolutions():
    cases = ids(models="sdxl,tiny-sdxl", tasks="t2i", resolutions="1024,768x1344", backends="compile")
    assert cases == [
        "sdxl-t2i-1024-compile",
        "sdxl-t2i-768x1344-compile",
        "tiny-sdxl-t2i-1024-compile",
        "tiny-sdxl-t2i-768x1344-compile",
    ]
    assert str(expand_matrix(build_settings({"models": "sdxl", "resolutions": "768x1344"}))[0].resolution) == "768x1344"


def test_resolution_parse_and_label():
    assert Resolution.parse("1024") == Resolution(1024, 1024)
    assert Resolution.parse("768x1344").label == "768x1344"
    assert Resolution.parse("512").label == "512"
    assert Case("sdxl", "t2i", Resolution(1024, 1024), "compile").id == "sdxl-t2i-1024-compile"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"backends": "nosuch"}, "unknown backend 'nosuch'; valid backends: eager, compile"),
        ({"models": "sdxl,nosuch"}, "unknown model 'nosuch'; valid models: sdxl, realvisxl"),
        ({"tasks": "t2v"}, "unknown task 't2v'; valid tasks: t2i, i2i"),
        ({"resolutions": "big"}, "resolution 'big' is not a size"),
        ({"models": "sd35-large", "resolutions": "1000"}, "does not divide by 16, which sd35-large needs"),
        ({"models": "ip2p", "tasks": "t2i"}, "no case to run: the models selected support only these tasks: ip2p: i2i"),
        ({"dtype": "int3"}, "unknown --dtype 'int3'; valid: auto, float16, bfloat16, float32"),
        ({"device": "tpu"}, "unknown --device 'tpu'"),
        ({"rounds": 0}, "--rounds must be at least 1"),
        ({"weights": "/no/such/folder"}, "neither one of hub, random, tiny nor an existing local folder"),
        ({"weights": "nosuch=random"}, "unknown model 'nosuch'"),
        ({"compiler_config": "{mode: max}"}, "--compiler-config is not valid JSON"),
        ({"compiler_config": "[1]"}, "must be a JSON object"),
        ({"compiler_config": '{"modes": "x"}'}, "backend 'compile' has no option modes; valid: backend, components"),
        ({"compile_mode": "fastest"}, "compile mode 'fastest' is not one of: default, reduce-overhead"),
        ({"quality_floor": "compile=0.9"}, "write BACKEND=SSIM/PSNR"),
        ({"quality_floor": "compile=1.5/30"}, "SSIM must lie in [0, 1]"),
        ({"input_image": "/no/such.png"}, "--input-image '/no/such.png' is not a readable image"),
    ],
)
def test_invalid_options_are_reported_with_the_valid_values(raw, message):
    with pytest.raises(OptionError) as error:
        build_settings(raw)
    assert message in str(error.value)


def test_weights_per_model_and_quality_floor_override():
    settings = build_settings({"weights": "random,sdxl=tiny", "quality_floor": "compile=0.9/25"})
    from diffbench.models.catalog import MODELS

    assert settings.weights_for(MODELS["sdxl"]) == "tiny"
    assert settings.weights_for(MODELS["realvisxl"]) == "random"
    assert settings.weights_for(MODELS["tiny-sd3"]) == "tiny"  # tiny models ignore --weights
    assert settings.quality_floor("compile").ssim == 0.9
    assert settings.quality_floor("eager").ssim == 0.999


def test_files_given_as_options_are_checked_up_front(tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(OptionError, match="is not a readable image"):
        build_settings({"input_image": str(not_an_image)})
    (tmp_path / "half-saved").mkdir()
    with pytest.raises(OptionError, match="has no model_index.json"):
        build_settings({"weights": f"sdxl={tmp_path / 'half-saved'}"})
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"not safetensors")
    with pytest.raises(OptionError, match="is not a valid safetensors file"):
        build_settings({"weights": str(broken)})
