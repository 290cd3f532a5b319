"""Measuring a case in child processes (`--isolate`, `--case-timeout`, `--compile-cache-check`): the part
of the runner's BenchSession that talks to diffbench.run.isolation."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from diffbench.backends.base import Backend
from diffbench.case import Case, Status
from diffbench.config.settings import RunSettings
from diffbench.errors import CaseFailure, UnavailableError
from diffbench.models.catalog import ModelSpec
from diffbench.results.records import RunFolder
from diffbench.run.isolated_case import CaseRequest, Reference, replay_rounds
from diffbench.run.isolation import call_in_child

logger = logging.getLogger(__name__)


class ChildMeasurement:
    """BenchSession's child-process measurements; it provides settings, run_folder, references and backends."""

    settings: RunSettings
    run_folder: RunFolder
    references: dict[tuple, Reference]
    backends: dict[str, Backend]

    def _measure_cold_and_warm(self, case: Case, spec: ModelSpec, record: dict[str, Any], benchmark: Any) -> None:
        """`--compile-cache-check`: the case in a fresh process with an empty inductor cache folder (its
        warmup is the cold compile), then its warmup again in a second fresh process sharing that folder
        (`warmup_cached_s`). Two processes, because in one the in-memory caches would fake the warm figure."""
        cache = self.run_folder.path / "compile-cache" / case.id
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        env = {"TORCHINDUCTOR_CACHE_DIR": str(cache), "TRITON_CACHE_DIR": str(cache / "triton")}
        try:
            self._measure_isolated(case, spec, record, benchmark, env)
            warm = call_in_child(
                "diffbench.run.child:measure_in_child",
                self._case_request(case),
                timeout_s=self.settings.case_timeout_s,
                label=f"{case.id} (warm cache)",
                env=env,
                log_path=self.run_folder.path / "logs" / f"{case.id}-warm-cache.log",
            )
            if warm.ok and warm.value["record"].get("warmup_s") is not None:
                record["warmup_cached_s"] = warm.value["record"]["warmup_s"]
            else:
                record["warmup_cached_message"] = warm.error or warm.value["record"].get("message")
            logger.info(
                "%s: warmup %.2f s with an empty compile cache, %s s with it warm",
                case.id,
                record.get("warmup_s") or float("nan"),
                record.get("warmup_cached_s", "-"),
            )
        finally:
            shutil.rmtree(cache, ignore_errors=True)  # compiled artifacts of a full-size model: hundreds of MB

    def _case_request(self, case: Case) -> CaseRequest:
        reference = self.references.get(case.reference_key)
        return CaseRequest(
            settings=self.settings,
            run_path=str(self.run_folder.path),
            run_id=self.run_folder.run_id,
            case=case,
            backend_module=type(self.backends[case.backend]).__module__,
            reference_images=reference.images if reference else None,
            reference_e2e_s=reference.e2e_s if reference else None,
        )

    def _measure_isolated(
        self, case: Case, spec: ModelSpec, record: dict[str, Any], benchmark: Any, env: dict[str, str] | None = None
    ) -> None:
        """Measure `case` in a child process; its death, hang or error becomes this record's failure."""
        backend = self.backends[case.backend]
        request = self._case_request(case)
        log_path = self.run_folder.path / "logs" / f"{case.id}.log"
        record["child_log"] = str(log_path.relative_to(self.run_folder.path))
        logger.info(
            "%s: measured in a child process (timeout %g s), output in %s",
            case.id,
            self.settings.case_timeout_s,
            log_path,
        )
        child = call_in_child(
            "diffbench.run.child:measure_in_child",
            request,
            timeout_s=self.settings.case_timeout_s,
            log_path=log_path,
            label=case.id,
            env=env,
        )
        if not child.ok:
            message = f"isolated case: {child.error}"
            explanation = backend.explain(f"{child.error}\n{child.output_tail}")
            message += f". {explanation}" if explanation else ""
            message += f". Last output:\n{child.output_tail}" if child.output_tail else ""
            record.update(status=Status.FAILED, message=message)
            raise CaseFailure(message)
        result = child.value
        record.update({key: value for key, value in result["record"].items() if key != "child_log"})
        if result["reference_images"] is not None and case.reference_key not in self.references:
            self.references[case.reference_key] = Reference(result["reference_images"], result["reference_e2e_s"])
        if record["status"] == Status.SKIPPED:
            raise UnavailableError(record["message"])
        replay_rounds(benchmark, record.get("e2e_rounds_s") or [])
        if record["status"] == Status.FAILED:
            raise CaseFailure(record["message"])
