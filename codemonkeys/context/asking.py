"""Asking a model for an answer in a format, and asking again when it is malformed.

A malformed answer is shown back to the model with the parse error (the
conversation grows by the bad answer and a correction request); when the
re-asks are used up the failure is raised as :class:`AnswerUnreadable`, a
model failure that carries every answer, so the caller records it instead of
guessing a default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from ..errors import ParseError
from ..llm.types import CallTag, ChatRequest, ChatResponse, Message, Usage

T = TypeVar("T")


class ChatGateway(Protocol):
    """What the context stage needs from a model: the gateway's ``complete``."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse: ...


class AnswerUnreadable(ParseError):
    """Every answer, re-asks included, failed to parse."""

    def __init__(self, message: str, answers: list[str], usage: Usage) -> None:
        super().__init__(message)
        self.answers = answers
        self.usage = usage


@dataclass(slots=True)
class Answer(Generic[T]):
    """A parsed answer and what it took to get it."""

    value: T
    responses: list[ChatResponse] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return sum((response.usage for response in self.responses), Usage())

    @property
    def attempts(self) -> int:
        return len(self.responses)


async def ask(
    gateway: ChatGateway,
    request: ChatRequest,
    tag: CallTag,
    parse: Callable[[str], T],
    *,
    reasks: int,
    reask_prompt: Callable[[str], str],
) -> Answer[T]:
    """Complete ``request`` and parse the answer, re-asking up to ``reasks`` times.

    Raises :class:`AnswerUnreadable` when no answer parses; errors from the
    gateway (infrastructure, budget) pass through untouched.
    """
    responses: list[ChatResponse] = []
    current = request
    while True:
        response = await gateway.complete(current, tag)
        responses.append(response)
        try:
            return Answer(parse(response.text), responses)
        except ParseError as exc:
            if len(responses) > reasks:
                usage = sum((r.usage for r in responses), Usage())
                raise AnswerUnreadable(
                    f"{len(responses)} answer(s) unreadable; last: {exc}",
                    [r.text for r in responses],
                    usage,
                ) from exc
            follow_up = (
                Message("assistant", response.text.strip() or "(empty answer)"),
                Message("user", reask_prompt(str(exc))),
            )
            current = replace(current, messages=current.messages + follow_up)
