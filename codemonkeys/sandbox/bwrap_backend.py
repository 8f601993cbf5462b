"""Bubblewrap sandboxes, for machines without Docker.

``EnvironmentRef.root`` is a host directory holding the environment (at
least ``<root>/testbed``, a git repo). Each sandbox copies ``testbed`` into a
private directory for its lifetime and runs every command in a fresh
``bwrap``: new pid/net/ipc/uts namespaces (no network but its own loopback),
the system directories, the environment and its Python bound read-only, the
private copy read-write at /testbed and a private /tmp. Nothing else is
writable. Limits come from ``prlimit`` (address space, processes, CPU time);
a timeout kills bwrap's process group, and with it the pid namespace.

As root, commands run as an unprivileged uid (``setpriv``) without a user
namespace, because the process limit is never enforced for uid 0. Run as a
normal user, bwrap adds a user namespace and commands keep that user's uid.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import posixpath
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self

from ..config import SandboxConfig
from ..errors import SandboxError, SandboxFileNotFoundError
from . import patching
from .aio import finish_despite_cancel
from .base import TESTBED, EnvironmentRef, ExecResult
from .truncate import HeadTail

log = logging.getLogger(__name__)

SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
BASE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Docker-style sizes (``512m``, ``4g``, ``1.5G``, ``1024``) in bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", text.lower())
    if not match:
        raise SandboxError(f"cannot read memory size {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _is_under(path: PurePosixPath, parents: Sequence[PurePosixPath]) -> bool:
    return any(path == parent or parent in path.parents for parent in parents)


def bwrap_available(bwrap: str | None = None) -> str | None:
    """``None`` when bubblewrap runs here, else the reason it does not."""
    binary = bwrap or shutil.which("bwrap")
    if binary is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    import subprocess  # only for this probe; commands go through asyncio

    probe = [
        binary,
        "--unshare-net",
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "true",
    ]
    if os.geteuid() != 0:
        probe.insert(1, "--unshare-user")
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not run: {exc}"
    return None if proc.returncode == 0 else f"bwrap does not run here: {proc.stderr.strip()}"


class BubblewrapSandboxFactory:
    """Makes :class:`BubblewrapSandbox` es; checks once that bwrap works."""

    def __init__(self, config: SandboxConfig, *, bwrap: str | None = None, network: bool = False) -> None:
        reason = bwrap_available(bwrap)
        if reason is not None:
            raise SandboxError(reason)
        self.config = config
        self.network = network  # grading.network only: the host's network, as the harness's containers have one
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"

    def sandbox(self, env: EnvironmentRef) -> BubblewrapSandbox:
        if not env.root:
            raise SandboxError(f"environment {env.key!r} has no root directory for bubblewrap")
        return BubblewrapSandbox(self, env)


class BubblewrapSandbox:
    """A private copy of an environment's testbed; see :class:`~codemonkeys.sandbox.base.Sandbox`."""

    def __init__(self, factory: BubblewrapSandboxFactory, env: EnvironmentRef) -> None:
        self.env = env
        self._config = factory.config
        self._bwrap = factory.bwrap
        self._network = factory.network
        self._root = Path(env.root or "").resolve()
        self._dir: Path | None = None
        self.base_commit: str | None = None
        self._as_root = os.geteuid() == 0

    # --- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Self:
        source = self._root / "testbed"
        if not (source / ".git").exists():
            raise SandboxError(f"{source} is not a git repository")
        work_dir = self._config.work_dir
        self._dir = Path(
            tempfile.mkdtemp(prefix="codemonkeys-bwrap-", dir=str(work_dir) if work_dir else None)
        )
        try:
            (self._dir / "tmp").mkdir(mode=0o1777)
            os.chmod(self._dir / "tmp", 0o1777)
            await self._host(
                ["cp", "-a", "--reflink=auto", "--", str(source), str(self._dir / "testbed")]
            )
            if self._as_root:
                uid = self._config.bwrap_uid
                await self._host(["chown", "-R", f"{uid}:{uid}", "--", str(self._dir / "testbed")])
            self.base_commit = await patching.head_commit(self)
            if self.base_commit is None:
                raise SandboxError(f"cannot read the commit of {source} inside bwrap")
        except BaseException:
            await self._remove()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._remove()

    async def _remove(self) -> None:
        directory, self._dir = self._dir, None
        if directory is not None:
            await finish_despite_cancel(
                asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, directory, True))
            )

    async def _host(self, argv: list[str]) -> None:
        """A host command on our own private directory (copy, chown)."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await proc.communicate()
        except BaseException:
            proc.kill()
            await finish_despite_cancel(asyncio.ensure_future(proc.wait()))
            raise
        if proc.returncode != 0:
            raise SandboxError(f"{argv[0]} failed: {out.decode('utf-8', 'replace')}")

    def _private(self) -> Path:
        if self._dir is None:
            raise SandboxError("sandbox used outside its async with block")
        return self._dir

    # --- the bwrap command line ---------------------------------------------

    def _python_prefixes(self) -> list[PurePosixPath]:
        if not os.path.isabs(self.env.python):
            return []
        python = Path(self.env.python)
        found = []
        for prefix in (python.parent.parent, python.resolve().parent.parent):
            if prefix != Path("/") and prefix.is_dir():
                found.append(PurePosixPath(prefix))
        return found

    def _command(
        self, argv: Sequence[str], workdir: str, env: Mapping[str, str] | None, timeout: float
    ) -> list[str]:
        cfg = self._config
        private = self._private()
        cmd = [self._bwrap, "--die-with-parent", "--new-session"]
        if self._as_root:
            cmd += [
                "--unshare-ipc",
                "--unshare-pid",
                *([] if self._network else ["--unshare-net"]),
                "--unshare-uts",
                "--unshare-cgroup-try",
            ]
        else:
            cmd += ["--unshare-all", *(["--share-net"] if self._network else [])]
        ro: list[PurePosixPath] = []
        for name in SYSTEM_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                cmd += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                cmd += ["--ro-bind", str(host), str(host)]
                ro.append(PurePosixPath(host))
        cmd += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--bind",
            str(private / "tmp"),
            "/tmp",
            "--perms",
            "1777",
            "--tmpfs",
            "/var/tmp",
        ]
        made = {PurePosixPath("/"), PurePosixPath("/tmp"), PurePosixPath("/var")}
        python_bins = []
        for source in [PurePosixPath(self._root), *self._python_prefixes()]:
            if _is_under(source, ro) or (
                source != PurePosixPath(self._root)
                and _is_under(source, [PurePosixPath(self._root)])
            ):
                continue
            for parent in reversed(source.parents):
                if parent not in made:
                    cmd += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            cmd += ["--ro-bind", str(source), str(source)]
            made.add(source)
        for prefix in self._python_prefixes():
            python_bins.append(str(prefix / "bin"))
        cmd += ["--bind", str(private / "testbed"), TESTBED, "--chdir", workdir, "--clearenv"]
        variables = {
            "PATH": ":".join([*dict.fromkeys(python_bins), BASE_PATH]),
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            # The identity the Docker base image sets in /etc/gitconfig.
            "GIT_AUTHOR_NAME": "codemonkeys",
            "GIT_AUTHOR_EMAIL": "codemonkeys@localhost",
            "GIT_COMMITTER_NAME": "codemonkeys",
            "GIT_COMMITTER_EMAIL": "codemonkeys@localhost",
            **dict(self.env.exec_env),
            **(env or {}),
        }
        for key, value in variables.items():
            cmd += ["--setenv", key, value]
        limits = [
            f"--as={parse_size(cfg.memory)}",
            f"--cpu={math.ceil(timeout * max(cfg.cpus, 1.0)) + 1}",
        ]
        if self._as_root:
            limits.append(f"--nproc={cfg.pids_limit}")
            uid = str(cfg.bwrap_uid)
            drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        else:
            drop = []
        return [*cmd, "--", "prlimit", *limits, "--", *drop, *argv]

    # --- commands -----------------------------------------------------------

    async def _spawn(
        self,
        argv: Sequence[str],
        *,
        workdir: str,
        env: Mapping[str, str] | None,
        timeout: float,
        merge: bool,
        stdin: bool = False,
    ) -> asyncio.subprocess.Process:
        argv = [str(arg) for arg in argv]
        if not argv:
            raise ValueError("exec needs a command")
        try:
            return await asyncio.create_subprocess_exec(
                *self._command(argv, workdir, env, timeout),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start bwrap: {exc}") from exc

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        """Kill bwrap's process group; its pid namespace, and every process in it, goes too."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await finish_despite_cancel(asyncio.ensure_future(proc.wait()))

    async def exec(
        self,
        argv: Sequence[str],
        *,
        workdir: str = TESTBED,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        timeout = timeout_s if timeout_s is not None else self._config.command_timeout_s
        started = time.monotonic()
        proc = await self._spawn(argv, workdir=workdir, env=env, timeout=timeout, merge=True)
        assert proc.stdout is not None
        sink = HeadTail(self._config.output_limit_bytes)
        timed_out = False
        try:
            while True:
                remaining = started + timeout - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(proc.stdout.read(1 << 16), remaining)
                if not chunk:
                    break
                sink.feed(chunk)
            await asyncio.wait_for(proc.wait(), max(1.0, started + timeout - time.monotonic()))
        except TimeoutError:
            timed_out = True
            await self._kill(proc)
        except BaseException:
            await self._kill(proc)
            raise
        output, truncated = sink.render()
        return ExecResult(
            exit_code=None if timed_out else proc.returncode,
            output=output,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated=truncated,
        )

    async def _io(self, argv: list[str], data: bytes | None, what: str) -> bytes:
        """Run a file command in the sandbox with stdin/stdout kept apart from stderr."""
        proc = await self._spawn(
            argv,
            workdir="/",
            env=None,
            timeout=self._config.command_timeout_s,
            merge=False,
            stdin=data is not None,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(data), self._config.command_timeout_s
            )
        except TimeoutError as exc:
            await self._kill(proc)
            raise SandboxError(
                f"{what} took longer than {self._config.command_timeout_s} s"
            ) from exc
        except BaseException:
            await self._kill(proc)
            raise
        if proc.returncode != 0:
            message = err.decode("utf-8", "replace").strip()
            if "No such file" in message:
                raise SandboxFileNotFoundError(f"{what}: {message}")
            raise SandboxError(f"{what} failed (exit {proc.returncode}): {message}")
        return out

    @staticmethod
    def _absolute(path: str) -> str:
        return posixpath.normpath(posixpath.join(TESTBED, path))

    async def write_file(self, path: str, content: str) -> None:
        path = self._absolute(path)
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
        await self._io(["sh", "-c", script, "sh", path], content.encode("utf-8"), f"writing {path}")

    async def read_file(self, path: str) -> str:
        path = self._absolute(path)
        data = await self._io(["cat", "--", path], None, f"reading {path}")
        return data.decode("utf-8", errors="replace")

    # --- the repository -----------------------------------------------------

    async def apply_patch(self, patch: str) -> None:
        await patching.apply_patch(self, patch)

    async def diff(self) -> str:
        return await patching.diff(self, self.base_commit)

    async def reset(self) -> None:
        await patching.reset(self, self.base_commit)
