"""`--shard INDEX/COUNT`: one pytest process per GPU, each running its share of the selected matrix.

Cases are split by reference group (model, task, resolution: `Case.reference_key`), never inside one, so
each group's eager reference runs in the same process as the backends compared against it. The rule:

1. the selected cases (after `-k`/`-m`) form groups in matrix order: model by model, then task, then size;
2. a group's cost is its number of cases;
3. each group goes to the shard in which the middle of its cost falls on the cumulative cost line
   (group g, with cost c_g and the groups before it costing S_g, goes to floor(COUNT * (S_g + c_g / 2) / total)).

So shards are contiguous runs of groups: a model's groups land in as few shards as possible, and each
shard builds (loads) each model once. Every shard's cost lies within one group's cost of total / COUNT,
and no shard is empty while there are at least COUNT groups of equal cost.

The cost is the number of cases, not a duration from saved runs, for two reasons: on a GPU a case's
time is dominated by its warmup (the compile, ~2 minutes for SDXL on an H100) and hardly by its
resolution; and the split depends only on the command line, so shards started at different times
compute the same split, whereas saved runs change as the shards write theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from diffbench.case import Case
from diffbench.errors import OptionError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` (from 0) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard | None:
    """`--shard 0/2` (the first of two shards); None when the option is absent."""
    if text is None:
        return None
    match = _SHARD.match(text)
    if not match:
        raise OptionError(
            f"--shard {text!r}: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/2 "
            "for the first of two shards and --shard 1/2 for the second"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise OptionError(f"--shard {text!r}: COUNT must be at least 1")
    if index >= count:
        valid = ", ".join(f"{i}/{count}" for i in range(min(count, 4))) + (", ..." if count > 4 else "")
        raise OptionError(f"--shard {text!r}: INDEX must be below COUNT (shards are numbered from 0); valid: {valid}")
    return Shard(index, count)


def reference_groups(cases: Iterable[Case]) -> list[list[Case]]:
    """The cases grouped by reference key, groups in the order their first case comes."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.reference_key, []).append(case)
    return list(groups.values())


def assign_groups(costs: Sequence[float], count: int) -> list[int]:
    """The shard of each group: where the middle of the group's cost falls on the cumulative cost line."""
    total = sum(costs)
    if total <= 0:
        return [0] * len(costs)
    shards, before = [], 0.0
    for cost in costs:
        middle = before + cost / 2
        shards.append(min(count - 1, int(count * middle / total)))
        before += cost
    return shards


def shard_of_cases(cases: Sequence[Case], count: int) -> dict[str, int]:
    """Case id -> the shard (of `count`) that runs it."""
    groups = reference_groups(cases)
    shards = assign_groups([len(group) for group in groups], count)
    return {case.id: shard for group, shard in zip(groups, shards) for case in group}


def split_items(items: Sequence[Any], shard: Shard, case_of: Callable[[Any], Case | None]) -> tuple[list, list]:
    """(kept, deselected) pytest items for `shard`. Items that are no matrix case run in shard 0 only."""
    cases = [case for case in map(case_of, items) if case is not None]
    owner = shard_of_cases(cases, shard.count)
    kept: list[Any] = []
    deselected: list[Any] = []
    for item in items:
        case = case_of(item)
        mine = owner[case.id] == shard.index if case is not None else shard.index == 0
        (kept if mine else deselected).append(item)
    return kept, deselected
