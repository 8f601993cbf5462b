"""Eval scripts, log parsing and verdicts, checked against swebench's own rules."""

from __future__ import annotations

import pytest

from codemonkeys.env.grading import (
    eval_script,
    grade,
    log_parser,
    needs_network,
    parse_test_output,
    report_from_output,
    build_test_command,
)
from codemonkeys.env.specs import EnvSpec, SpecRegistry
from codemonkeys.errors import DataError
from codemonkeys.swebench.instances import Instance

START, END = ">>>>> Start Test Output", ">>>>> End Test Output"
TEST_PATCH = (
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
    "@@ -1 +1,2 @@\n x = 1\n+y = 2\n"
    "diff --git a/tests/data.json b/tests/data.json\n--- a/tests/data.json\n+++ b/tests/data.json\n@@ -1 +1 @@\n-{}\n+[]\n"
)


def _instance(repo: str = "acme/calc", test_patch: str = TEST_PATCH, **changes: object) -> Instance:
    fields: dict[str, object] = {
        "repo": repo,
        "instance_id": "acme__calc-1",
        "base_commit": "a" * 40,
        "environment_setup_commit": "b" * 40,
        "version": "0.1",
        "problem_statement": "p",
        "patch": "",
        "test_patch": test_patch,
        "FAIL_TO_PASS": ["tests/test_calc.py::test_new"],
        "PASS_TO_PASS": ["tests/test_calc.py::test_old"],
    }
    fields.update(changes)
    return Instance.model_validate(fields)


SPEC = EnvSpec(python="3.11", test_cmd="pytest -rA", install="python -m pip install -e .", log_parser="parse_log_pytest",
               eval_commands=["export LANG=C.UTF-8"], env_vars={"A_VAR": "it's"})


def test_eval_script_follows_the_official_order() -> None:
    script = eval_script(_instance(), SPEC)
    lines = script.splitlines()
    assert lines[:2] == ["#!/bin/bash", "set -uxo pipefail"]
    order = [
        "export A_VAR='it'\"'\"'s'",
        "export LANG=C.UTF-8",
        f"git -c core.fileMode=false diff {'a' * 40}",
        "PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/codemonkeys/wheelhouse python -m pip install -e .",  # sandboxes are offline: no index to wait on
        f"git checkout {'a' * 40} tests/test_calc.py tests/data.json",
        "git apply -v - <<'EOF_114329324912'",
        f": '{START}'",
        "pytest -rA tests/test_calc.py",  # the .json file is not a test directive
        f": '{END}'",
    ]
    positions = [lines.index(line) for line in order]
    assert positions == sorted(positions)
    assert lines[-1] == f"git checkout {'a' * 40} tests/test_calc.py tests/data.json"
    assert TEST_PATCH in script


def test_install_step_is_skipped_only_when_asked_and_the_patch_builds_nothing() -> None:
    from codemonkeys.env.grading import install_inputs_touched

    code_only = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-a\n+b\n"
    setup = code_only.replace("calc.py", "setup.py")
    cython = code_only.replace("calc.py", "pkg/_speed.pyx")
    assert install_inputs_touched(code_only) == []
    short_hunk = "diff --git a/setup.py b/setup.py\n--- a/setup.py\n+++ b/setup.py\n@@ -1,5 +1,5 @@\n-a\n+b\n"
    assert install_inputs_touched(short_hunk) == ["setup.py"]  # hunks that do not parse: the headers still count
    renamed = "diff --git a/pkg/old.pyx b/pkg/new.pyx\nsimilarity index 100%\nrename from pkg/old.pyx\nrename to pkg/new.pyx\n"
    assert install_inputs_touched(renamed) == ["pkg/new.pyx", "pkg/old.pyx"]
    assert install_inputs_touched(setup) == ["setup.py"] and install_inputs_touched(cython) == ["pkg/_speed.pyx"]
    skipped = eval_script(_instance(), SPEC, patch=code_only, reinstall="auto")
    assert "install step skipped" in skipped and "pip install -e ." not in skipped
    for patch, mode in ((setup, "auto"), (cython, "auto"), (code_only, "always")):
        assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/codemonkeys/wheelhouse python -m pip install -e ." in eval_script(_instance(), SPEC, patch=patch, reinstall=mode)


def test_the_index_is_reached_only_with_grading_network_and_only_after_the_image_falls_short() -> None:
    offline = eval_script(_instance(), SPEC).splitlines()
    online = eval_script(_instance(), SPEC, network=True).splitlines()
    assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/codemonkeys/wheelhouse python -m pip install -e ." in offline
    assert not any("|| python -m pip install" in line for line in offline)
    assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/codemonkeys/wheelhouse python -m pip install -e . || python -m pip install -e ." in online


def test_django_directives_are_modules() -> None:
    patch = "diff --git a/tests/admin_views/tests.py b/tests/admin_views/tests.py\n--- a/x\n+++ b/x\n"
    instance = _instance("django/django", patch, version="3.0")
    spec = SpecRegistry().get("django/django", "3.0")
    assert build_test_command(instance, spec) == "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 admin_views.tests"


def test_pytest_log_is_parsed_between_markers_and_graded() -> None:
    instance = _instance()
    output = (
        "+ pip install ...\nPASSED tests/test_calc.py::test_before_markers\n"
        f"+ : '{START}'\n"
        "PASSED tests/test_calc.py::test_old\nFAILED tests/test_calc.py::test_new - AssertionError: boom\n"
        f"+ : '{END}'\n"
    )
    assert parse_test_output(output, instance.repo, SPEC) == {"tests/test_calc.py::test_old": "PASSED", "tests/test_calc.py::test_new": "FAILED"}
    report = report_from_output(instance, SPEC, output, test_s=1.5)
    assert report.status == "unresolved"
    assert report.tests["FAIL_TO_PASS"] == {"success": [], "failure": ["tests/test_calc.py::test_new"]}
    assert report.cause == "FAIL_TO_PASS 0/1 pass, PASS_TO_PASS 1/1 pass"
    fixed = output.replace("FAILED tests/test_calc.py::test_new - AssertionError: boom", "PASSED tests/test_calc.py::test_new")
    resolved = report_from_output(instance, SPEC, fixed)
    assert resolved.status == "resolved" and resolved.cause is None
    assert resolved.as_dict()["tests"]["PASS_TO_PASS"]["success"] == ["tests/test_calc.py::test_old"]


def test_missing_markers_and_empty_results_are_unresolved_with_a_cause() -> None:
    instance = _instance()
    no_markers = report_from_output(instance, SPEC, "error: patch failed\n")
    assert no_markers.status == "unresolved" and "markers missing" in (no_markers.cause or "")
    empty = report_from_output(instance, SPEC, f"{START}\nImportError\n{END}\n")
    assert empty.status == "unresolved" and (empty.cause or "").startswith("no test results")


def test_network_errors_are_flagged() -> None:
    output = f"{START}\nFAILED tests/test_calc.py::test_new - requests.exceptions.ConnectionError: Max retries exceeded with url: /get\n{END}\n"
    report = report_from_output(_instance(), SPEC, output)
    assert report.needs_network and "network" in (report.cause or "")
    assert not needs_network("all good")
    # The offline reinstall before the tests retries the index: that is not the tests' doing.
    install_noise = "WARNING: Retrying ... NewConnectionError: Temporary failure in name resolution\n"
    quiet = report_from_output(_instance(), SPEC, install_noise + output.replace("requests.exceptions.ConnectionError: Max retries exceeded with url: /get", "assert 1 == 2"))
    assert quiet.status == "unresolved" and not quiet.needs_network


def test_django_and_sympy_logs_use_swebench_parsers() -> None:
    django = _instance("django/django", FAIL_TO_PASS=["test_a (app.tests.T)"], PASS_TO_PASS=["test_b (app.tests.T)"], version="3.0")
    spec = SpecRegistry().get("django/django", "3.0")
    log = f"{START}\ntest_a (app.tests.T) ... ok\ntest_b (app.tests.T) ... FAIL\n{END}\n"
    assert parse_test_output(log, django.repo, spec) == {"test_a (app.tests.T)": "PASSED", "test_b (app.tests.T)": "FAILED"}
    assert report_from_output(django, spec, log).status == "unresolved"
    sympy = _instance("sympy/sympy", FAIL_TO_PASS=["test_x"], PASS_TO_PASS=[], version="1.1")
    sympy_log = f"{START}\ntest_x ok\n{END}\n"
    assert report_from_output(sympy, SpecRegistry().get("sympy/sympy", "1.1"), sympy_log).status == "resolved"


def test_grade_matches_swebench_semantics() -> None:
    instance = _instance(FAIL_TO_PASS=["a", "b"], PASS_TO_PASS=["c"])
    # XFAIL counts as passing; a test missing from the log counts as failing.
    resolved, tests = grade(instance, {"a": "PASSED", "b": "XFAIL", "c": "PASSED"})
    assert resolved and tests["FAIL_TO_PASS"]["success"] == ["a", "b"]
    resolved, tests = grade(instance, {"a": "PASSED", "b": "PASSED"})
    assert not resolved and tests["PASS_TO_PASS"]["failure"] == ["c"]


def test_log_parser_lookup() -> None:
    assert log_parser("acme/calc", SPEC).__name__ == "parse_log_pytest"
    with pytest.raises(DataError, match="no log parser for acme/calc"):
        log_parser("acme/calc", EnvSpec(python="3.11", test_cmd="pytest"))
    with pytest.raises(DataError, match="unknown log parser"):
        log_parser("acme/calc", EnvSpec(python="3.11", test_cmd="pytest", log_parser="nope"))


def test_matplotlib_image_comparison_failures_name_freetype() -> None:
    from codemonkeys.env.grading import freetype_cause

    failed = ["lib/matplotlib/tests/test_axes.py::test_hist[png]", "lib/matplotlib/tests/test_text.py::test_font_styles[pdf]",
              "lib/matplotlib/tests/test_axes.py::test_formatter"]
    assert "FreeType 2.6.1" in (freetype_cause("matplotlib/matplotlib", failed) or "")
    assert freetype_cause("matplotlib/matplotlib", failed[2:]) is None  # not image comparisons
    assert freetype_cause("astropy/astropy", failed) is None
    swapped = '{"freetype": "2.6.1", "source": "matplotlib-3.6.3-cp311-cp311-manylinux2014_x86_64.whl"}\n'
    assert freetype_cause("matplotlib/matplotlib", failed, swapped) is None  # then the failures are the patch's
    kept = '{"freetype": "unchanged", "error": "RuntimeError: no wheel for matplotlib>=3.6,<3.7"}\n'
    assert "swap failed: RuntimeError: no wheel" in (freetype_cause("matplotlib/matplotlib", failed, kept) or "")


def test_post_install_follows_the_reinstall_and_the_freetype_record_the_tests_see_is_printed() -> None:
    from codemonkeys.env.grading import FREETYPE_RECORD

    swap = "python /opt/codemonkeys/matplotlib_freetype.py /testbed"
    lines = eval_script(_instance(), SPEC.model_copy(update={"post_install": [swap]})).splitlines()
    install = lines.index("PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/codemonkeys/wheelhouse python -m pip install -e .")
    # The re-install rebuilds what post_install replaced: it runs again, then its record is printed.
    assert install < lines.index(swap) < lines.index(f"cat {FREETYPE_RECORD} 2>/dev/null || true") < lines.index(f": '{START}'")
