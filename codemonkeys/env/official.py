"""The official images' layout, as swebench's Dockerfile templates make it, and how to run in it.

In ``swebench/sweb.eval.x86_64.<id>`` images Miniconda lives in
``/opt/miniconda3`` with its *base* ``bin`` first on ``PATH``; the
repository's dependencies live in the ``testbed`` conda env, which only
``conda activate testbed`` (the harness's eval script, or an interactive
``.bashrc``) puts first. ``docker exec`` reads no ``.bashrc``, so a command
run as is would use the base interpreter. The pipeline therefore captures the
environment that activation produces, once per pulled image, and runs every
command with it (:attr:`~codemonkeys.sandbox.base.EnvironmentRef.exec_env`).
Pure functions here; :mod:`.images` runs the capture.
"""

from __future__ import annotations

from collections.abc import Mapping

CONDA_ROOT = "/opt/miniconda3"
TESTBED_ENV = f"{CONDA_ROOT}/envs/testbed"
# What the harness's eval script runs before its commands (make_eval_script_list_py).
ACTIVATE = f"source {CONDA_ROOT}/bin/activate && conda activate testbed"
SEPARATOR = "@@codemonkeys-activated@@"
# The capture's last line: a log driver may lose an unterminated last line, so its absence means "read again".
END = "@@codemonkeys-end@@"
# Variables of the capturing shell itself, not of the environment.
_SHELL_ONLY = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "PS1", "HOSTNAME", "HOME"})


def capture_script() -> str:
    """A bash script printing the environment before and after activation (``env -0`` both times)."""
    return (
        f"env -0; printf '\\0{SEPARATOR}\\0'; "
        f"if [ ! -f {CONDA_ROOT}/bin/activate ]; then exit 3; fi; "
        f"{ACTIVATE} >/dev/null 2>&1 || exit 4; env -0; printf '\\n{END}\\n'"
    )


def parse_env0(text: str) -> dict[str, str]:
    """``env -0`` output as a mapping (values may hold newlines)."""
    variables: dict[str, str] = {}
    for item in text.split("\0"):
        key, sep, value = item.partition("=")
        if sep and key:
            variables[key] = value
    return variables


def activation_delta(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """The variables activation set or changed (``PATH``, ``CONDA_PREFIX``, activate.d exports...)."""
    return {
        key: value
        for key, value in after.items()
        if key not in _SHELL_ONLY and before.get(key) != value
    }


def split_capture(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(before, after)`` from the capture script's output; ``after`` is empty without the separator."""
    marker = f"\0{SEPARATOR}\0"
    output = output.split(f"\n{END}", 1)[0]
    if marker not in output:
        return parse_env0(output), {}
    before, after = output.split(marker, 1)
    return parse_env0(before), parse_env0(after)
