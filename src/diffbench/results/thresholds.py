"""What `diffbench compare` compares: the metrics results.schema gates (their record keys, which way is worse,
their rounds) and the thresholds a change must pass (`--fail e2e:10%,ssim:0.02`), with their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from diffbench.errors import OptionError
from diffbench.results import schema


def metrics() -> dict[str, schema.Field]:
    """The fields results.schema declares a Gate for, by the gate's name: the timings measured over rounds
    (their noise is tested) first, then the others, each group in the schema's order."""
    gated = sorted((field for field in schema.FIELDS if field.gate), key=lambda field: field.rounds is None)
    return {field.gated.name: field for field in gated}


def default_fail() -> str:
    """The default thresholds, `e2e:10%,its:10%,...`: each gated field's `fail`."""
    return ",".join(f"{name}:{field.gated.fail}" for name, field in metrics().items())


@dataclass(frozen=True)
class Threshold:
    """How much worse a metric may get: a fraction of BASE (`relative`) or an amount in its unit."""

    amount: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"

    def exceeded(self, base: float, new: float) -> bool:
        limit = self.amount * abs(base) if self.relative else self.amount
        return abs(new - base) > limit


def _parse_threshold(item: str) -> tuple[str, Threshold]:
    valid = f"valid metrics: {', '.join(metrics())}"
    name, separator, value = (part.strip() for part in item.partition(":"))
    if not separator or not value:
        raise OptionError(f"--fail {item!r}: expected METRIC:AMOUNT such as e2e:10% or ssim:0.02; {valid}")
    if name not in metrics():
        raise OptionError(f"--fail {item!r}: unknown metric {name!r}; {valid}")
    relative = value.endswith("%")
    try:
        amount = float(value.rstrip("%").strip())
    except ValueError:
        raise OptionError(f"--fail {item!r}: {value!r} is not a number or a percentage (10%, 0.02); {valid}") from None
    if not amount >= 0 or amount == float("inf"):
        raise OptionError(f"--fail {item!r}: the amount must be a finite number >= 0; {valid}")
    return name, Threshold(amount / 100 if relative else amount, relative)


def parse_thresholds(text: str) -> dict[str, Threshold]:
    """The defaults, overridden by each `metric:amount` of a comma-separated list (`e2e:5%,ssim:0.01`)."""
    thresholds = dict(_parse_threshold(item) for item in default_fail().split(","))
    thresholds.update(_parse_threshold(item) for item in text.split(",") if item.strip())
    return thresholds
