"""Image quality against the eager reference: SSIM and PSNR through scikit-image, and a gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; JSON has no infinity, so cap it
FLAT_STD = 1e-3  # below this standard deviation an image carries no content (black, grey, saturated)


@dataclass(frozen=True)
class QualityFloor:
    """The least SSIM and PSNR (dB) a backend's output must reach against eager."""

    ssim: float
    psnr: float

    def __str__(self) -> str:
        return f"ssim>={self.ssim:g}, psnr>={self.psnr:g} dB"


def image_problem(image: np.ndarray) -> str | None:
    """Why an image (floats in [0, 1], H x W x C) cannot be scored, or None if it can."""
    if not np.all(np.isfinite(image)):
        return f"has {int(np.size(image) - np.isfinite(image).sum())} NaN/inf values"
    if float(np.std(image)) < FLAT_STD:
        return f"is flat (all pixels ~{float(np.mean(image)):.3f})"
    return None


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(SSIM, PSNR in dB) of two images of the same shape, floats in [0, 1]."""
    if reference.shape != candidate.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {candidate.shape}")
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    ssim = structural_similarity(reference, candidate, channel_axis=-1, data_range=1.0)
    if np.array_equal(reference, candidate):
        return 1.0, PSNR_CAP_DB
    psnr = peak_signal_noise_ratio(reference, candidate, data_range=1.0)
    return float(ssim), float(min(psnr, PSNR_CAP_DB))


@dataclass
class QualityResult:
    """Scores over every (prompt, seed, image in batch) pair, and why the gate failed if it did."""

    ssim: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, float | None]:
        if not self.ssim:
            return {"ssim": None, "ssim_mean": None, "psnr": None, "psnr_mean": None}
        return {
            "ssim": min(self.ssim),
            "ssim_mean": fmean(self.ssim),
            "psnr": min(self.psnr),
            "psnr_mean": fmean(self.psnr),
        }


def assess(references: list[np.ndarray], outputs: list[np.ndarray], floor: QualityFloor) -> QualityResult:
    """Score each output against its reference; fail on unscorable images or scores below `floor`."""
    result = QualityResult()
    if len(references) != len(outputs):
        result.failures.append(f"{len(outputs)} outputs for {len(references)} reference images")
        return result
    for index, (reference, output) in enumerate(zip(references, outputs)):
        for side, image in (("eager reference", reference), ("output", output)):
            problem = image_problem(image)
            if problem:
                result.failures.append(f"image {index}: the {side} {problem}")
        if any(f.startswith(f"image {index}:") for f in result.failures):
            continue
        ssim, psnr = compare(reference, output)
        result.ssim.append(ssim)
        result.psnr.append(psnr)
        if ssim < floor.ssim or psnr < floor.psnr:
            result.failures.append(f"image {index}: SSIM {ssim:.4f}, PSNR {psnr:.2f} dB below the floor ({floor})")
    return result
