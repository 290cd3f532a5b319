"""Loads diffbench's pytest plugin (src/diffbench/plugin.py): its options, matrix, fixtures and hooks."""

pytest_plugins = ["diffbench.plugin"]
