"""The selection trajectory's answer: either one more test, or the final choice.

Format (``prompts/formats/selection_answer.j2`` tells the model the same)::

    free reasoning ...

    <choice>2</choice>

or::

    free reasoning ...

    <test>
    ```python
    ...a new reproduction test (see codemonkeys.edits.testscript)...
    ```
    </test>

Candidates are numbered from 1 as the prompt shows them. Exactly one of the two
elements must be present. The reasoning is the text before the element; text
after it is ignored.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..edits.testscript import TestScript, find_test_element, parse_test_script, render_test_script
from ..errors import ParseError

# The value cannot contain "<", so prose that mentions "<choice>" is not taken as the element.
_CHOICE = re.compile(r"<choice>(?P<value>[^<]*)</choice>")
_CHOICE_EXAMPLE = "<choice>2</choice>"


def _clean_reasoning(value: str) -> str:
    value = value.replace("\r\n", "\n").strip()
    if _CHOICE.search(value) or any(
        line.strip() in ("<test>", "</test>") for line in value.split("\n")
    ):
        raise ValueError("the reasoning cannot contain a <choice> or <test> element")
    return value


class SelectionChoice(BaseModel):
    """The final pick: candidate number ``candidate`` (1-based)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate: int = Field(ge=1)
    reasoning: str = ""

    @field_validator("reasoning")
    @classmethod
    def _reasoning_ok(cls, value: str) -> str:
        return _clean_reasoning(value)


class SelectionTest(BaseModel):
    """A request to run one more test on all candidates before choosing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    test: TestScript
    reasoning: str = ""

    @field_validator("reasoning")
    @classmethod
    def _reasoning_ok(cls, value: str) -> str:
        return _clean_reasoning(value)


SelectionAnswer = SelectionChoice | SelectionTest


def render_selection_answer(answer: SelectionAnswer) -> str:
    """The canonical text of an answer; ``parse_selection_answer`` reads it back."""
    if isinstance(answer, SelectionChoice):
        element = f"<choice>{answer.candidate}</choice>\n"
    else:
        element = render_test_script(answer.test)
    return f"{answer.reasoning}\n\n{element}" if answer.reasoning else element


def parse_selection_answer(text: str, num_candidates: int) -> SelectionAnswer:
    """Read a selection answer; a malformed one raises :class:`ParseError` for the model."""
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be positive, got {num_candidates}")
    text = text.replace("\r\n", "\n")
    choices = list(_CHOICE.finditer(text))
    test = find_test_element(text)
    if choices and test is not None:
        raise ParseError(
            "your answer contains both a <choice> and a <test>; either write one more test "
            "to run on all candidates, or give your final choice, not both"
        )
    if test is not None:
        start_offset = sum(len(line) + 1 for line in text.split("\n")[: test[0]])
        return _build(SelectionTest, test=parse_test_script(text), reasoning=text[:start_offset])
    if not choices:
        raise ParseError(
            f"your answer contains neither a <choice> nor a <test>; end it with your final choice "
            f"as {_CHOICE_EXAMPLE} (a candidate number from 1 to {num_candidates}) or write a test in <test>...</test>"
        )
    if len(choices) > 1:
        raise ParseError(f"your answer contains {len(choices)} <choice> elements; give exactly one")
    raw = choices[0].group("value").strip()
    if not re.fullmatch(r"\d+", raw):
        raise ParseError(
            f"<choice> must contain only a candidate number from 1 to {num_candidates}, like {_CHOICE_EXAMPLE}; got {raw!r}"
        )
    number = int(raw)
    if not 1 <= number <= num_candidates:
        raise ParseError(
            f"<choice>{number}</choice> is not a candidate; choose a number from 1 to {num_candidates}"
        )
    return _build(SelectionChoice, candidate=number, reasoning=text[: choices[0].start()])


def _build(kind: type[SelectionChoice | SelectionTest], **fields: object) -> SelectionAnswer:
    """Construct an answer; a validation problem is the model's, so it becomes a ParseError."""
    try:
        return kind.model_validate(fields)
    except ValidationError as exc:
        reason = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
        raise ParseError(f"your answer is malformed: {reason}") from None
