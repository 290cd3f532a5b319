"""Text-to-image cases: every model x resolution x backend of the matrix with a t2i pipeline."""

import pytest

pytestmark = pytest.mark.task("t2i")


def test_text_to_image(case, bench_session, benchmark):
    bench_session.run(case, benchmark)
