"""The list of command modules, in the order their commands appear in ``--help``."""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = (
    "codemonkeys.cli.run_cmd",
    "codemonkeys.cli.config_cmd",
    "codemonkeys.cli.costs_cmd",
    "codemonkeys.cli.context_cmd",
    "codemonkeys.cli.env_cmd",
    "codemonkeys.cli.select_cmd",
    "codemonkeys.cli.ensemble_cmd",
    "codemonkeys.cli.export_cmd",
    "codemonkeys.cli.report_cmd",
    "codemonkeys.cli.show_cmd",
)


def modules() -> list[ModuleType]:
    """Import each command module (lazily, so ``--help`` stays fast)."""
    return [importlib.import_module(name) for name in _MODULES]
