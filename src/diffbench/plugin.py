"""The pytest plugin of diffbench: options -> settings -> matrix -> parametrize; the run folder; machine info.

The repository's conftest.py loads it (`pytest_plugins = ["diffbench.plugin"]`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffbench.case import Case
from diffbench.config.matrix import build_settings, expand_matrix, raw_values
from diffbench.config.options import add_options
from diffbench.config.plan import estimate, format_plan, latest_records
from diffbench.config.resume import finished_cases, split_unfinished
from diffbench.config.settings import RunSettings
from diffbench.config.settings_record import settings_record
from diffbench.config.writable import check_writable_folder
from diffbench.errors import OptionError
from diffbench.results.environment import git_commit, stack_info
from diffbench.results.history import read_run_meta
from diffbench.results.records import RunFolder, read_results
from diffbench.results.shard import split_items
from diffbench.results.summary import markdown_table
from diffbench.run.interrupt import interrupt_on_sigterm
from diffbench.run.progress import show_progress
from diffbench.run.session import BenchSession

SETTINGS: pytest.StashKey[RunSettings] = pytest.StashKey()
MATRIX: pytest.StashKey[list[Case]] = pytest.StashKey()
RUN_FOLDER: pytest.StashKey[RunFolder] = pytest.StashKey()


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    config.addinivalue_line("markers", "task(name): the task (t2i, i2i, controlnet) whose matrix cases a test receives")
    try:
        settings = build_settings(raw_values(config))
    except OptionError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[SETTINGS] = settings
    config.stash[MATRIX] = expand_matrix(settings)
    if config.getoption("diffbench_plan"):
        config.option.collectonly = True  # a plan runs nothing
    if not config.option.collectonly:  # where the run will write: a usage error now, not at the first case
        flag = "--resume" if settings.resume else "--results-dir"
        try:
            check_writable_folder(settings.resume or settings.results_dir, flag)
        except OptionError as error:
            raise pytest.UsageError(str(error)) from None
    restore = interrupt_on_sigterm()  # a time limit's SIGTERM still leaves the case under way recorded
    if restore is not None:
        config.add_cleanup(restore)


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("task")
    if marker is None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid} takes `case` but has no @pytest.mark.task")
    cases = [case for case in metafunc.config.stash[MATRIX] if case.task == marker.args[0]]
    metafunc.parametrize("case", cases, ids=[case.id for case in cases])


def case_of(item):
    """The matrix case an item runs, or None (other tests, or the item of an empty parameter set)."""
    case = item.callspec.params.get("case") if hasattr(item, "callspec") else None
    return case if isinstance(case, Case) else None


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: shards split what is selected
def pytest_collection_modifyitems(config, items):
    """Order cases as the matrix does (model by model, eager first) so each model is built once;
    leave out the benchmark files of tasks not selected; with --shard, keep only this shard's reference
    groups (diffbench.results.shard); with --resume, only the groups the earlier run did not finish
    (diffbench.config.resume)."""
    order = {case.id: index for index, case in enumerate(config.stash[MATRIX])}

    def position(item):
        case = case_of(item)
        return (0, order[case.id]) if case is not None else (1, 0)

    items.sort(key=position)
    settings = config.stash[SETTINGS]
    keep_only(config, items, *split_unselected_tasks(items, settings.tasks))
    if settings.shard is not None:
        keep_only(config, items, *split_items(items, settings.shard, case_of))
    if settings.resume is not None:
        keep_only(config, items, *split_unfinished(items, finished_cases(settings.resume), case_of))


def split_unselected_tasks(items, tasks):
    """(kept, deselected): a benchmark file of a task not in --tasks (controlnet, by default) is deselected,
    not reported as a skipped empty parameter set; other tests stay."""

    def unselected(item):
        marker = item.get_closest_marker("task")
        return marker is not None and marker.args[0] not in tasks

    return [item for item in items if not unselected(item)], [item for item in items if unselected(item)]


def keep_only(config, items, kept, deselected):
    """Narrow `items` to `kept`, reporting the rest to pytest as deselected."""
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept


def pytest_collection_finish(session):
    if any(case_of(item) is not None for item in session.items):  # a benchmark run, not the harness's tests
        show_progress(session.config)  # the runner's phase lines on the terminal, without extra flags
    if not session.config.getoption("diffbench_plan"):
        return
    cases = [case for case in map(case_of, session.items) if case is not None]
    folders = [Path(part) for part in session.config.getoption("diffbench_plan_history").split(",") if part]
    settings = session.config.stash[SETTINGS]
    estimates = estimate(cases, settings, latest_records(folders, settings.resolved_device()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_sep("-", "diffbench plan")
    for line in format_plan(estimates):
        reporter.write_line(line)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["diffbench"] = stack_info()


def pytest_terminal_summary(terminalreporter, config):
    """The seeds' table for this run (every case, skips and failures with their reasons)."""
    folder = config.stash.get(RUN_FOLDER, None)
    if folder is None or not folder.results.exists():
        return
    terminalreporter.write_sep("-", "diffbench results")
    terminalreporter.write_line(markdown_table(read_results(folder.results)))
    terminalreporter.write_line(f"records: {folder.results}  images: {folder.images}")


@pytest.fixture(scope="session")
def bench_session(request):
    """The run's shared state; its folder receives every case's record as the case ends."""
    settings = request.config.stash[SETTINGS]
    command = list(request.config.invocation_params.args)
    if settings.resume is not None:  # the earlier run's folder and run.json, with this command added
        folder = RunFolder.existing(settings.resume, settings.resume.name)
        meta = read_run_meta(folder.path)
        meta.setdefault("resumed", []).append({"command": command, "commit": git_commit(), "stack": stack_info()})
    else:
        folder = RunFolder(settings.results_dir)
        meta = {
            "run_id": folder.run_id,
            "started": folder.run_id,
            "commit": git_commit(),
            "settings": settings_record(settings),
            "stack": stack_info(),
            "command": command,
        }
    request.config.stash[RUN_FOLDER] = folder
    folder.write_meta(meta)
    session = BenchSession(settings, folder)
    meta["launch_probe"] = session.launch_probes  # the host's launch rate at the start (and, below, the end)
    meta["generator"] = session.generator_device
    folder.write_meta(meta)
    yield session
    # device memory at the start and the end
    folder.write_meta({**meta, "memory": session.close(), "launch_probe": session.launch_probes})
