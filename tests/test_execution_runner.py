"""The test runner and sources on a real Docker sandbox: how a cell is run, and shared reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sandbox_support import docker_client as _docker_client  # noqa: F401
from sandbox_support import fixture_image as _fixture_image  # noqa: F401

from codemonkeys.config import SandboxConfig
from codemonkeys.execution import SandboxPool, TestRunner
from codemonkeys.execution.runner import INLINE_SCRIPT_BYTES
from codemonkeys.execution.sources import SandboxSources
from codemonkeys.sandbox import fixture_repo
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.store import RunStore

pytestmark = pytest.mark.docker

SCRIPT = "import sys\nimport calc\nprint('add', calc.add(2, 3))\nsys.exit(0 if calc.add(2, 3) == 5 else 2)\n"


class CountingFactory:
    """The Docker factory, counting the resets its sandboxes do."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.resets = 0

    def sandbox(self, env: EnvironmentRef) -> Any:
        owner, sandbox = self, self.inner.sandbox(env)

        class Counting:
            async def __aenter__(self) -> Any:
                await sandbox.__aenter__()
                return self

            async def __aexit__(self, *exc: object) -> None:
                await sandbox.__aexit__(*exc)

            async def reset(self) -> None:
                owner.resets += 1
                await sandbox.reset()

            def __getattr__(self, name: str) -> Any:
                return getattr(sandbox, name)

        return Counting()


@pytest.fixture
def factory(docker_client) -> Any:  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    made = CountingFactory(DockerSandboxFactory(SandboxConfig(), client=docker_client))
    yield made
    made.inner.close()


def env_of(image: str) -> EnvironmentRef:
    return EnvironmentRef(key="fixture", image=image, python="python3")


async def test_small_and_large_scripts_run_alike(tmp_path: Path, factory: CountingFactory, fixture_image: str) -> None:
    broken = fixture_repo.calc_patch({"add": "a - b"})
    large = SCRIPT + "# padding\n" * (INLINE_SCRIPT_BYTES // 10 + 1)  # written as a file, not passed in argv
    assert len(large.encode()) > INLINE_SCRIPT_BYTES
    async with SandboxPool(factory, env_of(fixture_image), size=1) as pool:
        runner = TestRunner(pool, RunStore.open(tmp_path), timeout_s=30)
        results = [await runner.run(patch, script) for script in (SCRIPT, large) for patch in ("", broken)]
        # The test file does not outlive its run: the next cell starts from the base commit.
        async with pool.acquire() as sandbox:
            listing = await sandbox.exec(["git", "status", "--porcelain", "--untracked-files=all"])
    assert [r.exit_code for r in results] == [0, 2, 0, 2]
    assert all("add" in r.output for r in results)
    assert results[1].output == results[3].output and "add -1" in results[1].output
    assert all(r.duration_s > 0 for r in results)
    assert listing.output.strip() == ""
    assert runner.executed == 4


async def test_concurrent_reads_share_one_read_and_skip_the_reset(factory: CountingFactory, fixture_image: str) -> None:
    async with SandboxPool(factory, env_of(fixture_image), size=3) as pool:
        sources = SandboxSources(pool)
        texts = await asyncio.gather(*(sources.read("calc.py") for _ in range(5)))
        missing = await sources.read("no/such.py")
        again = await sources.read("calc.py")
        started = pool.started
    assert texts == [fixture_repo.FILES["calc.py"]] * 5 and again == texts[0]
    assert missing is None
    assert started == 1  # one read in flight at a time per path, one sandbox for all of it
    assert factory.resets == 0
