"""Provider rate limits shared by every worker of a distributed run.

Rate limits are per account: N workers each holding its own
:class:`~codemonkeys.llm.limiter.ProviderLimiter` would let N times the
configured rate through. In distributed mode one :class:`SharedLimiters`
(an async Ray actor on the driver's node) keeps one limiter per provider, and
every worker's gateways take their slots from it through
:class:`RemoteLimiter`: one round trip to enter a slot, one to leave it.

Slots are named by tickets the worker makes, so a slot whose waiter was
cancelled, or whose worker died, is released rather than held for good:
cancelling releases the ticket whenever it is granted, and the next attempt
of an instance releases everything its lost attempt held
(:meth:`SharedLimiters.release_owner`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from ..config import Config, ProviderLimits, ProviderSettings
from ..llm.limiter import Permit, ProviderLimiter

AsyncTransport = Callable[..., Awaitable[Any]]
SendTransport = Callable[..., None]


class SharedLimiters:
    """One :class:`ProviderLimiter` per provider for the whole cluster; slots held per ticket."""

    def __init__(self) -> None:
        self._limiters: dict[str, ProviderLimiter] = {}
        self._held: dict[str, tuple[str, AbstractAsyncContextManager[Permit], Permit]] = {}
        self._waiting: dict[str, str] = {}
        self._cancelled: set[str] = set()

    async def acquire(self, key: str, limits: ProviderLimits, owner: str, ticket: str, tokens: int) -> None:
        """Wait for a slot of provider ``key``; it is held under ``ticket`` until released."""
        if ticket in self._cancelled:
            self._cancelled.discard(ticket)
            return
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = ProviderLimiter(limits)
        slot = limiter.slot(tokens)
        self._waiting[ticket] = owner
        try:
            permit = await slot.__aenter__()
        finally:
            self._waiting.pop(ticket, None)
        if ticket in self._cancelled:
            self._cancelled.discard(ticket)
            await slot.__aexit__(None, None, None)
            return
        self._held[ticket] = (owner, slot, permit)

    async def release(self, ticket: str, actual_tokens: int | None = None) -> None:
        """Leave a slot (booking the tokens really used); a ticket not granted yet is released when it is."""
        entry = self._held.pop(ticket, None)
        if entry is None:  # still waiting, or not even arrived yet (actor calls may overtake each other)
            self._cancelled.add(ticket)
            return
        _, slot, permit = entry
        if actual_tokens is not None:
            permit.settle(actual_tokens)
        await slot.__aexit__(None, None, None)

    async def release_owner(self, owner: str) -> int:
        """Release every slot held or awaited by ``owner`` (an instance whose attempt was lost)."""
        self._cancelled.update(ticket for ticket, who in self._waiting.items() if who == owner)
        held = [ticket for ticket, (who, _, _) in self._held.items() if who == owner]
        for ticket in held:
            await self.release(ticket)
        return len(held)

    async def held(self) -> int:
        """Slots held right now (for tests and diagnostics)."""
        return len(self._held)


class _RemotePermit:
    """Keeps the real usage until the slot is left, so leaving and settling are one round trip."""

    __slots__ = ("actual",)

    def __init__(self) -> None:
        self.actual: int | None = None

    def settle(self, actual_tokens: int) -> None:
        self.actual = actual_tokens


class _RemoteSlot:
    __slots__ = ("_limiter", "_permit", "_ticket", "_tokens")

    def __init__(self, limiter: RemoteLimiter, tokens: int) -> None:
        self._limiter = limiter
        self._tokens = tokens
        self._ticket = uuid.uuid4().hex
        self._permit = _RemotePermit()

    async def __aenter__(self) -> _RemotePermit:
        limiter = self._limiter
        try:
            await limiter.call("acquire", limiter.key, limiter.limits, limiter.owner, self._ticket, self._tokens)
        except BaseException:
            limiter.send("release", self._ticket, None)
            raise
        return self._permit

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._limiter.call("release", self._ticket, self._permit.actual)


class RemoteLimiter:
    """Implements :class:`~codemonkeys.llm.gateway.Limiter` with slots from a :class:`SharedLimiters`."""

    def __init__(self, call: AsyncTransport, send: SendTransport, key: str, limits: ProviderLimits, owner: str) -> None:
        self.call = call
        self.send = send
        self.key = key
        self.limits = limits
        self.owner = owner

    def slot(self, tokens: int) -> _RemoteSlot:
        return _RemoteSlot(self, tokens)


def limiter_key(config: Config, settings: ProviderSettings) -> str:
    """The provider whose settings these are (the hub passes settings, not names)."""
    for name, configured in config.providers.items():
        if configured is settings:
            return name
    return "unlisted:" + settings.limits.model_dump_json()


def remote_limiter_factory(
    config: Config, call: AsyncTransport, send: SendTransport, owner: str
) -> Callable[[ProviderSettings], RemoteLimiter]:
    """A ``limiter_factory`` for :class:`~codemonkeys.llm.registry.ModelHub` on a worker."""

    def make(settings: ProviderSettings) -> RemoteLimiter:
        return RemoteLimiter(call, send, limiter_key(config, settings), settings.limits, owner)

    return make
