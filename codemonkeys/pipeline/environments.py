"""The pipeline's environment providers: Docker images, or local environments for bubblewrap.

Builders are blocking and heavy (a machine may have 2 cores), so builds run
in a worker thread, one at a time by default, and never two for one repo
version at once: its instances share the dependency layer, and two builds
racing would both build it. Concurrent asks for one instance share a single
build; a failed build is not remembered, so a later ask (a rerun with
``--retry-infra``) tries again. Errors are the builders' own
(:class:`~codemonkeys.errors.BuildError`, ``DataError`` for an unknown
spec); the instance boundary records them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config
from ..sandbox.base import EnvironmentRef, SandboxFactory
from ..swebench.instances import Instance

if TYPE_CHECKING:
    from ..swebench.repo import RepoSource
    from .instance import EnvironmentProvider

log = logging.getLogger(__name__)


class Builder(Protocol):
    """What both builders offer: a blocking ``ensure_instance`` returning a ``BuiltImage``."""

    def ensure_instance(self, instance: Instance) -> Any: ...


class ThreadedEnvironments:
    """An :class:`EnvironmentProvider` over a blocking builder (see the module docstring)."""

    def __init__(self, builder: Builder, *, parallel: int = 1) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.builder = builder
        self._parallel = parallel
        self._slots: asyncio.Semaphore | None = None
        self._version_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._builds: dict[str, asyncio.Future[EnvironmentRef]] = {}
        self._ready: dict[str, EnvironmentRef] = {}

    async def environment(self, instance: Instance) -> EnvironmentRef:
        iid = instance.instance_id
        if iid in self._ready:
            return self._ready[iid]
        build = self._builds.get(iid)
        if build is None:
            build = asyncio.ensure_future(self._build(instance))
            self._builds[iid] = build
            build.add_done_callback(functools.partial(self._finished, iid))
        # A cancelled asker must not cancel the build others wait for (its thread runs on anyway).
        return await asyncio.shield(build)

    def _finished(self, iid: str, done: asyncio.Future[EnvironmentRef]) -> None:
        self._builds.pop(iid, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so an unawaited failure is not logged as lost

    async def _build(self, instance: Instance) -> EnvironmentRef:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._parallel)
        lock = self._version_locks.setdefault((instance.repo, instance.version), asyncio.Lock())
        async with lock, self._slots:
            built = await asyncio.to_thread(self.builder.ensure_instance, instance)
        log.info("%s: environment %s (%s, %.0f s)", instance.instance_id, built.ref.key[:16], built.source, built.build_s)
        self._ready[instance.instance_id] = built.ref
        return built.ref  # type: ignore[no-any-return]


def uses_local_environments(sandboxes: SandboxFactory, config: Config) -> bool:
    """Whether ``sandboxes`` runs on host directories (bubblewrap) rather than images."""
    from ..sandbox.bwrap_backend import BubblewrapSandboxFactory

    return isinstance(sandboxes, BubblewrapSandboxFactory) or config.sandbox.backend == "bubblewrap"


def environments_for(
    sandboxes: SandboxFactory,
    config: Config,
    *,
    progress: Callable[[str], None] | None = None,
    source: RepoSource | None = None,
) -> EnvironmentProvider:
    """The provider whose environments ``sandboxes`` can start: local ones for bubblewrap, else images."""
    if uses_local_environments(sandboxes, config):
        from ..env.local import LocalEnvBuilder

        return ThreadedEnvironments(LocalEnvBuilder(config.environment, progress=progress, source=source))
    from ..env.images import ImageBuilder

    return ThreadedEnvironments(ImageBuilder(config.environment, progress=progress, source=source))
