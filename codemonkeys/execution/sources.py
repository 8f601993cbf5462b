"""Reading repository files at the base commit from a sandbox of the environment."""

from __future__ import annotations

from ..edits import check_relative_path
from ..errors import SandboxFileNotFoundError
from ..sandbox.base import TESTBED
from .pool import SandboxPool


class SandboxSources:
    """Implements ``SourceFiles``: file contents at the base commit, read once each."""

    def __init__(self, pool: SandboxPool) -> None:
        self._pool = pool
        self._cache: dict[str, str | None] = {}

    async def read(self, path: str) -> str | None:
        """Content of ``path`` (relative to the repo root), ``None`` when there is no such file."""
        path = check_relative_path(path)
        if path not in self._cache:
            async with self._pool.acquire() as sandbox:
                try:
                    self._cache[path] = await sandbox.read_file(f"{TESTBED}/{path}")
                except SandboxFileNotFoundError:
                    self._cache[path] = None
        return self._cache[path]
