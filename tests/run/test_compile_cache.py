"""--compile-cache-check: the cold compile and the warm-cache compile, each in a fresh process."""

from pathlib import Path

import pytest
from helpers import RecordingBenchmark, make_session

from diffbench.config.matrix import expand_matrix


def run_pair(tmp_path, compiler_config):
    session = make_session(
        tmp_path,
        backends="eager,compile",
        tasks="t2i",
        resolutions="64",
        steps=2,
        prompts=1,
        rounds=1,
        compiler_config=compiler_config,
        compile_cache_check=True,
    )
    eager, compiled = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    return session, eager, compiled


def test_two_fresh_processes_share_one_cache_folder_that_starts_empty_and_is_removed(tmp_path):
    session, eager, compiled = run_pair(tmp_path, '{"backend": "eager"}')
    assert "warmup_cached_s" not in eager and "inductor_cache_dir" not in eager  # eager runs in-process
    assert compiled["status"] == "ok" and compiled["warmup_s"] > 0 and compiled["warmup_cached_s"] > 0
    cache = Path(compiled["inductor_cache_dir"])
    assert cache == session.run_folder.path / "compile-cache" / "tiny-sdxl-t2i-64-compile" and not cache.exists()
    logs = session.run_folder.path / "logs"
    assert (logs / "tiny-sdxl-t2i-64-compile.log").exists() and (
        logs / "tiny-sdxl-t2i-64-compile-warm-cache.log"
    ).exists()


@pytest.mark.slow
def test_inductor_compiles_much_faster_from_the_warm_cache_of_the_first_process(tmp_path):
    """Real inductor on the CPU: about a minute cold, a few seconds from the on-disk cache."""
    _, _, compiled = run_pair(tmp_path, '{"backend": "inductor"}')
    assert compiled["status"] == "ok", compiled.get("message")
    assert compiled["warmup_cached_s"] < 0.5 * compiled["warmup_s"], (compiled["warmup_s"], compiled["warmup_cached_s"])
