"""The child process's side of an isolated case (diffbench.run.isolation calls `measure_in_child` by name):
a fresh BenchSession measures the case exactly as in-process and sends back what diffbench.run.isolated_case holds."""

from __future__ import annotations

import importlib
import os
from typing import Any

from diffbench.models.catalog import MODELS
from diffbench.results.records import RunFolder
from diffbench.run.compile_artifacts import save_compile_artifacts
from diffbench.run.isolated_case import CaseRequest, Reference, RoundsBenchmark
from diffbench.run.outcomes import outcome
from diffbench.run.session import BenchSession


def measure_in_child(request: CaseRequest) -> dict[str, Any]:
    """The child's side: run the case, never raise for the case's own failures (they are outcomes)."""
    importlib.import_module(request.backend_module)
    session = BenchSession(request.settings, RunFolder.existing(request.run_path, request.run_id))
    case, spec = request.case, MODELS[request.case.model]
    if request.reference_images is not None:
        session.references[case.reference_key] = Reference(request.reference_images, request.reference_e2e_s)
    record = session.start_record(case, spec)
    try:
        session.measure(case, spec, record, RoundsBenchmark())
    except Exception as error:  # every outcome goes back to the parent in the record
        if record["status"] == "running":  # a QualityError has already recorded its floor
            record.update(outcome(session.backends[case.backend], error))
    save_compile_artifacts()  # the parent compiled nothing of this case: the child writes its own file
    reference = session.references.get(case.reference_key)
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:  # --compile-cache-check: which folder this child compiled into
        record["inductor_cache_dir"] = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    return {
        "record": record,
        "reference_images": reference.images if reference is not None else None,
        "reference_e2e_s": reference.e2e_s if reference is not None else None,
    }
