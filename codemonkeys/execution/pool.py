"""A pool of started sandboxes of one environment, reused and reset between runs.

Starting a container costs far more than resetting a git tree, so runs borrow
an idle sandbox, and hand it back reset. A sandbox that breaks is closed and
replaced. The pool itself is an ``async with`` block: every sandbox it started
is stopped when it closes, whatever happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self

from ..errors import SandboxError
from ..sandbox.base import EnvironmentRef, Sandbox, SandboxFactory

log = logging.getLogger(__name__)


class SandboxPool:
    """At most ``size`` sandboxes of ``env`` at once, started lazily."""

    def __init__(self, factory: SandboxFactory, env: EnvironmentRef, size: int) -> None:
        if size < 1:
            raise ValueError("a sandbox pool needs room for at least one sandbox")
        self.env = env
        self._factory = factory
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[Sandbox, AsyncExitStack]] = []
        self._all: set[AsyncExitStack] = set()
        self._closed = False
        self.started = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every sandbox; safe to call twice."""
        self._closed = True
        stacks, self._all = list(self._all), set()
        self._idle.clear()
        for stack in stacks:
            try:
                await asyncio.shield(stack.aclose())
            except Exception:  # noqa: BLE001 - cleanup must go on for the others
                log.exception("failed to stop a sandbox of %s", self.env.key)

    async def _start(self) -> tuple[Sandbox, AsyncExitStack]:
        stack = AsyncExitStack()
        self._all.add(stack)
        try:
            sandbox = await stack.enter_async_context(self._factory.sandbox(self.env))
        except BaseException:
            self._all.discard(stack)
            await asyncio.shield(stack.aclose())
            raise
        self.started += 1
        return sandbox, stack

    async def _discard(self, stack: AsyncExitStack) -> None:
        self._all.discard(stack)
        try:
            await asyncio.shield(stack.aclose())
        except Exception:  # noqa: BLE001
            log.exception("failed to stop a broken sandbox of %s", self.env.key)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        """Borrow a sandbox at the base commit; it is reset when handed back."""
        if self._closed:
            raise SandboxError(f"the sandbox pool of {self.env.key} is closed")
        async with self._slots:
            sandbox, stack = self._idle.pop() if self._idle else await self._start()
            healthy = False
            try:
                yield sandbox
                await sandbox.reset()
                healthy = True
            finally:
                if healthy and not self._closed:
                    self._idle.append((sandbox, stack))
                else:
                    await self._discard(stack)
