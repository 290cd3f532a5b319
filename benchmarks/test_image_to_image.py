"""Image-to-image cases: SDXL img2img (with a strength) and instruct-pix2pix editing."""

import pytest

pytestmark = pytest.mark.task("i2i")


def test_image_to_image(case, bench_session, benchmark):
    bench_session.run(case, benchmark)
