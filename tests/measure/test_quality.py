"""The quality metric and gate: identical passes, different fails, NaN and flat never score."""

import numpy as np
import pytest

from diffbench.measure.quality import PSNR_CAP_DB, QualityFloor, assess, compare, image_problem

FLOOR = QualityFloor(ssim=0.95, psnr=30.0)


def noise_image(seed, size=64):
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def smooth_image(size=64):
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([x, y, (x + y) / 2], axis=-1).astype(np.float32)


def test_identical_images_score_perfectly_and_pass():
    image = smooth_image()
    assert compare(image, image.copy()) == (1.0, PSNR_CAP_DB)
    result = assess([image], [image.copy()], FLOOR)
    assert result.passed and result.summary()["ssim"] == 1.0


def test_unrelated_images_fail_the_gate():
    result = assess([noise_image(1)], [noise_image(2)], FLOOR)
    assert not result.passed
    assert result.summary()["ssim"] < 0.1
    assert "below the floor" in result.failures[0]


def test_small_perturbation_scores_between():
    image = smooth_image()
    perturbed = np.clip(image + np.random.default_rng(0).normal(0, 0.01, image.shape), 0, 1)
    ssim, psnr = compare(image, perturbed)
    assert 0.5 < ssim < 1.0 and 35 < psnr < 45


@pytest.mark.parametrize("bad", ["nan", "black", "grey"])
def test_nan_or_flat_images_fail_even_when_both_sides_agree(bad):
    image = {
        "nan": np.full((64, 64, 3), np.nan, np.float32),
        "black": np.zeros((64, 64, 3), np.float32),
        "grey": np.full((64, 64, 3), 0.5, np.float32),
    }[bad]
    assert image_problem(image) is not None
    result = assess([image], [image.copy()], FLOOR)
    assert not result.passed
    assert result.ssim == []  # never scored, so never SSIM 1
    assert "the eager reference" in result.failures[0] and "the output" in result.failures[1]


def test_min_and_mean_over_several_images():
    base = smooth_image()
    near = np.clip(base + 0.02, 0, 1)
    result = assess([base, base], [base.copy(), near], QualityFloor(ssim=0.0, psnr=0.0))
    summary = result.summary()
    assert summary["ssim"] == min(result.ssim) < summary["ssim_mean"] < 1.0
    assert summary["psnr"] < summary["psnr_mean"]


def test_count_mismatch_and_shape_mismatch():
    assert not assess([smooth_image()], [], FLOOR).passed
    with pytest.raises(ValueError, match="differ in shape"):
        compare(smooth_image(64), smooth_image(32))
