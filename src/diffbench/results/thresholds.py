"""What `diffbench compare` compares: each metric (its record keys, which way is worse, its rounds) and the
thresholds a change must pass (`--fail e2e:10%,ssim:0.02`), with their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from diffbench.errors import OptionError
from diffbench.results.schema import FIELD


@dataclass(frozen=True)
class Metric:
    """A compared metric: its record key, the key of its rounds (timings), and which way is better."""

    name: str
    key: str
    rounds_key: str | None
    higher_is_better: bool
    unit: str
    digits: int
    min_change: float = 0.0  # changes this small (in the unit) never count: one-sample metrics jitter
    ignore_above: float | None = None  # both values at or above this: no difference that matters


METRICS = {
    metric.name: metric
    for metric in (
        Metric("e2e", "e2e_s", "e2e_rounds_s", False, "s", 3),
        Metric("its", "its", "its_rounds", True, "it/s", 2),
        Metric("warmup", "warmup_s", None, False, "s", 2, min_change=1.0),  # a single sample: +-1 s is jitter
        Metric("peak_mem", "peak_mem_gib", None, False, "GiB", 2),
        Metric("ssim", "ssim", None, True, "", 4),
        Metric("psnr", "psnr", None, True, "dB", 1, ignore_above=60.0),  # >= 60 dB: identical to the eye and to SSIM
        # NVML's energy counter over the timed rounds (GPU runs only), unit and digits as schema declares them
        Metric(
            "energy",
            "energy_per_image_j",
            None,
            FIELD["energy_per_image_j"].compare == "higher",
            FIELD["energy_per_image_j"].unit,
            FIELD["energy_per_image_j"].digits,
        ),
    )
}
DEFAULT_FAIL = "e2e:10%,its:10%,peak_mem:10%,warmup:25%,ssim:0.02,psnr:2,energy:15%"


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
    valid = f"valid metrics: {', '.join(METRICS)}"
    name, separator, value = (part.strip() for part in item.partition(":"))
    if not separator or not value:
        raise OptionError(f"--fail {item!r}: expected METRIC:AMOUNT such as e2e:10% or ssim:0.02; {valid}")
    if name not in METRICS:
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
    thresholds = dict(_parse_threshold(item) for item in DEFAULT_FAIL.split(","))
    thresholds.update(_parse_threshold(item) for item in text.split(",") if item.strip())
    return thresholds
