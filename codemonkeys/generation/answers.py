"""What a testing or editing turn may answer, and the parser for it.

A testing answer is a ``<test>`` (a new reproduction script) or ``<done/>``.
An editing answer is any number of ``<edit>`` elements and/or one ``<test>``,
or ``<done/>`` alone. ``<done/>`` must stand alone so the model never ends a
trajectory on edits it has not seen run. Formats of the parts live in
:mod:`codemonkeys.edits`; this module only combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..edits import (
    EditBlock,
    TestScript,
    parse_edits,
    parse_test_script,
    render_edits,
    render_test_script,
)
from ..edits.testscript import find_test_element
from ..errors import ParseError

DONE = "<done/>"


def _has_done(text: str) -> bool:
    return any(line.strip() == DONE for line in text.splitlines())


@dataclass(frozen=True)
class TestingAnswer:
    """A new test script, or ``done`` (keep the last one)."""

    __test__ = False

    test: TestScript | None = None
    done: bool = False


@dataclass(frozen=True)
class EditingAnswer:
    """Edits and/or a replacement test, or ``done``."""

    edits: list[EditBlock] = field(default_factory=list)
    test: TestScript | None = None
    done: bool = False


def parse_testing_answer(text: str) -> TestingAnswer:
    """Read a testing turn; :class:`ParseError` says what is wrong."""
    has_test = find_test_element(text) is not None
    if _has_done(text):
        if has_test:
            raise ParseError(f"write either a new <test> or {DONE}, not both")
        return TestingAnswer(done=True)
    if not has_test:
        raise ParseError(f"your answer has neither a <test> element nor {DONE}")
    return TestingAnswer(test=parse_test_script(text))


def parse_editing_answer(text: str) -> EditingAnswer:
    """Read an editing turn; :class:`ParseError` says what is wrong."""
    edits = parse_edits(text)
    has_test = find_test_element(text) is not None
    if _has_done(text):
        if edits or has_test:
            raise ParseError(f"{DONE} must be alone: first send the edits or test, see them run, then answer {DONE}")
        return EditingAnswer(done=True)
    if not edits and not has_test:
        raise ParseError(f"your answer has no <edit> element, no <test> element and no {DONE}")
    return EditingAnswer(edits=edits, test=parse_test_script(text) if has_test else None)


def render_testing_answer(answer: TestingAnswer) -> str:
    if answer.done:
        return DONE + "\n"
    assert answer.test is not None
    return render_test_script(answer.test)


def render_editing_answer(answer: EditingAnswer) -> str:
    if answer.done:
        return DONE + "\n"
    parts = []
    if answer.edits:
        parts.append(render_edits(answer.edits))
    if answer.test is not None:
        parts.append(render_test_script(answer.test))
    return "\n".join(parts)
