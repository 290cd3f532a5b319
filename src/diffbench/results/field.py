"""What a record field is (Field) and how `diffbench compare` gates one (Gate); the fields themselves are
declared once, in diffbench.results.schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from diffbench.results.cells import format_value


@dataclass(frozen=True)
class Gate:
    """How `diffbench compare` gates a field: `name` in `--fail NAME:AMOUNT` and in its rows, which way is
    better, the default threshold `fail` (`10%` of BASE, or an amount in the unit), `min_change` (changes
    this small, in the unit, never count: one-sample metrics jitter) and `ignore_above` (both values at or
    above it: no difference that matters)."""

    name: str
    higher_is_better: bool
    fail: str
    min_change: float = 0.0
    ignore_above: float | None = None


@dataclass(frozen=True)
class Field:
    """One record key: `unit` as shown after the value, `label` for a column, `digits` of its numbers.

    `rounds`: the key of the per-round values this field is the median of (compare's noise test reads them);
    `every`: every record has the key, None until measured (records.RECORD_KEYS); `table` and `report`: its
    column label in the terminal table and in the report's per-group table (None: no column there);
    `sparse`: the report's column only when a record of the whole report (`"report"`) or of the group
    (`"group"`) has a value; `text`: the cell, when it is more than format_field's number; `gate`: how
    `diffbench compare` gates it (None: it does not). The tables show their columns in the order below.
    """

    key: str
    unit: str
    label: str
    doc: str
    digits: int = 2
    rounds: str | None = None
    every: bool = False
    table: str | None = None
    report: str | None = None
    sparse: str | None = None
    text: Callable[[dict[str, Any]], str] | None = None
    gate: Gate | None = None

    def cell(self, record: dict[str, Any]) -> str:
        """The field's table cell for `record`."""
        return self.text(record) if self.text else format_value(record.get(self.key), self.digits)

    @property
    def gated(self) -> Gate:
        """The gate of a field compare gates on (diffbench.results.thresholds.metrics holds only those)."""
        if self.gate is None:
            raise ValueError(f"{self.key} is not a metric diffbench compare gates on")
        return self.gate
