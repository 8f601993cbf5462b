"""Exit codes for click exceptions from either click copy: the installed ``click`` and typer's bundled one."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from codemonkeys.cli.main import EXIT_INTERRUPTED, EXIT_USER_ERROR, INTERRUPTED_LINE, _click_outcome


def _copies() -> list[ModuleType]:
    found = []
    for name in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    if not found:
        pytest.skip("no click copy importable")
    return found


@pytest.mark.parametrize("module", _copies(), ids=lambda m: m.__name__)
def test_usage_errors_are_one_line_and_exit_2(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    if not hasattr(module, "UsageError"):
        pytest.skip(f"{module.__name__} has no UsageError")
    assert _click_outcome(module.UsageError("Missing option '--run-dir'.")) == EXIT_USER_ERROR
    assert _click_outcome(module.BadParameter("not a number")) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Missing option '--run-dir'." in err and "not a number" in err


@pytest.mark.parametrize("module", _copies(), ids=lambda m: m.__name__)
def test_exit_and_abort(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    if not hasattr(module, "Exit"):
        pytest.skip(f"{module.__name__} has no Exit (this typer keeps it elsewhere)")
    assert _click_outcome(module.Exit(1)) == 1
    assert _click_outcome(module.Exit(0)) == 0
    assert _click_outcome(module.Abort()) == EXIT_INTERRUPTED  # click's form of Ctrl-C
    assert capsys.readouterr().err.strip() == INTERRUPTED_LINE


def test_other_exceptions_are_not_taken_for_click_ones() -> None:
    assert _click_outcome(ValueError("a bug")) is None
