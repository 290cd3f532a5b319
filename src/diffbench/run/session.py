"""Running one case: skip checks, build, apply the backend, warm up, time, check quality, record."""

from __future__ import annotations

import logging
import time
import traceback
from functools import partial
from typing import Any, cast

import numpy as np
import pytest
import torch

from diffbench.backends.base import Backend, get_backend_class, unpark
from diffbench.case import Case, Status
from diffbench.config.settings import RunSettings
from diffbench.errors import CaseFailure, QualityError, UnavailableError
from diffbench.measure.boundness import classify, gpu_activity
from diffbench.measure.flops import PipelineFlops
from diffbench.measure.rounds import Rounds
from diffbench.measure.telemetry import launch_probe
from diffbench.measure.timing import allocated_gib
from diffbench.models.catalog import MODELS, ModelSpec
from diffbench.models.controlnet import TASK as CONTROLNET_TASK
from diffbench.models.controlnet import control_record, task_components
from diffbench.models.inputs import prompt_seed_pairs
from diffbench.models.pipelines import PipelineCache, release_memory, shallow_copy
from diffbench.results.records import RunFolder, json_safe, new_record
from diffbench.run.caller import CaseCall, case_caller
from diffbench.run.children import ChildMeasurement
from diffbench.run.compile_artifacts import load_compile_artifacts, save_compile_artifacts
from diffbench.run.eager_pairing import time_eager_after
from diffbench.run.isolated_case import Reference
from diffbench.run.lora_case import ActiveAdapter, adapter_in
from diffbench.run.lora_switch import is_compiled, lora_switch_on
from diffbench.run.outcomes import images_of, non_finite_origin, outcome, quality_against_eager, skip_reason
from diffbench.run.roofline import Roofline
from diffbench.run.sweeps import run_sweeps
from diffbench.run.timed_rounds import time_rounds, warm_up

logger = logging.getLogger(__name__)

MEMORY_CREEP_TOLERANCE_GIB = 0.0625  # allocator granularity and cuBLAS/cuDNN workspaces, not models


class BenchSession(ChildMeasurement):
    """State shared by the cases of one pytest run: settings, pipeline cache, eager references."""

    def __init__(self, settings: RunSettings, run_folder: RunFolder):
        self.settings = settings
        self.device = settings.resolved_device()
        self.run_folder = run_folder
        self.cache = PipelineCache()
        self.references: dict[tuple, Reference] = {}
        self.roofline = Roofline(self.device)
        self.backends: dict[str, Backend] = {
            name: get_backend_class(name)(settings.backend_options.get(name)) for name in settings.backends
        }
        self.memory_baseline_gib = allocated_gib(self.device)
        self.generator_device = settings.generator_device(self.device)
        self.launch_probes: dict[str, Any] = {"start": launch_probe(self.device)}  # launch rate; drift at the end
        load_compile_artifacts()  # DIFFBENCH_COMPILE_ARTIFACTS, once per process

    def close(self) -> dict[str, Any]:
        """Release the cached model and references; report whether device memory went back to where
        the run started (creep = memory a case left behind: a leak to fix, and numbers to distrust)."""
        self.references.clear()
        self.cache.release()
        release_memory()
        end = allocated_gib(self.device)
        report = {
            "baseline_gib": self.memory_baseline_gib,
            "end_gib": end,
            "creep_gib": None if end is None or self.memory_baseline_gib is None else end - self.memory_baseline_gib,
        }
        self.launch_probes["end"] = launch_probe(self.device)
        start_us, end_us = self.launch_probes["start"]["us_per_launch"], self.launch_probes["end"]["us_per_launch"]
        self.launch_probes["drift"] = end_us / start_us - 1.0 if start_us and end_us else None
        if report["creep_gib"] is not None and report["creep_gib"] > MEMORY_CREEP_TOLERANCE_GIB:
            logger.warning(
                "device memory did not return to its baseline: %.3f GiB at the start, %.3f GiB after the last case",
                self.memory_baseline_gib,
                end,
            )
        return report

    def skip_reason(self, case: Case, spec: ModelSpec) -> str | None:
        """Why `case` cannot run here, precisely enough to act on; None if it can (diffbench.run.outcomes)."""
        return skip_reason(self.settings, self.device, self.backends[case.backend], case, spec)

    def start_record(self, case: Case, spec: ModelSpec) -> dict[str, Any]:
        dtype = self.settings.torch_dtype(spec, self.device)
        return new_record(
            case=case.id,
            model=case.model,
            task=case.task,
            resolution=str(case.resolution),
            backend=case.backend,
            weights=self.settings.weights_for(spec),
            dtype=str(dtype).removeprefix("torch."),
            device=self.device,
            steps=self.settings.steps_for(spec),
            batch=self.settings.batch,
            seed=self.settings.seed,
            status="running",
            message=None,
            run_id=self.run_folder.run_id,
            backend_options=self.backends[case.backend].options,
            generator=self.generator_device,
        )

    def run(self, case: Case, benchmark: Any) -> dict[str, Any]:
        """Run `case` under pytest-benchmark; the record is written whatever the outcome."""
        spec = MODELS[case.model]
        record = self.start_record(case, spec)
        started = time.perf_counter()
        failure: Exception | None = None
        try:
            reason = self.skip_reason(case, spec)
            if reason:
                raise UnavailableError(reason)
            if self.settings.compile_cache_check and self.backends[case.backend].config_family == "compile":
                self._measure_cold_and_warm(case, spec, record, benchmark)
            elif self.settings.isolate or self.backends[case.backend].isolated:
                self._measure_isolated(case, spec, record, benchmark)
            else:
                self.measure(case, spec, record, benchmark)
        except UnavailableError as error:
            record.update(outcome(self.backends[case.backend], error))
            pytest.skip(str(error))
        except torch.cuda.OutOfMemoryError as error:
            # A result, as the seeds' "OOM" rows: recorded, and not re-raised from here, so the
            # traceback (which holds the case's tensors) is gone before the memory is released below.
            record.update(outcome(self.backends[case.backend], error))
        except Exception as error:
            if record["status"] == "running":  # a QualityError has already recorded its floor
                record.update(outcome(self.backends[case.backend], error))
            # Raised again below without its traceback, whose frames hold the case's pipeline: pytest
            # keeps the last failure (sys.last_traceback), which would keep that memory allocated.
            logger.error("%s failed:\n%s", case.id, "".join(traceback.format_exception(error)))
            failure = (
                QualityError(str(error))
                if isinstance(error, QualityError)
                else CaseFailure(f"{case.id}: {record['message']}")
            )
        finally:
            if record["status"] == "running":  # Ctrl-C, or SIGTERM (diffbench.run.interrupt)
                record.update(
                    status=Status.INTERRUPTED,
                    message=f"interrupted after {time.perf_counter() - started:.1f} s, "
                    "before the case finished (Ctrl-C or SIGTERM, e.g. a time limit)",
                )
            record["case_s"] = time.perf_counter() - started  # the device time this case cost, skips included
            self._finish_case(case, record, benchmark)
        if failure is not None:
            raise failure
        if record["status"] == Status.OOM:
            pytest.fail(
                f"{case.id}: out of memory ({record['message']}); memory released, the run goes on", pytrace=False
            )
        return record

    def _finish_case(self, case: Case, record: dict[str, Any], benchmark: Any) -> None:
        self.run_folder.append(record)
        benchmark.extra_info.update(json_safe(record))
        if case.backend != "eager":
            save_compile_artifacts()  # before the reset: what this case compiled (DIFFBENCH_COMPILE_ARTIFACTS)
            torch._dynamo.reset()  # drop compiled graphs (and the module copies they hold)
        release_memory()

    def _caller(self, pipe: Any, spec: ModelSpec, case: Case, **change: Any) -> CaseCall:
        """This case's call on `pipe` (diffbench.run.caller); `change` sets steps, resolution or batch (sweeps)."""
        return case_caller(self.settings, self.generator_device, pipe, spec, case, **change)

    def measure(self, case: Case, spec: ModelSpec, record: dict[str, Any], benchmark: Any) -> None:
        settings = self.settings
        dtype = settings.torch_dtype(spec, self.device)
        loaded = self.cache.get(spec, record["weights"], dtype, self.device, settings.variant)
        record["load_s"] = loaded.load_s
        extra_components = task_components(case.task, spec, settings, self.device)  # the ControlNet
        base = self.cache.task_pipeline(loaded, spec, case.task, extra_components)
        if case.task == CONTROLNET_TASK:
            record.update(control_record(case, settings, self.run_folder, loaded.extra_load_s.get("controlnet")))
        with adapter_in(base, settings.lora, case.lora_mode, self.device) as adapter:  # --lora: loaded, then removed
            record.update(adapter.record if adapter else {})
            self._measure_pipeline(case, spec, base, record, benchmark, adapter)

    def _measure_pipeline(
        self,
        case: Case,
        spec: ModelSpec,
        base: Any,
        record: dict[str, Any],
        benchmark: Any,
        adapter: ActiveAdapter | None,
    ) -> None:
        settings = self.settings
        backend = self.backends[case.backend]
        pairs = prompt_seed_pairs(case.task, settings.prompts, settings.seed, settings.prompt)
        if case.backend != "eager" and case.reference_key not in self.references:
            self._make_reference(case, spec, base, pairs)  # before apply: it may park cached modules
        flops = None
        if settings.roofline and not backend.skips_work:  # same FLOPs as eager: counted on eager, uncompiled
            flops = self._count_flops(case, spec, shallow_copy(base), pairs[0], "eager")
        pipe = backend.apply(shallow_copy(base))
        if settings.roofline and backend.skips_work:  # a cache skips work: count what it runs
            flops = self._count_flops(case, spec, pipe, pairs[0], case.backend)
        try:
            self._run_pipeline(case, spec, pipe, pairs, record, benchmark, flops, base)
            if adapter is not None and settings.lora_switch and is_compiled(pipe, adapter):
                lora_switch_on(
                    settings,
                    self.device,
                    case,
                    pipe,
                    adapter,
                    lambda other: self._caller(other, spec, case),
                    pairs[0],
                    record,
                )
        finally:
            backend.restore(pipe)  # give shared components back as they were, whatever happened
            unpark(pipe)
        if record.get("pairing") is None and record["status"] == Status.OK and case.backend != "eager":
            eager_pipe = shallow_copy(base)
            time_eager_after(
                settings,
                self.device,
                case,
                self.references.get(case.reference_key),
                eager_pipe,
                self._caller(eager_pipe, spec, case),
                pairs[0],
                record,
            )

    def _count_flops(self, case: Case, spec: ModelSpec, pipe: Any, pair: tuple[str, int], kind: str) -> PipelineFlops:
        """One call's FLOPs, counted once per case group and computation (`kind`: eager or the backend's)."""
        return self.roofline.count((case.reference_key, kind), pipe, lambda: self._caller(pipe, spec, case)(*pair))

    def _make_reference(self, case: Case, spec: ModelSpec, base: Any, pairs: list[tuple[str, int]]) -> None:
        """Eager's images when eager was not selected in this run: made untimed, for the quality gate."""
        logger.info("%s: eager reference images (eager not selected, so not timed)", case.id)
        eager_call = self._caller(shallow_copy(base), spec, case)
        self.references[case.reference_key] = Reference([img for p in pairs for img in images_of(eager_call(*p))])

    def _run_pipeline(
        self,
        case: Case,
        spec: ModelSpec,
        pipe: Any,
        pairs: list[tuple[str, int]],
        record: dict[str, Any],
        benchmark: Any,
        flops: PipelineFlops | None = None,
        base: Any = None,
    ) -> None:
        """Warm up, time the rounds, save the image, check quality against eager, then the sweeps (if any)."""
        settings = self.settings
        call = self._caller(pipe, spec, case)
        rounds = Rounds()
        warm_up(settings, self.device, case, call, pairs[0], rounds, record)
        time_rounds(
            settings,
            self.device,
            self.backends[case.backend],
            case,
            settings.steps_for(spec),
            (pipe, call, pairs[0], base),
            rounds,
            record,
            benchmark,
            lambda other, **change: self._caller(other, spec, case, **change),
        )
        if flops is not None:
            dtype = self.settings.torch_dtype(spec, self.device)
            record.update(
                self.roofline.record(flops, self.backends[case.backend], dtype, record["its"], record["e2e_s"])
            )
            activity = gpu_activity(self.device, lambda: call(*pairs[0]), record["e2e_s"])  # one more call, profiled
            record.update(activity or {"gpu_idle_fraction": None})
            record["bound"] = classify(record["gpu_idle_fraction"], record.get("mfu"))
        logger.info("%s: E2E median %.3f s; quality over %d prompt(s)", case.id, record["e2e_s"], len(pairs))
        record["image"] = self.run_folder.save_image(case.id, (last := cast(np.ndarray, rounds.last_images))[0])
        outputs = images_of(last) + [img for p in pairs[1:] for img in images_of(call(*p))]
        quality = quality_against_eager(
            case, settings.quality_floor(case.backend), outputs, rounds, record, self.references
        )
        record.update(
            quality.summary(), quality_floor=str(settings.quality_floor(case.backend)), quality_images=len(outputs)
        )
        if not quality.passed:  # a NaN/inf image: one more call, eager, names the module where it starts
            quality.failures += non_finite_origin(pipe, outputs, lambda: call(*pairs[0]))
            record.update(status=Status.FAILED, message="quality gate: " + "; ".join(quality.failures))
            raise QualityError(f"{case.id}: " + "; ".join(quality.failures))
        record["status"] = Status.OK
        run_sweeps(
            settings, self.device, lambda **change: partial(self._caller(pipe, spec, case, **change), *pairs[0]), record
        )
