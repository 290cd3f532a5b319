"""Recompiles and recompile-limit hits, counted from torch's own counters and logs."""

import torch
from helpers import RecordingBenchmark, make_session

from diffbench.config.matrix import expand_matrix
from diffbench.measure.compile_watch import CompileWatch


def linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())


def graphs_per_call(compiled, sizes):
    counts = []
    for size in sizes:
        with CompileWatch() as watch:
            compiled(torch.randn(size, 8))
        counts.append(watch.activity.graphs)
    return counts


def test_a_static_compile_recompiles_for_every_new_size_and_not_for_a_seen_one():
    torch._dynamo.reset()
    assert graphs_per_call(torch.compile(linear(), backend="eager", dynamic=False), [2, 2, 3, 4, 3]) == [1, 0, 1, 1, 0]


def test_a_dynamic_compile_does_not_recompile_for_new_sizes():
    torch._dynamo.reset()
    assert graphs_per_call(torch.compile(linear(), backend="eager", dynamic=True), [2, 3, 4, 5]) == [1, 0, 0, 0]


def test_automatic_dynamic_recompiles_once_then_generalises():
    """torch's default (dynamic=None): static first, one recompile with a symbolic size, then none."""
    torch._dynamo.reset()
    assert graphs_per_call(torch.compile(linear(), backend="eager"), [2, 3, 4, 5]) == [1, 1, 0, 0]


def test_hitting_the_recompile_limit_is_seen():
    torch._dynamo.reset()
    compiled = torch.compile(linear(), backend="eager", dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=2), CompileWatch() as watch:
        for size in (2, 3, 4, 5):
            compiled(torch.randn(size, 8))
    assert watch.activity.graphs == 2  # then torch gave up and ran the rest eagerly
    assert watch.activity.limit_hits >= 1 and "recompile_limit" in watch.activity.limit_messages[0]


def test_compiled_cases_record_their_compiles_and_none_in_the_timed_rounds(tmp_path):
    torch._dynamo.reset()
    session = make_session(
        tmp_path,
        backends="eager,compile",
        tasks="t2i",
        resolutions="64",
        steps=2,
        prompts=1,
        compiler_config='{"backend": "eager"}',
    )
    eager, compiled = (session.run(case, RecordingBenchmark()) for case in expand_matrix(session.settings))
    assert eager["warmup_graphs_compiled"] == 0 and eager["timed_graphs_compiled"] == 0
    assert compiled["warmup_graphs_compiled"] >= 2  # the UNet and the VAE decoder at least
    assert compiled["timed_graphs_compiled"] == 0 and compiled["timed_recompile_limit_hits"] == 0
