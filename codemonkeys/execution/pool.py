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
from ..sandbox.aio import finish_despite_cancel
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
        """Stop every sandbox, all at once (one by one, an instance would wait for each); safe to call twice."""
        self._closed = True
        stacks, self._all = list(self._all), set()
        self._idle.clear()
        closing = asyncio.gather(*(stack.aclose() for stack in stacks), return_exceptions=True)
        for result in await finish_despite_cancel(closing):
            if isinstance(result, Exception):  # cleanup goes on for the others
                log.error("failed to stop a sandbox of %s: %s", self.env.key, result)

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
    async def acquire(self, *, read_only: bool = False) -> AsyncIterator[Sandbox]:
        """Borrow a sandbox at the base commit; it is reset when handed back.

        ``read_only``: the borrower only reads files, so the reset (a command in
        the sandbox) is skipped.
        """
        if self._closed:
            raise SandboxError(f"the sandbox pool of {self.env.key} is closed")
        async with self._slots:
            sandbox, stack = self._idle.pop() if self._idle else await self._start()
            healthy = False
            try:
                yield sandbox
                if not read_only:
                    await sandbox.reset()
                healthy = True
            finally:
                if healthy and not self._closed:
                    self._idle.append((sandbox, stack))
                else:
                    await self._discard(stack)
