"""One command-line option as diffbench.config.options declares it: flag, the RunSettings fields it sets, its
parser and its help, with the default rendered from RunSettings' dataclass field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from diffbench.config.settings import RunSettings


@dataclass(frozen=True)
class Option:
    """One flag. `fields`: the RunSettings fields it sets (several when its parser returns a tuple of them;
    none for --plan and --plan-history, which the plugin reads); `parse`: the value as given (a string,
    an int or float by `type`, True for a flag) to the field's value, raising OptionError with the fix;
    not called for an absent option, which keeps the field's default. None: build_settings' cross-check
    after the loop sets the field, from this and other options (backend options, LoRA). `extra`: more of
    addoption's arguments (action, nargs, metavar); `default`: the raw value of an absent option."""

    flag: str
    fields: tuple[str, ...]
    parse: Callable[[Any], Any] | None
    help: str
    type: type | None = str
    extra: dict[str, Any] = field(default_factory=dict)
    default: Any = None

    @property
    def name(self) -> str:
        """The key of its raw value: `--case-timeout` is `case_timeout`, in pytest's dest `diffbench_case_timeout`."""
        return self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        """The help, `{default}` rendered from the field's default (the option's own `default` for --plan-history)."""
        default = default_of(self.fields[0]) if self.fields else self.default
        return self.help.format(default=shown(default))


def default_of(name: str) -> Any:
    """The default of a RunSettings field, as its dataclass declares it."""
    (declared,) = [item for item in dataclasses.fields(RunSettings) if item.name == name]
    return declared.default_factory() if declared.default_factory is not dataclasses.MISSING else declared.default


def shown(value: Any) -> str:
    """A default as typed on the command line: `eager,compile`, `1800`, `reports/runs`."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def switch(flag: str, fields: tuple[str, ...], help: str) -> Option:
    """An on/off flag (store_true): True when given; `fields` empty for one the plugin reads (--plan)."""
    return Option(flag, fields, bool if fields else None, help, None, {"action": "store_true"})
