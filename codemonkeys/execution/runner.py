"""Running one reproduction test on one patch, cached so no cell runs twice.

Every run of a model-written test, in generation and in selection, goes
through :class:`TestRunner`. A cell is keyed by (environment key, patch hash,
test hash, attempt): the same test on the same code in the same environment
gives the same exit code, so reruns, re-selections and ablations read it from
the store instead of executing it again.

A cell's ``duration_s`` is the time it held its sandbox: applying the patch,
writing and running the test, and the reset that hands the sandbox back -- what
the run cost the pool, not only the test's own run time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
import uuid
from typing import Protocol

from ..edits import patch_hash
from ..env.setup_hunks import drop_note, drop_setup_hunks, setup_commit_diff
from ..errors import EditApplyError, SandboxError
from ..sandbox.base import TESTBED, Sandbox
from ..store.records import TestExecution
from .pool import SandboxPool

# At the repository root, so ``sys.path[0]`` is the repo as for a script run from there;
# the name does not match pytest's test-file patterns.
TEST_FILE = f"{TESTBED}/codemonkeys_repro.py"
ORIGINAL = "original"
# Sandboxes are reused: bytecode written by one run could outlive a reset and be
# taken as fresh for a same-sized edit saved within the same second.
_RUN_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
# A script up to this size travels inside the command that runs it: one round trip
# to the sandbox instead of three (``write_file`` is an exec plus an upload). Larger
# ones, and ones with NUL characters, which argv cannot carry, are written first.
INLINE_SCRIPT_BYTES = 64 * 1024
_WRITE_FAILED = 199
# Arguments: script, test file, python, a marker printed when the file cannot be written.
_WRITE_AND_RUN = f'printf "%s" "$1" > "$2" || {{ echo "$4"; exit {_WRITE_FAILED}; }}; exec "$3" "$2"'


class ExecutionCache(Protocol):
    """The part of the store the runner uses."""

    def get_execution(self, env_key: str, patch_hash: str, test_hash: str, attempt: int = 0) -> TestExecution | None: ...

    def put_execution(self, execution: TestExecution) -> None: ...


def test_hash(script: str) -> str:
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def patch_key(patch: str) -> str:
    """Cache key of the code a test runs on: the normalized patch, or ``original``."""
    return patch_hash(patch) if patch.strip() else ORIGINAL


class TestRunner:
    """Runs test scripts on patches of one environment, through a sandbox pool and a cache."""

    __test__ = False  # not a pytest class

    def __init__(self, pool: SandboxPool, cache: ExecutionCache, *, timeout_s: float) -> None:
        self._pool = pool
        self._cache = cache
        self._timeout_s = timeout_s
        self._inflight: dict[tuple[str, str, int], asyncio.Future[TestExecution]] = {}
        self.executed = 0
        self._setup: str | None = None

    @property
    def env_key(self) -> str:
        return self._pool.env.key

    def cached(self, patch: str, script: str, attempt: int = 0) -> TestExecution | None:
        return self._cache.get_execution(self.env_key, patch_key(patch), test_hash(script), attempt)

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution:
        """Exit code and output of ``script`` on the base commit with ``patch`` applied.

        A patch that does not apply is a result (exit code ``None``, the reason
        in the output), cached like any other: the candidate is broken, not the
        machinery.
        """
        hit = self.cached(patch, script, attempt)
        if hit is not None:
            return hit
        # The same cell asked for twice at once (two trajectories, same test) runs once.
        key = (patch_key(patch), test_hash(script), attempt)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._execute(patch, script, attempt))
        self._inflight[key] = task
        task.add_done_callback(functools.partial(self._settled, key))
        return await asyncio.shield(task)

    def _settled(self, key: tuple[str, str, int], task: asyncio.Future[TestExecution]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            # Retrieved here: when every asker was cancelled (Ctrl-C), nobody awaits the
            # shielded task and its failure would be logged as "never retrieved".
            task.exception()

    async def _execute(self, patch: str, script: str, attempt: int) -> TestExecution:
        async with self._pool.acquire() as sandbox:
            start = time.perf_counter()
            exit_code, output, timed_out = await self._run_cell(sandbox, patch, script)
        execution = TestExecution(
            self.env_key, patch_key(patch), test_hash(script), attempt,
            exit_code=exit_code, output=output,
            duration_s=time.perf_counter() - start,  # the reset on release included
            timed_out=timed_out,
        )
        self.executed += 1
        self._cache.put_execution(execution)
        return execution

    async def _run_cell(self, sandbox: Sandbox, patch: str, script: str) -> tuple[int | None, str, bool]:
        """Exit code, output and timeout flag of ``script`` on ``patch`` in a sandbox at the base commit."""
        note = ""
        if patch.strip():
            # Candidates made where the image's setup was uncommitted (other systems' patches in an
            # ensemble) carry it; those hunks would conflict with our setup commit. Said in the output.
            drop = drop_setup_hunks(patch, await self._setup_diff(sandbox))
            if drop.count:
                patch, note = drop.patch, drop_note(drop)
        try:
            if patch.strip():
                await sandbox.apply_patch(patch)
        except EditApplyError as exc:
            return None, f"{note}the patch does not apply: {exc}", False
        python = self._pool.env.python
        if len(script.encode("utf-8", errors="replace")) <= INLINE_SCRIPT_BYTES and "\0" not in script:
            marker = f"@@codemonkeys-write-failed-{uuid.uuid4().hex}"
            argv = ["sh", "-c", _WRITE_AND_RUN, "sh", script, TEST_FILE, python, marker]
            result = await sandbox.exec(argv, workdir=TESTBED, env=_RUN_ENV, timeout_s=self._timeout_s)
            if result.exit_code == _WRITE_FAILED and marker in result.output:
                raise SandboxError(f"cannot write {TEST_FILE}: {result.output.replace(marker, '').strip()}")
        else:
            await sandbox.write_file(TEST_FILE, script)
            result = await sandbox.exec([python, TEST_FILE], workdir=TESTBED, env=_RUN_ENV, timeout_s=self._timeout_s)
        return result.exit_code, note + result.output if note else result.output, result.timed_out

    async def _setup_diff(self, sandbox: Sandbox) -> str:
        """The environment's setup commit diff, read once per runner (every sandbox has the same)."""
        if self._setup is None:
            self._setup = await setup_commit_diff(sandbox)
        return self._setup
