"""A scripted model: replies from a list or a function, for tests and dry runs.

It speaks the same :class:`~codemonkeys.llm.types.Model` protocol as the real
providers, so stage code is tested exactly as it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ..errors import CodeMonkeysError, ProviderError
from .gateway import approx_tokens
from .types import ChatRequest, ChatResponse, Usage

Reply = str | ChatResponse | CodeMonkeysError
ReplyFunction = Callable[[ChatRequest], Reply | Awaitable[Reply]]


@dataclass
class ScriptedCall:
    """One request the scripted model received, kept for assertions."""

    request: ChatRequest
    reply: Reply


class ScriptedModel:
    """Answers from a list of replies (in order) or from a function of the request.

    A reply may be a string, a full :class:`ChatResponse`, or an exception
    instance, which is raised (to script provider failures). Running out of
    scripted replies is a :class:`ProviderError`, never an empty answer.
    """

    def __init__(
        self,
        replies: Iterable[Reply] | ReplyFunction,
        *,
        name: str = "scripted:test",
        latency_s: float = 0.0,
    ) -> None:
        self._name = name
        self._function: ReplyFunction | None = replies if callable(replies) else None
        self._queue: list[Reply] = [] if callable(replies) else list(replies)
        self._latency_s = latency_s
        self.calls: list[ScriptedCall] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        return len(self._queue)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if self._function is not None:
            reply = self._function(request)
            if isinstance(reply, Awaitable):
                reply = await reply
        elif self._queue:
            reply = self._queue.pop(0)
        else:
            raise ProviderError(f"scripted model {self._name} has no reply left for call {len(self.calls) + 1}")
        self.calls.append(ScriptedCall(request, reply))
        if isinstance(reply, CodeMonkeysError):
            raise reply
        if isinstance(reply, ChatResponse):
            return reply
        usage = Usage(input_tokens=approx_tokens(request.prompt_text()), output_tokens=approx_tokens(reply))
        return ChatResponse(text=reply, usage=usage, stop_reason="end_turn", model=self._name)
