"""The selection trajectory's answer format: a new test or the final choice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from codemonkeys.edits import TestScript
from codemonkeys.errors import ParseError
from codemonkeys.resources import resource_dir
from codemonkeys.selection import (
    SelectionChoice,
    SelectionTest,
    parse_selection_answer,
    render_selection_answer,
)

_reasoning = st.text(
    alphabet=st.characters(blacklist_characters="<>\r", blacklist_categories=("Cs",)), max_size=60
).map(str.strip)
_scripts = (
    st.lists(st.text(alphabet="abc xyz=()'\t", max_size=10), min_size=1, max_size=4)
    .map(lambda lines: "".join(f"{line}\n" for line in lines))
    .filter(lambda script: bool(script.strip()))
)


@given(candidate=st.integers(1, 9), reasoning=_reasoning)
def test_choice_round_trip(candidate: int, reasoning: str) -> None:
    answer = SelectionChoice(candidate=candidate, reasoning=reasoning)
    text = render_selection_answer(answer)
    assert parse_selection_answer(text, num_candidates=9) == answer
    assert render_selection_answer(parse_selection_answer(text, num_candidates=9)) == text


@given(script=_scripts, reasoning=_reasoning)
def test_test_round_trip(script: str, reasoning: str) -> None:
    answer = SelectionTest(test=TestScript(script=script), reasoning=reasoning)
    text = render_selection_answer(answer)
    assert parse_selection_answer(text, num_candidates=3) == answer
    assert render_selection_answer(parse_selection_answer(text, num_candidates=3)) == text


def test_choice_inline_with_reasoning_and_spaces() -> None:
    answer = parse_selection_answer(
        "Candidate 2 handles None too, so I pick <choice> 2 </choice>. Done.", 3
    )
    assert answer == SelectionChoice(
        candidate=2, reasoning="Candidate 2 handles None too, so I pick"
    )


def test_test_answer_keeps_reasoning() -> None:
    text = "The candidates differ on empty input.\n<test>\n```python\nimport sys\nsys.exit(2)\n```\n</test>\n"
    answer = parse_selection_answer(text, 3)
    assert isinstance(answer, SelectionTest)
    assert answer.reasoning == "The candidates differ on empty input."
    assert answer.test.script == "import sys\nsys.exit(2)\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I like the first one.", "neither a <choice> nor a <test>"),
        ("<choice>1</choice> or maybe <choice>2</choice>", "2 <choice> elements"),
        ("<choice>candidate 2</choice>", r"only a candidate number from 1 to 3.*'candidate 2'"),
        ("<choice>4</choice>", "not a candidate; choose a number from 1 to 3"),
        ("<choice>0</choice>", "not a candidate"),
        (
            "<choice>1</choice>\n<test>\n```python\nx\n```\n</test>\n",
            "both a <choice> and a <test>",
        ),
        ("<test>\n```python\nx\n", "never closed"),
        ("</test>\n<test>\nx = 1\n</test>\n", "malformed"),
    ],
)
def test_bad_answers_raise_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_selection_answer(text, num_candidates=3)


def test_validation() -> None:
    with pytest.raises(ValueError):
        SelectionChoice(candidate=0)
    with pytest.raises(ValueError):
        SelectionChoice(candidate=1, reasoning="see <choice>2</choice>")
    with pytest.raises(ValueError):
        parse_selection_answer("<choice>1</choice>", num_candidates=0)


def test_format_instructions_examples_parse() -> None:
    env = Environment(loader=FileSystemLoader(resource_dir("prompts")), undefined=StrictUndefined)
    text = env.get_template("formats/selection_answer.j2").render(num_candidates=4)
    assert "from 1 to 4" in text
    test_part, choice_part = text.split("To finish", 1)
    assert isinstance(parse_selection_answer(test_part, 4), SelectionTest)
    choice = parse_selection_answer(choice_part.split("Write either")[0], 4)
    assert isinstance(choice, SelectionChoice) and choice.candidate == 1
    with pytest.raises(ParseError, match="both"):
        parse_selection_answer(text, 4)
