"""config/options.py is the one option table: each RunSettings field comes from one entry, and the defaults
the help shows, and an absent option keeps, are RunSettings' own."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from diffbench.config.matrix import build_settings
from diffbench.config.option import shown
from diffbench.config.options import OPTIONS, add_options
from diffbench.config.settings import RunSettings


class Recorder:
    """Stands in for pytest's parser: keeps each addoption call."""

    def __init__(self) -> None:
        self.options: dict[str, dict] = {}

    def getgroup(self, *_):
        return self

    def addoption(self, flag: str, **arguments) -> None:
        self.options[flag] = arguments


def test_every_settings_field_has_exactly_one_table_entry():
    entries = Counter(name for option in OPTIONS for name in option.fields)
    assert entries == Counter(field.name for field in dataclasses.fields(RunSettings))
    assert len({option.flag for option in OPTIONS}) == len(OPTIONS)


def test_the_help_shows_the_dataclass_default():
    parser = Recorder()
    add_options(parser)
    defaults = RunSettings()
    assert parser.options["--rounds"]["help"].endswith(f"(default {defaults.rounds})") and defaults.rounds == 6
    assert parser.options["--case-timeout"]["help"].endswith("(default 1800)") and defaults.case_timeout_s == 1800
    for option in OPTIONS:
        if "{default}" in option.help and option.fields:
            expected = shown(getattr(defaults, option.fields[0]))
            assert expected in parser.options[option.flag]["help"], option.flag
    assert "(default reports/runs)" in parser.options["--results-dir"]["help"]
    assert parser.options["--plan-history"]["default"] == "reports/runs,reports/gpu"


def test_absent_options_keep_the_dataclass_defaults():
    assert build_settings({}) == RunSettings()


def test_flags_keep_their_kinds():
    parser = Recorder()
    add_options(parser)
    options = parser.options
    assert options["--backend-config"]["action"] == "append" and options["--backend-config"]["default"] == []
    assert options["--lora-switch"]["nargs"] == "?" and options["--lora-switch"]["const"] is True
    assert all(options[flag]["action"] == "store_true" for flag in ("--isolate", "--roofline", "--plan"))
    assert options["--rounds"]["type"] is int and options["--case-timeout"]["type"] is float
    assert options["--rounds"]["dest"] == "diffbench_rounds" and options["--case-timeout"]["default"] is None


def test_every_flag_of_the_table_has_a_row_in_docs_options():
    """docs/options.md is the reference users read: a flag added to the table and not documented fails here."""
    rows = (Path(__file__).parents[2] / "docs" / "options.md").read_text().splitlines()
    documented = {line.split("`")[1].split(" ")[0].split("[")[0] for line in rows if line.startswith("| `--")}
    assert {option.flag for option in OPTIONS} - documented == set()
