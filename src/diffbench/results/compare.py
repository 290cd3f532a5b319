"""Compare two runs case by case on every metric, against per-metric thresholds, noise-aware for timings.

A metric regresses when NEW is worse than BASE by more than its threshold (`10%`: relative to BASE;
`0.02`: absolute, in the metric's unit). For the timings measured over rounds (e2e, its) the rounds
must also differ beyond their noise: a one-sided exact Mann-Whitney test on the two runs' rounds at
p <= 0.05 (`diffbench.results.noise`). With the default 6 rounds a side one stray round on either side still
lets a clear change through (with 3 a side only a complete ordering could); with fewer than the test
needs, complete separation of the rounds is required. A change for the worse beyond the threshold that
the test cannot decide is `inconclusive` when the rounds lean that way (more rounds would decide: the
row says how many), which fails the comparison unless told otherwise, and `noise` when they do not.
Memory, warmup and quality compare the recorded values against their thresholds only. A case `ok` in
BASE and not in NEW regresses on its status. A case is compared only with itself measured on the same
machine and stack (GPU, or the CPU without one; driver, CUDA, torch, packages: each case's own in a run
merged from several machines), else it is `not comparable`, with the difference, unless `across_stacks`.
A NEW run merged from shards of which some are missing or failed fails the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffbench.case import Status
from diffbench.results.field import Field
from diffbench.results.history import HistoryError, Run, differing_fields, shard_problems, stack_differences
from diffbench.results.noise import NoiseTest, higher_beyond_noise
from diffbench.results.thresholds import Threshold, metrics


@dataclass
class Row:
    """One case and metric (or `status`) in both runs, and the verdict: `same` (within the threshold),
    `improved`, `noise` (beyond the threshold, inside the rounds' noise), `inconclusive` (worse beyond the
    threshold, and too few rounds to tell), `REGRESSED`, `fixed` (status), or `not comparable` (a warmup
    whose compile cache was cold in one run and warm in the other; metric `machine`: the whole case, measured
    on another machine or stack)."""

    case: str
    metric: str
    base: Any
    new: Any
    change: float | None = None  # new - base
    relative: float | None = None  # (new - base) / |base|
    threshold: str = ""
    verdict: str = "same"
    p_value: float | None = None
    noise_rule: str | None = None
    rounds: tuple[int, int] | None = None  # timed rounds (BASE, NEW) the noise test had
    rounds_needed: int | None = None  # inconclusive: rounds a side that would decide
    message: str | None = None


@dataclass
class Comparison:
    """Every compared row, the cases found in one run only, and the stack differences."""

    base: dict[str, Any]
    new: dict[str, Any]
    thresholds: dict[str, str]
    stack_differences: list[str]
    rows: list[Row] = field(default_factory=list)
    only_in_base: list[str] = field(default_factory=list)
    only_in_new: list[str] = field(default_factory=list)
    inconclusive_fails: bool = True  # `--inconclusive fail` (the default) or `pass`
    shard_problems: list[str] = field(default_factory=list)  # NEW's missing or failed shards: a failure
    compared_across: list[str] = field(default_factory=list)  # `case: different ...`, with --across-stacks

    @property
    def not_comparable(self) -> list[Row]:
        """One row per case measured on another machine or stack in NEW than in BASE."""
        return [row for row in self.rows if row.metric == "machine"]

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "REGRESSED"]

    @property
    def inconclusive(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "inconclusive"]

    @property
    def failed(self) -> bool:
        return (
            bool(self.regressions) or (self.inconclusive_fails and bool(self.inconclusive)) or bool(self.shard_problems)
        )


def _noise_test(metric: Field, base_record: dict, new_record: dict, worse: bool) -> NoiseTest:
    """Whether the change of a timing lies outside the noise of the two runs' rounds."""
    base_rounds, new_rounds = base_record.get(str(metric.rounds)), new_record.get(str(metric.rounds))
    if worse != metric.gated.higher_is_better:  # NEW is higher: a worse e2e, or a better it/s
        return higher_beyond_noise(base_rounds, new_rounds)
    return higher_beyond_noise(new_rounds, base_rounds)


def compare_metric(case: str, metric: Field, base_record: dict, new_record: dict, threshold: Threshold) -> Row | None:
    """The row of one gated field of one case; None when either run has no value for it (e.g. CPU memory)."""
    base, new = base_record.get(metric.key), new_record.get(metric.key)
    if base is None or new is None:
        return None
    gate = metric.gated
    row = Row(
        case,
        gate.name,
        base,
        new,
        change=new - base,
        relative=(new - base) / abs(base) if base else None,
        threshold=str(threshold),
    )
    caches = (base_record.get("compile_cache"), new_record.get("compile_cache"))
    if gate.name == "warmup" and None not in caches and caches[0] != caches[1]:
        row.verdict = "not comparable"  # a cold compile is no warm one's regression, nor the other way round
        row.message = f"compile cache {caches[0]} in BASE, {caches[1]} in NEW"
        return row
    negligible = abs(new - base) <= gate.min_change or (
        gate.ignore_above is not None and min(base, new) >= gate.ignore_above
    )
    if negligible or not threshold.exceeded(base, new):
        return row
    worse = (new < base) if gate.higher_is_better else (new > base)
    if metric.rounds:
        test = _noise_test(metric, base_record, new_record, worse)
        row.p_value, row.noise_rule, row.rounds = (
            test.p_value,
            test.rule,
            _round_counts(metric, base_record, new_record),
        )
        if not test.outside:  # the rounds cannot tell: undecided if they lean the worse way, else noise
            undecided = worse and test.rounds_needed is not None
            row.verdict, row.rounds_needed = ("inconclusive", test.rounds_needed) if undecided else ("noise", None)
            return row
    row.verdict = "REGRESSED" if worse else "improved"
    return row


def _round_counts(metric: Field, base_record: dict, new_record: dict) -> tuple[int, int]:
    def count(record: dict) -> int:
        return len([x for x in record.get(str(metric.rounds)) or [] if x is not None])

    return count(base_record), count(new_record)


def compare_status(case: str, base_record: dict, new_record: dict) -> Row | None:
    """A row when the status changed: ok -> anything else regresses, anything -> ok is fixed."""
    base, new = base_record.get("status"), new_record.get("status")
    if base == new:
        return None
    verdict = "REGRESSED" if base == Status.OK else "fixed" if new == Status.OK else "same"
    return Row(case, "status", base, new, verdict=verdict, message=new_record.get("message"))


def describe_run(run: Run) -> dict[str, Any]:
    return {"source": str(run.source), "run_id": run.run_id, "label": run.label, "stack": run.stack}


def check_comparable(run: Run) -> None:
    """Raise HistoryError, naming the file, the case and the key, when a run cannot be compared."""
    if not run.records:
        raise HistoryError(f"{run.source} holds no diffbench case record")
    for case, record in run.records.items():
        for metric in metrics().values():
            value = record.get(metric.key)
            if value is not None and not _is_number(value):
                raise HistoryError(f"{run.source}: case {case!r} has a non-numeric {metric.key}: {value!r}")
            rounds = record.get(metric.rounds) if metric.rounds else None
            if rounds is not None and not (
                isinstance(rounds, list) and all(item is None or _is_number(item) for item in rounds)
            ):
                raise HistoryError(
                    f"{run.source}: case {case!r} has a {metric.rounds} that is not a list of numbers: {rounds!r}"
                )


def check_overlap(base: Run, new: Run) -> None:
    """HistoryError when no case of BASE is in NEW: a run that lost its cases must not pass as unchanged."""
    if not set(base.records) & set(new.records):
        raise HistoryError(
            f"no case of BASE ({len(base.records)} case(s), e.g. {next(iter(base.records))}) is in "
            f"NEW {new.source} ({len(new.records)} other case(s)): nothing to compare"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


STACK_NAMES = {
    "gpu": "GPU",
    "gpu_count": "GPU count",
    "cuda": "CUDA",
    "compute_capability": "compute capability",
    "cpu": "CPU",
}


def machine_text(stack: dict[str, Any]) -> str:
    """`NVIDIA H100 80GB HBM3, torch 2.11.0+cu130`: the machine and stack a case ran on, in short."""
    return f"{stack.get('gpu') or stack.get('cpu') or 'CPU'}, torch {stack.get('torch')}"


def compare_machines(case: str, base: dict[str, Any], new: dict[str, Any]) -> Row | None:
    """A `not comparable` row when the case ran on another machine or stack in NEW (`different GPU (A -> B),
    different torch (x -> y)`); None when both are the same."""
    names = differing_fields(base, new)
    implied = {"package torch": "torch", "cpu": "gpu"}  # torch's build says it; a GPU run has no CPU device
    names = [name for name in names if implied.get(name) not in names]
    if not names:
        return None
    why = ", ".join(
        f"different {STACK_NAMES.get(name, name.removeprefix('package '))} ({base.get(name)} -> {new.get(name)})"
        for name in names
    )
    return Row(case, "machine", machine_text(base), machine_text(new), verdict="not comparable", message=why)


def compare_runs(base: Run, new: Run, thresholds: dict[str, Threshold], across_stacks: bool = False) -> Comparison:
    """Every case of both runs, metric by metric, in BASE's order (NEW-only cases are listed); a case whose
    machine or stack differs is one `not comparable` row, unless `across_stacks` compares it all the same."""
    comparison = Comparison(
        describe_run(base),
        describe_run(new),
        {k: str(v) for k, v in thresholds.items()},
        stack_differences(base.stack, new.stack),
        shard_problems=shard_problems(new.shards),
    )
    for case, base_record in base.records.items():
        new_record = new.records.get(case)
        if new_record is None:
            comparison.only_in_base.append(case)
            continue
        machine = compare_machines(case, base.stack_of(case), new.stack_of(case))
        if machine is not None and across_stacks:
            comparison.compared_across.append(f"{case}: {machine.message}")
        elif machine is not None:
            comparison.rows.append(machine)
            continue
        status = compare_status(case, base_record, new_record)
        comparison.rows.extend([status] if status else [])
        for name, metric in metrics().items():
            row = compare_metric(case, metric, base_record, new_record, thresholds[name])
            comparison.rows.extend([row] if row else [])
    comparison.only_in_new = [case for case in new.records if case not in base.records]
    return comparison
