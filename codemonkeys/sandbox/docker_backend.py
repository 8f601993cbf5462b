"""Docker sandboxes: one container per ``async with``, removed on every way out.

The container runs ``sleep infinity`` under Docker's init, with no network,
memory/pids/CPU limits and no host mounts; commands arrive by ``docker exec``
as argument lists. Every blocking SDK call runs in the factory's thread pool,
so many sandboxes work at once. Containers carry labels naming the process
that made them, so :func:`cleanup_leaked` can remove those of dead processes.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import posixpath
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from ..config import SandboxConfig
from ..errors import SandboxError, SandboxFileNotFoundError
from . import patching
from .aio import finish_despite_cancel
from .base import TESTBED, EnvironmentRef, ExecResult
from .session import current_session, session_alive
from .truncate import HeadTail

log = logging.getLogger(__name__)

T = TypeVar("T")
LABEL = "codemonkeys"
# A command's own timeout runs inside the container; this much later the host
# stops waiting for a docker exec that did not come back.
WATCHDOG_GRACE_S = 10.0
# Kills every process in the container but init, the keep-alive process and itself.
_SWEEP = (
    'for d in /proc/[0-9]*; do p="${d#/proc/}"; case " 1 $1 $$ " in *" $p "*) ;; '
    '*) kill -9 "$p" 2>/dev/null;; esac; done; true'
)
_PREPARE_WRITE = (
    'mkdir -p -- "$(dirname -- "$1")" && { stat -c %a -- "$1" 2>/dev/null || echo 644; }'
)


def connect(timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for the local daemon, checked with ``ping``; SandboxError when none answers."""
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(f"no Docker daemon answers: {exc}") from exc
    return client


def _drain(stream: Iterable[bytes], sink: HeadTail) -> None:
    try:
        for chunk in stream:
            sink.feed(chunk)
    except (OSError, ValueError, AttributeError):
        pass  # the watchdog closed the socket under us


def list_sandboxes(client: docker.DockerClient, **labels: str) -> list[dict[str, Any]]:
    """Sandbox containers (id, name, labels) from one list call, with ``LABEL.<key>=<value>`` filters.

    One call, no inspect per container: ``containers.list`` inspects each one it
    lists, and another run removing one in between made that a ``NotFound``.
    """
    filters = [f"{LABEL}=1", *(f"{LABEL}.{key}={value}" for key, value in labels.items())]
    found = []
    for row in client.api.containers(all=True, filters={"label": filters}):
        names = row.get("Names") or []
        found.append({
            "id": row["Id"],
            "name": names[0].lstrip("/") if names else row["Id"][:12],
            "labels": row.get("Labels") or {},
        })
    return found


def remove_container(client: docker.DockerClient, container: str) -> bool:
    """Force-remove a container; ``False`` when it is already gone or another process is removing it."""
    try:
        client.api.remove_container(container, force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # "removal already in progress" (another run's cleanup)
            return False
        raise
    return True


def cleanup_leaked(client: docker.DockerClient, *, all_hosts: bool = False) -> list[str]:
    """Remove sandbox containers whose creating process is gone; returns their names.

    Containers made on other hosts (a shared daemon) are left alone unless
    ``all_hosts``, since their processes cannot be checked from here. Containers
    of live runs are never touched, and ones that vanish meanwhile are skipped.
    """
    host = current_session().host
    removed = []
    for container in list_sandboxes(client):
        labels = container["labels"]
        same_host = labels.get(f"{LABEL}.host") == host
        if not same_host and not all_hosts:
            continue
        if same_host and session_alive(labels.get(f"{LABEL}.pid", ""), labels.get(f"{LABEL}.start", "")):
            continue
        if remove_container(client, container["id"]):
            removed.append(container["name"])
    if removed:
        log.info("removed %d leaked sandbox containers", len(removed))
    return removed


class DockerSandboxFactory:
    """Makes :class:`DockerSandbox` es that share a client and a thread pool."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        client: docker.DockerClient | None = None,
        run_id: str | None = None,
        watchdog_grace_s: float = WATCHDOG_GRACE_S,
        network: bool = False,
    ) -> None:
        self.config = config
        self.network = network  # grading.network only: Docker's default bridge, as the harness's containers
        self.watchdog_grace_s = watchdog_grace_s
        self.client = client or connect()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        # A running command holds a thread while its output streams in.
        self.executor = ThreadPoolExecutor(
            max_workers=max(16, 4 * config.pool_size), thread_name_prefix="cm-docker"
        )

    def sandbox(self, env: EnvironmentRef) -> DockerSandbox:
        if not env.image:
            raise SandboxError(f"environment {env.key!r} has no Docker image")
        return DockerSandbox(self, env)

    def labels(self, env: EnvironmentRef) -> dict[str, str]:
        """Labels that tie a container to this process (for leak cleanup) and this factory."""
        session = current_session()
        return {
            LABEL: "1",
            f"{LABEL}.session": session.id,
            f"{LABEL}.host": session.host,
            f"{LABEL}.pid": str(session.pid),
            f"{LABEL}.start": session.start,
            f"{LABEL}.run": self.run_id,
            f"{LABEL}.env": env.key[:200],
        }

    def cleanup_leaked(self) -> list[str]:
        return cleanup_leaked(self.client)

    def close(self) -> None:
        self.executor.shutdown(wait=False)


class DockerSandbox:
    """One container with the environment's /testbed; see :class:`~codemonkeys.sandbox.base.Sandbox`."""

    def __init__(self, factory: DockerSandboxFactory, env: EnvironmentRef) -> None:
        self.env = env
        self._factory = factory
        self._config = factory.config
        self._api = factory.client.api
        self.name = f"codemonkeys-{factory.run_id}-{uuid.uuid4().hex[:10]}"
        self._container: Container | None = None
        self._keepalive = "1"
        self.base_commit: str | None = None

    # --- lifecycle ----------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._factory.executor, functools.partial(fn, *args, **kwargs))

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._submit(fn, *args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"docker call failed for {self.name}: {exc}") from exc

    def _start_blocking(self) -> Container:
        client = self._factory.client
        image = self.env.image or ""
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(f"image {image!r} is not available locally") from exc
        cfg = self._config
        try:
            return client.containers.run(
                image,
                ["sleep", "infinity"],
                name=self.name,
                detach=True,
                init=True,
                network_mode="bridge" if self._factory.network else "none",
                mem_limit=cfg.memory,
                memswap_limit=cfg.memory,
                pids_limit=cfg.pids_limit,
                nano_cpus=int(cfg.cpus * 1e9),
                labels=self._factory.labels(self.env),
                security_opt=["no-new-privileges"],
            )
        except docker.errors.DockerException as exc:
            raise SandboxError(f"cannot start a container from {image!r}: {exc}") from exc

    def _remove_blocking(self) -> None:
        try:
            remove_container(self._factory.client, self.name)
        except docker.errors.DockerException as exc:
            raise SandboxError(f"cannot remove container {self.name}: {exc}") from exc

    async def _remove(self) -> None:
        self._container = None
        await finish_despite_cancel(self._submit(self._remove_blocking))

    async def __aenter__(self) -> Self:
        started = self._submit(self._start_blocking)
        try:
            self._container = await finish_despite_cancel(started)
            children = await self.exec(["cat", "/proc/1/task/1/children"], timeout_s=30)
            self._keepalive = (children.output.split() or ["1"])[0]
            self.base_commit = await patching.head_commit(self)
        except BaseException:
            await self._remove()
            raise
        log.debug("started %s from %s", self.name, self.env.image)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._remove()
        except SandboxError:
            if exc is None:
                raise
            log.exception("while leaving %s after %s", self.name, exc_type)

    def _require(self) -> Container:
        if self._container is None:
            raise SandboxError("sandbox used outside its async with block")
        return self._container

    # --- commands -----------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str],
        *,
        workdir: str = TESTBED,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        return await self._exec(argv, workdir=workdir, env=env, timeout_s=timeout_s, sweep=True)

    async def _exec(
        self,
        argv: Sequence[str],
        *,
        workdir: str,
        env: Mapping[str, str] | None,
        timeout_s: float | None,
        sweep: bool,
    ) -> ExecResult:
        container = self._require()
        argv = [str(arg) for arg in argv]
        if not argv:
            raise ValueError("exec needs a command")
        timeout = timeout_s if timeout_s is not None else self._config.command_timeout_s
        # GNU timeout puts the command in its own process group and kills the
        # whole group; "$@" passes argv through the shell untouched.
        wrapped = [
            "timeout",
            "-s",
            "KILL",
            f"{timeout:.3f}",
            "sh",
            "-c",
            'exec "$@" 2>&1',
            "sh",
            *argv,
        ]
        started = time.monotonic()
        exec_id = (
            await self._call(
                self._api.exec_create,
                container.id,
                wrapped,
                stdout=True,
                stderr=True,
                workdir=workdir,
                environment=[f"{k}={v}" for k, v in {**dict(self.env.exec_env), **(env or {})}.items()],
            )
        )["Id"]
        stream = await self._call(self._api.exec_start, exec_id, stream=True, demux=False)
        sink = HeadTail(self._config.output_limit_bytes)
        reader = self._submit(_drain, stream, sink)
        watchdog = False
        try:
            await asyncio.wait_for(asyncio.shield(reader), timeout + self._factory.watchdog_grace_s)
        except TimeoutError:
            watchdog = True
            log.warning("docker exec in %s hung past its timeout; killing its processes", self.name)
        except asyncio.CancelledError:
            stream.close()
            if sweep:
                await finish_despite_cancel(asyncio.ensure_future(self._sweep()))
            raise
        if watchdog:
            stream.close()
            if sweep:
                await self._sweep()
        await finish_despite_cancel(reader)
        exit_code = await self._exit_code(exec_id)
        if exit_code is None and not watchdog:
            raise SandboxError(
                f"docker exec in {self.name} ended its output but reports no exit code"
            )
        duration = time.monotonic() - started
        timed_out = watchdog or (exit_code == 137 and duration >= timeout)
        output, truncated = sink.render()
        return ExecResult(
            exit_code=None if timed_out else exit_code,
            output=output,
            duration_s=duration,
            timed_out=timed_out,
            truncated=truncated,
        )

    async def _exit_code(self, exec_id: str) -> int | None:
        # The stream can end a moment before the daemon records the exit.
        delay = 0.002
        for _ in range(40):
            info = await self._call(self._api.exec_inspect, exec_id)
            if not info.get("Running"):
                return info.get("ExitCode")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return None

    async def _sweep(self) -> None:
        """Kill everything a command left behind (used when a docker exec hangs)."""
        await self._exec(
            ["sh", "-c", _SWEEP, "sh", self._keepalive],
            workdir="/",
            env=None,
            timeout_s=30,
            sweep=False,
        )

    # --- files --------------------------------------------------------------

    @staticmethod
    def _absolute(path: str) -> str:
        return posixpath.normpath(posixpath.join(TESTBED, path))

    async def write_file(self, path: str, content: str) -> None:
        container = self._require()
        path = self._absolute(path)
        prepared = await self.exec(
            ["sh", "-c", _PREPARE_WRITE, "sh", path], workdir="/", timeout_s=60
        )
        mode = prepared.output.strip().splitlines()[-1:] if prepared.exit_code == 0 else []
        if not mode or not mode[0].isdigit():
            raise SandboxError(f"cannot write {path}: {prepared.output.strip()}")
        data = content.encode("utf-8")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size, info.mode, info.mtime = len(data), int(mode[0], 8), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        ok = await self._call(container.put_archive, posixpath.dirname(path), buffer.getvalue())
        if not ok:
            raise SandboxError(f"docker refused to write {path}")

    async def read_file(self, path: str) -> str:
        container = self._require()
        path = self._absolute(path)
        try:
            chunks, _stat = await self._submit(container.get_archive, path)
            data = await self._submit(b"".join, chunks)
        except docker.errors.NotFound as exc:
            raise SandboxFileNotFoundError(f"no such file in the sandbox: {path}") from exc
        except docker.errors.DockerException as exc:
            raise SandboxError(f"cannot read {path}: {exc}") from exc
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is not None and member.issym():
                resolved = await self.exec(
                    ["readlink", "-f", "--", path], workdir="/", timeout_s=60
                )
                if resolved.exit_code == 0 and resolved.output.strip() != path:
                    return await self.read_file(resolved.output.strip())
            if member is None or not member.isfile():
                raise SandboxError(f"{path} is not a regular file")
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file always has contents
            return handle.read().decode("utf-8", errors="replace")

    # --- the repository -----------------------------------------------------

    async def apply_patch(self, patch: str) -> None:
        await patching.apply_patch(self, patch)

    async def diff(self) -> str:
        return await patching.diff(self, self.base_commit)

    async def reset(self) -> None:
        await patching.reset(self, self.base_commit)
