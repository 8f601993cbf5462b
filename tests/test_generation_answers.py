"""The testing and editing answer formats: every rule of the parsers, and parse/render round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codemonkeys.edits import EditBlock, TestScript
from codemonkeys.edits.blocks import MARKERS
from codemonkeys.errors import ParseError
from codemonkeys.generation.answers import (
    EditingAnswer,
    TestingAnswer,
    parse_editing_answer,
    parse_testing_answer,
    render_editing_answer,
    render_testing_answer,
)

_line = st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=12).filter(
    lambda line: line.rstrip() not in MARKERS and line.strip() not in ("<test>", "</test>", "<done/>", "<edit>", "</edit>")
)
_text = st.lists(_line, max_size=4).map(lambda lines: "".join(f"{line}\n" for line in lines))
_paths = st.from_regex(r"[a-z_][a-z0-9_]{0,6}(/[a-z_][a-z0-9_]{0,6}){0,2}\.py", fullmatch=True)
_blocks = st.builds(EditBlock, path=_paths, search=_text, replace=_text)
_scripts = st.lists(_line, min_size=1, max_size=6).map(lambda lines: "".join(f"{line}\n" for line in lines)).filter(
    lambda script: bool(script.strip())
)
_tests = st.builds(TestScript, script=_scripts)


@given(st.one_of(st.builds(TestingAnswer, test=_tests), st.just(TestingAnswer(done=True))))
def test_testing_answers_round_trip(answer: TestingAnswer) -> None:
    text = render_testing_answer(answer)
    assert parse_testing_answer(text) == answer
    assert render_testing_answer(parse_testing_answer(text)) == text


_editing = st.one_of(
    st.builds(EditingAnswer, edits=st.lists(_blocks, min_size=1, max_size=3), test=st.none() | _tests),
    st.builds(EditingAnswer, edits=st.just([]), test=_tests),
    st.just(EditingAnswer(done=True)),
)


@given(_editing)
def test_editing_answers_round_trip(answer: EditingAnswer) -> None:
    text = render_editing_answer(answer)
    assert parse_editing_answer(text) == answer
    assert render_editing_answer(parse_editing_answer(text)) == text


TEST = "<test>\n```python\nimport sys\nsys.exit(2)\n```\n</test>\n"
EDIT = "<edit>\n<path>m.py</path>\n<<<<<<< SEARCH\nx = 0\n=======\nx = 1\n>>>>>>> REPLACE\n</edit>\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prose only", "neither a <test> element nor <done/>"),
        (TEST + "<done/>\n", "not both"),
    ],
)
def test_testing_answer_rules(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_testing_answer(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prose only", "no <edit> element, no <test> element and no <done/>"),
        (EDIT + "<done/>\n", "must be alone"),
        (TEST + "<done/>\n", "must be alone"),
    ],
)
def test_editing_answer_rules(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_editing_answer(text)


def test_done_is_a_line_of_its_own_after_reasoning() -> None:
    assert parse_testing_answer("The test is right.\n<done/>\n").done
    assert parse_editing_answer("Fixed.\n\n<done/>").done
    with pytest.raises(ParseError):
        parse_testing_answer("I would write <done/> once it works.")
