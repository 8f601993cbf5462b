"""Reproduction test scripts: answer format round trip and the exit-code protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from codemonkeys.edits import (
    EXIT_FIXED,
    EXIT_NOT_FIXED,
    TestOutcome,
    TestScript,
    classify_exit,
    parse_test_script,
    render_test_script,
)
from codemonkeys.errors import ParseError
from codemonkeys.resources import resource_dir

_script_line = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=15
).filter(lambda line: line.strip() not in ("<test>", "</test>"))
_scripts = (
    st.lists(_script_line, min_size=1, max_size=8)
    .map(lambda lines: "".join(f"{line}\n" for line in lines))
    .filter(lambda script: bool(script.strip()))
)


@given(_scripts)
def test_round_trip(script: str) -> None:
    test = TestScript(script=script)
    text = render_test_script(test)
    assert parse_test_script(text) == test
    assert render_test_script(parse_test_script(text)) == text


def test_parse_with_reasoning_and_fence_variants() -> None:
    text = "Let me reproduce it.\n\n<test>\n```py\nimport sys\n\nsys.exit(2)\n```\n</test>\nThat is my test.\n"
    assert parse_test_script(text).script == "import sys\n\nsys.exit(2)\n"
    raw = "<test>\nprint('no fence')\n</test>"
    assert parse_test_script(raw).script == "print('no fence')\n"


def test_inner_fences_in_the_script_are_content() -> None:
    script = 'DOC = """\n```\ncode\n```\n"""\nprint(DOC)\n'
    assert parse_test_script(render_test_script(TestScript(script=script))).script == script


def test_crlf_answers_are_normalized() -> None:
    assert (
        parse_test_script("<test>\r\n```python\r\nx = 1\r\n```\r\n</test>\r\n").script == "x = 1\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I think the bug is in foo.", "contains no test script"),
        (
            "<test>\n```python\nx\n```\n</test>\n<test>\n```python\ny\n```\n</test>\n",
            "2 <test> elements",
        ),
        ("<test>\n```python\nx = 1\n", "never closed"),
        ("<test>\n```python\nx = 1\n</test>\n", "fence inside <test> is not closed"),
        ("<test>\n```python\n\n```\n</test>\n", "empty"),
        ("<test>\n</test>\n", "empty"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_test_script(text)


def test_script_validation() -> None:
    assert TestScript(script="x = 1").script == "x = 1\n"
    with pytest.raises(ValueError):
        TestScript(script="  \n")
    with pytest.raises(ValueError):
        TestScript(script="print(1)\n</test>\n")


@pytest.mark.parametrize(
    ("code", "timed_out", "outcome"),
    [
        (0, False, TestOutcome.FIXED),
        (2, False, TestOutcome.NOT_FIXED),
        (1, False, TestOutcome.CRASHED),
        (3, False, TestOutcome.CRASHED),
        (-9, False, TestOutcome.CRASHED),
        (137, False, TestOutcome.CRASHED),
        (None, False, TestOutcome.CRASHED),
        (0, True, TestOutcome.TIMED_OUT),
        (None, True, TestOutcome.TIMED_OUT),
    ],
)
def test_classify_exit(code: int | None, timed_out: bool, outcome: TestOutcome) -> None:
    assert classify_exit(code, timed_out) is outcome


def test_protocol_with_real_processes(tmp_path: Path) -> None:
    """Exit codes of real Python scripts map to the outcomes the protocol promises."""
    scripts = {
        "fixed": f"import sys\nsys.exit({EXIT_FIXED})\n",
        "not_fixed": f"import sys\nsys.exit({EXIT_NOT_FIXED})\n",
        "crashed": "raise RuntimeError('boom')\n",
    }
    outcomes = {}
    for name, script in scripts.items():
        path = tmp_path / f"{name}.py"
        path.write_text(parse_test_script(render_test_script(TestScript(script=script))).script)
        code = subprocess.run(
            [sys.executable, str(path)], capture_output=True, check=False
        ).returncode
        outcomes[name] = classify_exit(code, timed_out=False)
    assert outcomes == {
        "fixed": TestOutcome.FIXED,
        "not_fixed": TestOutcome.NOT_FIXED,
        "crashed": TestOutcome.CRASHED,
    }


def test_format_instructions_example_parses() -> None:
    env = Environment(loader=FileSystemLoader(resource_dir("prompts")), undefined=StrictUndefined)
    text = env.get_template("formats/test_script.j2").render()
    script = parse_test_script(text).script
    assert "sys.exit(0)" in script and "sys.exit(2)" in script
    compile(script, "<example>", "exec")
