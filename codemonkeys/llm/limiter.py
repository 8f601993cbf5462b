"""Client-side rate limits of one provider: requests in flight, requests/minute, tokens/minute.

Providers enforce per-minute limits per account and answer 429 when they are
exceeded; the SDKs retry those, but with hundreds of trajectories in flight a
client that never holds back spends its time in backoff. The limiter keeps the
whole process under the configured caps instead.

Per-minute caps are sliding windows (a log of grants in the last 60 s), so
*any* 60 s interval holds at most the cap -- stricter than a token bucket, which
allows a burst of a full minute's budget on top of the refill. Admission is
first come, first served: waiters queue on one lock, and only the head of the
queue sleeps, until the grants that block it leave the window. A single
request larger than the whole token cap is admitted alone, once the window is
empty, instead of waiting forever.

Token amounts are estimates made before the call (prompt + ``max_tokens``); the
:class:`Permit` a slot yields lets the caller replace the estimate by the real
usage afterwards, which frees the unused part of the window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

from ..config import ProviderLimits

PERIOD_S = 60.0


class _Grant:
    """One admission in a window; ``live`` turns false when it leaves the window."""

    __slots__ = ("amount", "at", "live")

    def __init__(self, at: float, amount: int) -> None:
        self.at = at
        self.amount = amount
        self.live = True


class SlidingWindow:
    """Amounts granted in the last ``period`` seconds, with the clock passed in (pure, testable)."""

    def __init__(self, capacity: int, period: float = PERIOD_S) -> None:
        self.capacity = capacity
        self.period = period
        self.total = 0
        self._grants: deque[_Grant] = deque()

    def _expire(self, now: float) -> None:
        horizon = now - self.period
        grants = self._grants
        while grants and grants[0].at <= horizon:
            grant = grants.popleft()
            grant.live = False
            self.total -= grant.amount

    def wait_time(self, now: float, amount: int) -> float:
        """Seconds until ``amount`` fits (0 if it fits now). Too big for the cap: until the window is empty."""
        self._expire(now)
        if self.total + amount <= self.capacity or not self._grants:
            return 0.0
        if amount >= self.capacity:
            return self._grants[-1].at + self.period - now
        excess = self.total + amount - self.capacity
        for grant in self._grants:
            excess -= grant.amount
            if excess <= 0:
                return grant.at + self.period - now
        return self._grants[-1].at + self.period - now  # unreachable: total covers the excess

    def add(self, now: float, amount: int) -> _Grant:
        grant = _Grant(now, amount)
        self._grants.append(grant)
        self.total += amount
        return grant

    def adjust(self, grant: _Grant, amount: int) -> None:
        """Replace a grant's amount (estimate -> actual) while it is still in the window."""
        if grant.live:
            self.total += amount - grant.amount
            grant.amount = amount


class Permit:
    """What a slot yields: lets the caller report the tokens a call really used."""

    __slots__ = ("_grant", "_window")

    def __init__(self, window: SlidingWindow | None = None, grant: _Grant | None = None) -> None:
        self._window = window
        self._grant = grant

    def settle(self, actual_tokens: int) -> None:
        if self._window is not None and self._grant is not None:
            self._window.adjust(self._grant, max(0, actual_tokens))


_FREE = Permit()


class _Slot:
    """The async context manager of one call (a class, not a generator: it is on every call's path)."""

    __slots__ = ("_limiter", "_tokens")

    def __init__(self, limiter: ProviderLimiter, tokens: int) -> None:
        self._limiter = limiter
        self._tokens = tokens

    async def __aenter__(self) -> Permit:
        limiter = self._limiter
        await limiter._in_flight.acquire()
        try:
            return await limiter._admit(self._tokens)
        except BaseException:
            limiter._in_flight.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._in_flight.release()


class ProviderLimiter:
    """Caps one provider's calls; ``clock`` and ``sleep`` are injectable for deterministic tests."""

    def __init__(
        self,
        limits: ProviderLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        period: float = PERIOD_S,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._in_flight = asyncio.Semaphore(limits.max_in_flight)
        self._requests = (
            SlidingWindow(limits.requests_per_minute, period)
            if limits.requests_per_minute
            else None
        )
        self._tokens = (
            SlidingWindow(limits.tokens_per_minute, period) if limits.tokens_per_minute else None
        )
        self._gate = asyncio.Lock()

    def slot(self, tokens: int) -> _Slot:
        """``async with limiter.slot(estimated_tokens) as permit:`` around one provider call."""
        return _Slot(self, tokens)

    async def _admit(self, tokens: int) -> Permit:
        requests, window = self._requests, self._tokens
        if requests is None and window is None:
            return _FREE
        async with self._gate:
            while True:
                now = self._clock()
                wait = 0.0
                if requests is not None:
                    wait = requests.wait_time(now, 1)
                if window is not None:
                    wait = max(wait, window.wait_time(now, tokens))
                if wait <= 0.0:
                    break
                await self._sleep(wait)
            if requests is not None:
                requests.add(now, 1)
            if window is None:
                return _FREE
            return Permit(window, window.add(now, tokens))
