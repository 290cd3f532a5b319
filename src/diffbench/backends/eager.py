"""The eager baseline: the pipeline as diffusers builds it (the seeds' `--compiler none`)."""

from diffbench.backends.base import Backend, register
from diffbench.measure.quality import QualityFloor


@register
class EagerBackend(Backend):
    """No acceleration. Its output is the reference; run twice it must match itself exactly."""

    name = "eager"
    # Checked between rounds of the same eager pipeline: anything below is non-determinism.
    quality_floor = QualityFloor(ssim=0.999, psnr=50.0)
