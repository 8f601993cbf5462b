"""The one agent loop: testing, editing and selection trajectories are configurations of it.

Shaped like mini-swe-agent's ``DefaultAgent``: :meth:`Agent.run` seeds the
conversation from the configuration's first message, then calls
:meth:`Agent.step` (query, parse, act, observe) until an exception ends it.

* Non-terminating: :class:`~codemonkeys.errors.ParseError` from the parser
  becomes the next user message (the configuration's re-ask, carrying the
  parser's own message) and the loop goes on.
* Terminating: :class:`Finished` (the configuration's ``done`` or ``limit``)
  and :class:`~codemonkeys.errors.ContextLimitReached` (ours before a call, or
  the provider's own 400) end the trajectory with that status; the state keeps
  its last test and edit. Anything else (``TurnLimitReached`` from a
  configuration whose limit is a failure, provider errors) propagates to the
  trajectory boundary (:mod:`codemonkeys.boundary`), which records its kind.

The loop alone owns the turn limit and the context-window check (both before a
call, never after the money is spent), saving after every turn, and resume:
the saved conversation is replayed as is, so the request that was in flight is
byte-identical and the response cache answers it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from ..config import ModelSettings
from ..errors import ContextLimitReached, ParseError, TurnLimitReached
from ..llm.tokens import count_tokens
from ..llm.types import CallTag, ChatRequest, ChatService, Message, Usage
from .state import AgentState, ChatTurn, TrajectoryStore, save

S = TypeVar("S", bound=AgentState)
A = TypeVar("A")
S_contra = TypeVar("S_contra", bound=AgentState, contravariant=True)


@dataclass(frozen=True)
class Observation:
    """The next user message and the event saved with it."""

    text: str
    event: Mapping[str, object] = field(default_factory=dict)


class Finished(Exception):
    """Terminating: the configuration ends the trajectory, keeping what it made."""

    def __init__(self, status: Literal["done", "limit"], event: dict[str, object] | None = None) -> None:
        super().__init__(status)
        self.status: Literal["done", "limit"] = status
        self.event = event or {}


class Configuration(Protocol[S_contra, A]):
    """One kind of trajectory: its words, its answer parser, its act. Never a loop of its own."""

    @property
    def max_turns(self) -> int: ...

    async def first(self, state: S_contra) -> Observation:
        """The message that opens the conversation (it may act first, e.g. run the test)."""
        ...

    def parse(self, text: str, state: S_contra) -> A:
        """The answer; :class:`ParseError` with a message for the model when it cannot be used."""
        ...

    async def act(self, answer: A, state: S_contra) -> Observation:
        """Do what the answer asks; raise :class:`Finished` to end the trajectory."""
        ...

    def reask(self, error: ParseError, state: S_contra) -> str:
        """The message that asks again after an unreadable answer."""
        ...

    def limit_reached(self, state: S_contra) -> Finished | TurnLimitReached:
        """What the turn limit means here: an ending that keeps the work, or a model failure."""
        ...


@dataclass
class LoopDeps:
    """What the loop itself talks to. ``warm``: trajectory 0's first call goes alone (prompt cache)."""

    chat: ChatService
    store: TrajectoryStore
    model: ModelSettings
    warm: asyncio.Event | None = None


def calibrated_ratio(ratio: float, counted: int, usage: Usage) -> float:
    """The larger of ``ratio`` and what the server billed per token we counted.

    Estimated usage (a server that reported none) carries no information, and the
    ratio never drops below what was seen, so the check stays on the safe side.
    """
    if usage.estimated or counted <= 0:
        return ratio
    billed = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return max(ratio, billed / counted)


class Agent(Generic[S, A]):
    """Runs one trajectory to its end under one configuration."""

    def __init__(self, deps: LoopDeps, config: Configuration[S, A]) -> None:
        self.deps = deps
        self.config = config
        self._system_tokens: tuple[str, int] | None = None

    async def run(self, state: S) -> S:
        """Run (or resume) ``state`` until it ends; failures other than the endings propagate."""
        if state.finished:
            return state
        warm = self.deps.warm
        try:
            if warm is not None and state.index == 0 and state.calls > 0:
                warm.set()  # resumed after its first call: the others need not wait
            if not state.messages:
                self.observe(state, await self.config.first(state))
            while True:
                try:
                    await self.step(state)
                except ParseError as exc:
                    state.parse_errors += 1
                    event: dict[str, object] = {"action": "parse_error", "error": str(exc)}
                    self.observe(state, Observation(self.config.reask(exc, state), event))
        except Finished as end:
            self.end(state, end.status, {"action": end.status, **end.event})
        except ContextLimitReached as exc:
            state.failure_kind, state.failure = str(exc.kind), f"ContextLimitReached: {exc}"[:2000]
            self.end(state, "context_limit", {"action": "context_limit", "prompt_tokens": exc.prompt_tokens, "window": exc.window})
        finally:
            if warm is not None and state.index == 0:
                warm.set()
        return state

    async def step(self, state: S) -> None:
        """One turn: ``observe(act(parse(query())))``."""
        text = await self.query(state)
        answer = self.config.parse(text, state)
        self.observe(state, await self.config.act(answer, state))

    async def query(self, state: S) -> str:
        """One model call, after the turn limit and the context window allow it."""
        if state.calls >= self.config.max_turns:
            raise self.config.limit_reached(state)
        request = self.request(state)
        # Counted once, for the window check and its calibration; without a window, neither is needed.
        counted = 0 if self.deps.model.context_window is None else self.prompt_tokens(state)
        self.check_window(state, request, counted)
        warm = self.deps.warm
        if warm is not None and state.index > 0 and state.calls == 0:
            await warm.wait()
        try:
            tag = CallTag(stage=state.kind, instance_id=state.instance_id, trajectory=state.trajectory_id)
            response = await self.deps.chat.complete(request, tag)
        finally:
            if warm is not None and state.index == 0:
                warm.set()
        state.token_ratio = calibrated_ratio(state.token_ratio, counted, response.usage)
        state.calls += 1
        state.messages.append(ChatTurn(role="assistant", content=response.text))
        return response.text

    def request(self, state: S) -> ChatRequest:
        """The conversation as a request; a cache breakpoint after the system prompt and the last turn."""
        last = len(state.messages) - 1
        model = self.deps.model
        return ChatRequest(
            messages=tuple(Message(t.role, t.content, cache=(i == last)) for i, t in enumerate(state.messages)),
            system=state.system,
            max_tokens=model.max_output_tokens,
            temperature=model.temperature,
            sample=state.index,
            system_cache=True,
        )

    def prompt_tokens(self, state: S) -> int:
        """The request's prompt tokens by the project's counter (the system prompt counted once)."""
        model = self.deps.model.model
        if self._system_tokens is None or self._system_tokens[0] != state.system:
            self._system_tokens = (state.system, count_tokens(state.system, model))
        return self._system_tokens[1] + count_tokens("\n".join(t.content for t in state.messages), model)

    def check_window(self, state: S, request: ChatRequest, counted: int) -> None:
        """:class:`ContextLimitReached` when prompt plus ``max_tokens`` would not fit the window.

        ``counted`` is :meth:`prompt_tokens` of ``request``, scaled by the server's calibrated ratio.
        """
        window = self.deps.model.context_window
        if window is None:
            return
        prompt = math.ceil(counted * state.token_ratio)
        if prompt + request.max_tokens > window:
            raise ContextLimitReached(
                f"the prompt ({prompt} tokens) plus max_tokens ({request.max_tokens}) exceeds the "
                f"context window of {window} tokens",
                prompt_tokens=prompt,
                window=window,
            )

    def observe(self, state: S, observation: Observation) -> None:
        """Tell the model what happened and save the turn."""
        state.messages.append(ChatTurn(role="user", content=observation.text))
        save(self.deps.store, state, dict(observation.event))

    def end(self, state: S, status: str, event: dict[str, object]) -> None:
        state.status = status  # type: ignore[assignment]
        save(self.deps.store, state, {**event, "status": status})
