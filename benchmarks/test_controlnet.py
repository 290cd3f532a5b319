"""ControlNet cases: SDXL-family text-to-image conditioned on a control image (run with --tasks controlnet)."""

import pytest

pytestmark = pytest.mark.task("controlnet")


def test_controlnet(case, bench_session, benchmark):
    bench_session.run(case, benchmark)
