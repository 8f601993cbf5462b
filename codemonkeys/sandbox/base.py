"""The sandbox seam: where model-written tests and edits run.

Stage code sees only these Protocols. Implementations (Docker, bubblewrap)
live beside this module and are the only code that touches ``docker`` or
``subprocess``. A sandbox has an explicit lifecycle and is always used as an
``async with`` block, so it is cleaned up on errors, Ctrl-C and crashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

# Where the repository lives inside every sandbox, as in the SWE-bench images.
TESTBED = "/testbed"


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What a command did. ``exit_code`` is ``None`` when it was killed by the timeout.

    ``output`` is stdout and stderr interleaved, cut in the middle past the
    configured size (``truncated`` says so), because the start and the end of
    a test run are the parts a model needs.
    """

    exit_code: int | None
    output: str
    duration_s: float
    timed_out: bool = False
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class EnvironmentRef:
    """A ready environment a sandbox can start from.

    ``image`` names a Docker image for the Docker backend; ``root`` is a host
    directory tree for the bubblewrap backend. ``key`` is the content key that
    identifies the environment in caches (same key, same test results).
    ``exec_env`` is what makes every command (tests, patching, grading) run
    inside the repository's environment rather than the image's default one.
    """

    key: str
    image: str | None = None
    root: str | None = None
    python: str = "python"
    # Variables every command in this environment runs with, under the caller's: an official
    # image's activated ``testbed`` conda env (PATH, CONDA_PREFIX...), captured when it is pulled.
    exec_env: tuple[tuple[str, str], ...] = ()


class Sandbox(Protocol):
    """One isolated copy of an instance's environment with the repo at ``/testbed``.

    ``exec`` never raises for a failing command (that is a result); it raises
    :class:`~codemonkeys.errors.SandboxError` when the sandbox itself is broken.
    Model-written code runs without network.
    """

    env: EnvironmentRef

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def exec(
        self,
        argv: Sequence[str],
        *,
        workdir: str = TESTBED,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult: ...

    async def write_file(self, path: str, content: str) -> None: ...

    async def read_file(self, path: str) -> str: ...

    async def apply_patch(self, patch: str) -> None:
        """Apply a unified diff to ``/testbed``: git apply, then --reject, then patch --fuzz.

        Raises :class:`~codemonkeys.errors.EditApplyError` when none applies.
        """
        ...

    async def diff(self) -> str:
        """The working tree of ``/testbed`` against the base commit, new files included."""
        ...

    async def reset(self) -> None:
        """Back to the base commit: tracked files restored, untracked files removed."""
        ...


class SandboxFactory(Protocol):
    """Makes sandboxes for environments; one per backend."""

    def sandbox(self, env: EnvironmentRef) -> Sandbox: ...
