"""`--lora-switch`: on a compiled, warm LoRA case, swap the adapter, change its scale, unload it; what each costs."""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Callable, cast

import numpy as np

from diffbench.measure.compile_watch import CompileWatch
from diffbench.measure.quality import QualityFloor, assess
from diffbench.measure.timing import timed
from diffbench.models.lora import SWITCHES, random_like, random_lora_state_dict
from diffbench.run.lora_case import ActiveAdapter, uncompiled_view

logger = logging.getLogger(__name__)

SWITCH_SCALE = 0.5  # the adapter's weight in the `scale` scenario


def _twin(view: Any, adapter: ActiveAdapter, seed: int) -> dict[str, Any]:
    """Another adapter of the same rank on the same layers: for random:RANK the same recipe with another
    seed; for a file or hub adapter, random values in the loaded adapter's shapes."""
    module = getattr(view, adapter.denoiser)
    if adapter.spec.kind == "random":
        rank = cast(int, adapter.spec.rank)  # a random spec always has one (parse_lora)
        return random_lora_state_dict(module, rank, adapter.spec.seed + seed, adapter.denoiser)
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(module, adapter_name=adapter.name)
    return random_like({f"{adapter.denoiser}.{key}": value for key, value in loaded.items()}, seed)


def operations(view: Any, adapter: ActiveAdapter) -> dict[str, Callable[[], None]]:
    """Each scenario as a user would write it, on the uncompiled view (diffusers' pipeline-level LoRA calls
    skip a compiled component): with hot-swap, the swap replaces the adapter's weights in place."""
    fused = adapter.mode == "fused"

    def swap() -> None:
        state_dict = _twin(view, adapter, seed=1)
        if adapter.mode == "hotswap":
            view.load_lora_weights(state_dict, adapter_name=adapter.name, hotswap=True)
            return
        if fused:
            view.unfuse_lora()
        old, adapter.name = adapter.name, f"{adapter.name}-swapped"
        view.load_lora_weights(state_dict, adapter_name=adapter.name)
        view.set_adapters([adapter.name])
        view.delete_adapters(old)
        if fused:
            view.fuse_lora(adapter_names=[adapter.name])

    def scale() -> None:
        if fused:  # a fused adapter's scale lives in the weights: unfuse, fuse again at the new scale
            view.unfuse_lora()
            view.fuse_lora(lora_scale=SWITCH_SCALE, adapter_names=[adapter.name])
        else:
            view.set_adapters([adapter.name], adapter_weights=[SWITCH_SCALE])

    def unload() -> None:
        if fused:
            view.unfuse_lora()
        view.unload_lora_weights()

    return {"swap": swap, "scale": scale, "unload": unload}


def is_compiled(pipe: Any, adapter: ActiveAdapter) -> bool:
    """Whether torch.compile wraps the denoiser carrying the adapter (the cases --lora-switch measures)."""
    return hasattr(getattr(pipe, adapter.denoiser), "_orig_mod")


def measure_switching(
    view: Any,
    adapter: ActiveAdapter,
    call: Callable[[], np.ndarray],
    eager_call: Callable[[], np.ndarray],
    rounds: int,
    device: str,
    floor: QualityFloor,
    results: list[dict[str, Any]],
    scenarios: tuple[str, ...] = SWITCHES,
) -> None:
    """`scenarios` in order (by default swap, then scale the new adapter, then unload it) on the compiled,
    warm pipeline behind `call`: each switch's time, what the next call compiled (dynamo's counters) and
    took, the median of `rounds` calls after it, and its images against eager of the same state. Each is
    appended to `results` as it finishes, so an interrupted run (Ctrl-C, SIGTERM from a time limit) keeps
    the finished ones, and the one under way is appended as `interrupted` with how long it had run."""
    available = operations(view, adapter)
    for scenario in scenarios:
        started = time.perf_counter()
        which = {"scenario": scenario, "mode": adapter.mode, "hotswap": adapter.mode == "hotswap"}
        try:
            results.append(
                {**which, **_switch(scenario, available[scenario], adapter, call, eager_call, rounds, device, floor)}
            )
        except KeyboardInterrupt:
            results.append({**which, "interrupted": True, "elapsed_s": time.perf_counter() - started})
            raise


def _switch(
    scenario: str,
    operation: Callable[[], None],
    adapter: ActiveAdapter,
    call: Callable[[], np.ndarray],
    eager_call: Callable[[], np.ndarray],
    rounds: int,
    device: str,
    floor: QualityFloor,
) -> dict[str, Any]:
    """One switch and the calls after it: its measured fields (the caller adds which switch it was)."""
    switch_s, _ = timed(device, operation)
    with CompileWatch() as watch:
        next_call_s, _ = timed(device, call)
    seconds: list[float] = []
    images: Any = None  # the last round's (rounds >= 1)
    for _ in range(rounds):
        elapsed, images = timed(device, call)
        seconds.append(elapsed)
    quality = assess(list(eager_call()), list(images), floor)
    summary = quality.summary()
    result = {
        "switch_s": switch_s,
        "graphs_compiled": watch.activity.graphs,
        "recompile_limit_hits": watch.activity.limit_hits,
        "next_call_s": next_call_s,
        "e2e_s": statistics.median(seconds),
        "e2e_rounds_s": seconds,
        "ssim_min": summary["ssim"],
        "psnr_min": summary["psnr"],
        "matches_eager": quality.passed,
        "message": "; ".join(quality.failures) or None,
    }
    if not quality.passed:
        logger.warning(
            "LoRA switch %s (%s): the compiled output no longer matches eager: %s",
            scenario,
            adapter.mode,
            result["message"],
        )
    logger.info(
        "LoRA switch %s (%s): %.3f s, next call %.3f s with %d graph(s) compiled, then %.3f s; SSIM %s vs eager",
        scenario,
        adapter.mode,
        switch_s,
        next_call_s,
        watch.activity.graphs,
        result["e2e_s"],
        summary["ssim"],
    )
    return result


def lora_switch_on(
    settings: Any,
    device: str,
    case: Any,
    pipe: Any,
    adapter: ActiveAdapter,
    caller: Callable[[Any], Callable[..., Any]],
    pair: tuple[str, int],
    record: dict[str, Any],
) -> None:
    """`--lora-switch` on the compiled, warm pipeline; eager images of each state from an uncompiled view.
    `caller(pipe)` is the case's call on a pipeline."""
    view = uncompiled_view(pipe)
    call, eager_call = caller(pipe), caller(view)
    record["lora_switch"] = []  # filled switch by switch: an interrupted run keeps the finished ones
    measure_switching(
        view,
        adapter,
        lambda: call(*pair),
        lambda: eager_call(*pair),
        settings.rounds,
        device,
        settings.quality_floor(case.backend),
        record["lora_switch"],
        settings.lora_switch,
    )
