"""Reproduction tests: the answer format and the exit-code protocol.

A model writes one standalone Python script that reproduces the issue. Its exit
code is the whole interface, so tests can be run on any candidate and voted on
without reading their output:

* ``0`` - the issue is fixed;
* ``2`` - the issue is still present;
* anything else (``1`` is what an uncaught exception gives) - the script crashed.

A run that hits its time limit is ``TIMED_OUT`` whatever its exit code.

The answer format, one per answer::

    <test>
    ```python
    ...the script...
    ```
    </test>

The fence may be omitted; the script must not be empty. Text before and after
the ``<test>`` element is reasoning and is ignored.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import ParseError

EXIT_FIXED = 0
EXIT_NOT_FIXED = 2

_OPEN_FENCES = ("```", "```python", "```py", "```python3")
_EXAMPLE = "<test>\n```python\nimport sys\n...\nsys.exit(2)  # or 0 when fixed\n```\n</test>"


class TestOutcome(StrEnum):
    """What one run of a reproduction test says about the code it ran on."""

    __test__ = False  # not a pytest class despite the name

    FIXED = "fixed"
    NOT_FIXED = "not_fixed"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"


def classify_exit(exit_code: int | None, timed_out: bool) -> TestOutcome:
    """Map a finished run to an outcome; ``None`` (killed, no code) is a crash."""
    if timed_out:
        return TestOutcome.TIMED_OUT
    if exit_code == EXIT_FIXED:
        return TestOutcome.FIXED
    if exit_code == EXIT_NOT_FIXED:
        return TestOutcome.NOT_FIXED
    return TestOutcome.CRASHED


class TestScript(BaseModel):
    """A reproduction script: whole lines, LF line ends, not blank."""

    __test__ = False

    model_config = ConfigDict(frozen=True, extra="forbid")

    script: str

    @field_validator("script", mode="before")
    @classmethod
    def _lf_only(cls, value: object) -> object:
        return value.replace("\r\n", "\n") if isinstance(value, str) else value

    @field_validator("script")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the test script is empty")
        if not value.endswith("\n"):
            value += "\n"
        for line in value.split("\n"):
            if line.strip() in ("<test>", "</test>"):
                raise ValueError(f"the script cannot contain a line {line.strip()!r}")
        return value


def render_test_script(test: TestScript) -> str:
    """The canonical ``<test>`` element for ``test``."""
    return f"<test>\n```python\n{test.script}```\n</test>\n"


def _lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.split("\n")]


def find_test_element(text: str) -> tuple[int, int] | None:
    """Line indices of the single ``<test>`` line and its ``</test>`` line, if any.

    ``None`` when the answer has no ``<test>`` element. Several elements or an
    unclosed one raise :class:`ParseError`.
    """
    lines = _lines(text)
    opens = [i for i, line in enumerate(lines) if line.strip() == "<test>"]
    if not opens:
        return None
    if len(opens) > 1:
        raise ParseError(
            f"your answer has {len(opens)} <test> elements (lines {', '.join(str(i + 1) for i in opens)}); "
            "write exactly one test script"
        )
    closes = [i for i, line in enumerate(lines) if line.strip() == "</test>" and i > opens[0]]
    if not closes:
        raise ParseError(
            f"the <test> on line {opens[0] + 1} is never closed; end the script with a line </test>"
        )
    return opens[0], closes[-1]


def parse_test_script(text: str) -> TestScript:
    """The one test script in a model answer, or :class:`ParseError` saying what is wrong."""
    found = find_test_element(text)
    if found is None:
        raise ParseError(f"your answer contains no test script; write it as:\n{_EXAMPLE}")
    start, end = found
    body = _lines(text)[start + 1 : end]
    filled = [i for i, line in enumerate(body) if line.strip()]
    if filled and body[filled[0]].strip().lower() in _OPEN_FENCES:
        first = filled[0]
        if len(filled) < 2 or body[filled[-1]].strip() != "```":
            raise ParseError(
                f"the ```python fence inside <test> is not closed; the script must end with a line ``` before </test>:\n{_EXAMPLE}"
            )
        body = body[first + 1 : filled[-1]]
    script = "".join(line + "\n" for line in body)
    if not script.strip():
        raise ParseError(f"the test script inside <test> is empty; write it as:\n{_EXAMPLE}")
    return TestScript(script=script)
