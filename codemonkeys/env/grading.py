"""Grading a patch exactly as the official SWE-bench harness does, as pure functions.

The eval script follows ``swebench``'s ``make_eval_script_list_py`` (run the
spec's eval commands and install, reset the test files, apply the test patch,
run the test command on ``get_test_directives``, between the start/end
markers); the output is parsed with ``MAP_REPO_TO_PARSER`` and judged with
``get_eval_tests_report``/``get_resolution_status``. What differs is only
where the spec comes from (:class:`~.specs.EnvSpec`, so repos outside
swebench's map work too) and that no conda environment is activated unless
the image has one (official images do).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import DataError
from ..swebench.instances import Instance
from .plan import WHEELHOUSE
from .specs import EnvSpec

HEREDOC = "EOF_114329324912"
TESTBED = "/testbed"
Status = Literal["resolved", "unresolved", "error"]
# Signs in test output that a test wanted the internet, which grading sandboxes do not have.
_NETWORK_SIGNS = re.compile(
    r"Temporary failure in name resolution|Name or service not known|nodename nor servname|"
    r"Network is unreachable|NewConnectionError|Max retries exceeded with url|getaddrinfo failed|"
    r"No address associated with hostname|ConnectionRefusedError|urlopen error",
)


def _markers() -> tuple[str, str]:
    from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT

    return START_TEST_OUTPUT, END_TEST_OUTPUT


def build_test_command(instance: Instance, spec: EnvSpec) -> str:
    """The spec's test command followed by the test directives of the instance's test patch."""
    from swebench.harness.test_spec.python import get_test_directives

    directives = get_test_directives({"repo": instance.repo, "test_patch": instance.test_patch})  # type: ignore[typeddict-item]
    return " ".join([spec.test_command, *directives])


# Files whose change makes the spec's install step build something new: metadata, C/Cython sources.
_BUILD_INPUTS = re.compile(
    r"(^|/)(setup\.py|setup\.cfg|pyproject\.toml|MANIFEST\.in|meson\.build|CMakeLists\.txt|requirements[^/]*\.txt)$"
    r"|\.(pyx|pxd|pxi|c|cc|cpp|cxx|h|hpp|f|f90)$"
)


# Every file a diff names: old and new sides, and git's header (renames, mode-only changes).
_DIFF_PATHS = re.compile(r"^(?:--- a/|\+\+\+ b/)(\S+)|^diff --git a/(\S+) b/(\S+)", re.M)


def install_inputs_touched(patch: str) -> list[str]:
    """The files of ``patch`` that the install step builds from (empty: reinstalling changes nothing).

    Read from the headers alone, so a patch whose hunks do not parse (real
    submissions have some) still counts: a parser error here would skip the
    install for the one patch that most needs a look.
    """
    touched = {path for match in _DIFF_PATHS.finditer(patch) for path in match.groups() if path}
    return sorted(path for path in touched if _BUILD_INPUTS.search(path))


def eval_script(
    instance: Instance, spec: EnvSpec, *, patch: str | None = None, reinstall: str = "always", network: bool = False
) -> str:
    """The bash script that applies the test patch and runs the tests (patch already applied).

    The install step runs as the harness's does, first without an index
    (``PIP_NO_INDEX=1``: what the image has, and the build requirements kept
    in its :data:`WHEELHOUSE`). Offline that is all there is, so
    no index is waited on for nothing; with ``network`` (``grading.network``)
    a failed offline install is run again with the index, for what the image
    lacks, such as a dependency the patch adds. ``reinstall="auto"``
    (a deviation from the harness, off by default) skips the step when
    ``patch`` touches nothing it builds from (:func:`install_inputs_touched`).
    """
    from swebench.harness.utils import get_modified_files

    start, end = _markers()
    test_files = get_modified_files(instance.test_patch)
    reset_tests = f"git checkout {instance.base_commit} {' '.join(test_files)}" if test_files else ":"
    activate = (
        "if [ -f /opt/miniconda3/bin/activate ]; then source /opt/miniconda3/bin/activate; conda activate testbed; fi"
    )
    lines = ["#!/bin/bash", "set -uxo pipefail", activate, f"cd {TESTBED}"]
    lines += [f"export {key}={_quote(value)}" for key, value in spec.env_vars.items()]
    lines += spec.eval_commands
    lines += [
        f"git config --global --add safe.directory {TESTBED}",
        f"cd {TESTBED}",
        "git status",
        "git show",
        f"git -c core.fileMode=false diff {instance.base_commit}",
        activate,
    ]
    if spec.install:
        if reinstall == "auto" and patch is not None and not install_inputs_touched(patch):
            lines.append(": 'install step skipped: the patch touches no file it builds from (environment.grading_reinstall=auto)'")
        else:
            offline = f"PIP_NO_INDEX=1 PIP_FIND_LINKS={WHEELHOUSE} {spec.install}"
            lines.append(f"{offline} || {spec.install}" if network else offline)
            lines += spec.post_install  # as at build time (matplotlib's FreeType swap, offline from its copy)
    lines += [
        f"cat {FREETYPE_RECORD} 2>/dev/null || true",
        reset_tests,
        f"git apply -v - <<'{HEREDOC}'\n{instance.test_patch}\n{HEREDOC}",
        *spec.test_setup,
        f": '{start}'",
        build_test_command(instance, spec),
        f": '{end}'",
        reset_tests,
    ]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def log_parser(repo: str, spec: EnvSpec) -> Callable[[str, Any], dict[str, str]]:
    """The swebench log parser for ``repo``, or the one the spec names (``parse_log_pytest``...)."""
    from swebench.harness import log_parsers
    from swebench.harness.log_parsers import MAP_REPO_TO_PARSER

    if spec.log_parser:
        for module in (log_parsers, getattr(log_parsers, "python", None)):
            parser = getattr(module, spec.log_parser, None)
            if callable(parser):
                return parser  # type: ignore[no-any-return]
        raise DataError(f"spec names an unknown log parser {spec.log_parser!r}")
    if repo not in MAP_REPO_TO_PARSER:
        raise DataError(f"no log parser for {repo}: name one in its spec (log_parser: parse_log_pytest)")
    return MAP_REPO_TO_PARSER[repo]  # type: ignore[no-any-return]


def parse_test_output(output: str, repo: str, spec: EnvSpec) -> dict[str, str] | None:
    """Test name -> status from an eval log, as ``get_logs_eval`` reads it; ``None`` without both markers."""
    start, end = _markers()
    if start not in output or end not in output:
        return None
    parser = log_parser(repo, spec)
    between = output.split(start, 1)[1].split(end, 1)[0]
    status = parser(between, None)
    return status if status else parser(output, None)


@dataclass(frozen=True, slots=True)
class GradeReport:
    """The verdict on one patch. ``tests`` holds swebench's FAIL_TO_PASS/PASS_TO_PASS success/failure lists."""

    instance_id: str
    status: Status
    cause: str | None = None
    patch_applied: bool = True
    tests: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    test_s: float | None = None
    build_s: float | None = None
    needs_network: bool = False
    # Hunks dropped before applying because the image's setup commit already made them (see .setup_hunks).
    setup_hunks_dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cause": self.cause,
            "patch_applied": self.patch_applied,
            "needs_network": self.needs_network,
            "setup_hunks_dropped": self.setup_hunks_dropped,
            "build_s": None if self.build_s is None else round(self.build_s, 1),
            "test_s": None if self.test_s is None else round(self.test_s, 1),
            "tests": self.tests,
        }


def grade(instance: Instance, status_map: dict[str, str]) -> tuple[bool, dict[str, dict[str, list[str]]]]:
    """``(resolved, tests report)`` by swebench's rules (FAIL_ONLY repos included)."""
    from swebench.harness.constants import FAIL_ONLY_REPOS, EvalType, ResolvedStatus
    from swebench.harness.grading import get_eval_tests_report, get_resolution_status

    eval_type = EvalType.FAIL_ONLY if instance.repo in FAIL_ONLY_REPOS else EvalType.PASS_AND_FAIL
    gold = {"instance_id": instance.instance_id, "FAIL_TO_PASS": instance.FAIL_TO_PASS, "PASS_TO_PASS": instance.PASS_TO_PASS}
    report = get_eval_tests_report(status_map, gold, eval_type=eval_type)
    tests = {key: report[key] for key in ("FAIL_TO_PASS", "PASS_TO_PASS")}
    return get_resolution_status(report) == ResolvedStatus.FULL.value, tests


def needs_network(output: str) -> bool:
    """Whether the test output shows attempts to reach the internet."""
    return bool(_NETWORK_SIGNS.search(output))


# matplotlib renders its baseline test images with FreeType 2.6.1; another FreeType changes text pixels.
_IMAGE_TEST = re.compile(r"\[(png|pdf|svg|eps)\]|image_comparison|test_.*image|baseline")


# What sandbox/env/matplotlib_freetype.py recorded at build time; the eval script prints it.
FREETYPE_RECORD = "/opt/codemonkeys/freetype.json"
_FREETYPE_LINE = re.compile(r'^\{"freetype": "([^"]*)"(?:.*"error": "([^"]*)")?', re.M)


def freetype_cause(repo: str, failed: list[str], output: str = "") -> str | None:
    """The known cause when matplotlib's failures are mostly image comparisons and FreeType is not 2.6.1."""
    if repo != "matplotlib/matplotlib" or not failed:
        return None
    images = sum(1 for name in failed if _IMAGE_TEST.search(name))
    if images * 2 < len(failed):
        return None
    record = _FREETYPE_LINE.search(output)
    if record and record.group(1) == "2.6.1":
        return None  # the right FreeType: these failures are the patch's
    why = f" (the ft2font swap failed: {record.group(2)})" if record and record.group(2) else ""
    return (
        f"{images} of {len(failed)} failing tests are image comparisons: matplotlib's baseline images need "
        f"FreeType 2.6.1, and this environment's matplotlib links another{why}"
    )


def report_from_output(instance: Instance, spec: EnvSpec, output: str, *, test_s: float | None = None) -> GradeReport:
    """Grade an eval log: resolved, unresolved (tests fail, or no results), with the cause."""
    status_map = parse_test_output(output, instance.repo, spec)
    if status_map is None:
        return GradeReport(instance.instance_id, "unresolved", "test output markers missing (test patch or test command failed)", test_s=test_s)
    resolved, tests = grade(instance, status_map)
    if resolved:
        return GradeReport(instance.instance_id, "resolved", tests=tests, test_s=test_s)
    f2p, p2p = tests["FAIL_TO_PASS"], tests["PASS_TO_PASS"]
    cause = (
        f"FAIL_TO_PASS {len(f2p['success'])}/{len(f2p['success']) + len(f2p['failure'])} pass, "
        f"PASS_TO_PASS {len(p2p['success'])}/{len(p2p['success']) + len(p2p['failure'])} pass"
    )
    if not status_map:
        cause = "no test results in the output (" + cause + ")"
    start, end = _markers()
    network = needs_network(output.split(start, 1)[1].split(end, 1)[0])  # the tests' own output, not the install's
    if network:
        cause += "; the output shows network errors (tests need the internet?)"
    freetype = freetype_cause(instance.repo, [*f2p["failure"], *p2p["failure"]], output)
    if freetype:
        cause += "; " + freetype
    return GradeReport(instance.instance_id, "unresolved", cause, tests=tests, test_s=test_s, needs_network=network)
