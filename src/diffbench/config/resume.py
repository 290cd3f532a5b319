"""`--resume RUN`: go on with an interrupted run in its own folder, re-running only what is unfinished.

A reference group (model, task, resolution) is done when every selected case of it has an `ok` or
`skipped` record in the run; any other group runs again whole, eager included, so its speedups and
SSIM/PSNR compare cases of one process. New records are appended; readers take a case's last record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from diffbench.case import Case, Status
from diffbench.errors import OptionError
from diffbench.results.history import HistoryError, read_run_meta
from diffbench.results.records import read_results

FINISHED = (Status.OK, Status.SKIPPED)


def check_resume_folder(value: str | None) -> Path | None:
    """The run folder `--resume` names, validated: it must hold a readable results.jsonl."""
    if not value:
        return None
    folder = Path(value).expanduser()
    if folder.name == "results.jsonl":
        folder = folder.parent
    results = folder / "results.jsonl"
    if not results.is_file():
        raise OptionError(
            f"--resume {value!r}: no results.jsonl there; give the folder of an earlier run, "
            "e.g. reports/runs/20261122T093736Z"
        )
    try:
        read_results(results)
    except ValueError as error:
        raise OptionError(f"--resume {value!r}: {results} is corrupt ({error})") from None
    try:
        read_run_meta(folder)  # the resumed run adds its command to it
    except HistoryError as error:
        raise OptionError(f"--resume {value!r}: {error}") from None
    return folder


def finished_cases(folder: Path) -> set[str]:
    """Ids of the cases whose last record in the run says they finished."""
    last: dict[Any, Any] = {}  # case -> status, as the records have them
    for record in read_results(folder / "results.jsonl"):
        last[record.get("case")] = record.get("status")
    return {case for case, status in last.items() if status in FINISHED}


def split_unfinished(
    items: Sequence[Any], finished: set[str], case_of: Callable[[Any], Case | None]
) -> tuple[list, list]:
    """(kept, deselected) pytest items: the items of every group with an unfinished case are kept."""
    unfinished_groups = {
        case.reference_key for case in map(case_of, items) if case is not None and case.id not in finished
    }
    kept: list[Any] = []
    deselected: list[Any] = []
    for item in items:
        case = case_of(item)
        done = case is not None and case.reference_key not in unfinished_groups
        (deselected if done else kept).append(item)
    return kept, deselected
