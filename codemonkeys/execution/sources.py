"""Reading repository files at the base commit from a sandbox of the environment."""

from __future__ import annotations

import asyncio

from ..edits import check_relative_path
from ..errors import SandboxFileNotFoundError
from ..sandbox.base import TESTBED
from .pool import SandboxPool


class SandboxSources:
    """Implements ``SourceFiles``: file contents at the base commit, read once each.

    Trajectories of an instance ask for the same file at about the same time
    (their first edits), so a read in flight is shared rather than repeated; a
    read leaves the sandbox as it was, so the pool skips its reset.
    """

    def __init__(self, pool: SandboxPool) -> None:
        self._pool = pool
        self._reads: dict[str, asyncio.Future[str | None]] = {}

    async def read(self, path: str) -> str | None:
        """Content of ``path`` (relative to the repo root), ``None`` when there is no such file."""
        path = check_relative_path(path)
        read = self._reads.get(path)
        if read is None or (read.done() and (read.cancelled() or read.exception() is not None)):
            read = self._reads[path] = asyncio.ensure_future(self._read(path))
            read.add_done_callback(_retrieve)
        return await asyncio.shield(read)

    async def _read(self, path: str) -> str | None:
        async with self._pool.acquire(read_only=True) as sandbox:
            try:
                return await sandbox.read_file(f"{TESTBED}/{path}")
            except SandboxFileNotFoundError:
                return None


def _retrieve(done: asyncio.Future[str | None]) -> None:
    """Mark a shared read's failure as seen: its askers may all have been cancelled."""
    if not done.cancelled():
        done.exception()
