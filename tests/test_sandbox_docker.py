"""Docker backend: container settings, and no container outlives its block."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import docker
import pytest
from sandbox_support import docker_client as _docker_client  # noqa: F401
from sandbox_support import fixture_image as _fixture_image  # noqa: F401

from codemonkeys.config import SandboxConfig
from codemonkeys.errors import SandboxError
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.sandbox.docker_backend import LABEL, DockerSandboxFactory, cleanup_leaked
from codemonkeys.sandbox.session import current_session

pytestmark = pytest.mark.docker

CONFIG = SandboxConfig(memory="512m", pids_limit=200, cpus=0.5, command_timeout_s=60)


@pytest.fixture
def factory(docker_client: docker.DockerClient):  # type: ignore[no-untyped-def]
    made = DockerSandboxFactory(CONFIG, client=docker_client, run_id=f"test-{uuid.uuid4().hex[:8]}")
    yield made
    made.close()


async def test_only_a_grading_factory_gets_a_network(fixture_image: str, docker_client) -> None:  # type: ignore[no-untyped-def]
    made = DockerSandboxFactory(CONFIG, client=docker_client, run_id=f"test-{uuid.uuid4().hex[:8]}", network=True)
    try:
        async with made.sandbox(EnvironmentRef(key="fixture", image=fixture_image)) as sb:
            assert docker_client.containers.get(sb.name).attrs["HostConfig"]["NetworkMode"] == "bridge"
            interfaces = (await sb.exec(["cat", "/proc/net/dev"])).output
            assert "eth0" in interfaces
    finally:
        made.close()


def _containers_of(client: docker.DockerClient, factory: DockerSandboxFactory) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"{LABEL}.run={factory.run_id}"})
    return [container.name for container in found]


async def test_container_is_locked_down(
    factory: DockerSandboxFactory, fixture_image: str, docker_client
) -> None:  # type: ignore[no-untyped-def]
    async with factory.sandbox(EnvironmentRef(key="fixture", image=fixture_image)) as sb:
        attrs = docker_client.containers.get(sb.name).attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["Init"] is True
        assert host["Memory"] == 512 * 1024 * 1024
        assert host["PidsLimit"] == 200
        assert host["NanoCpus"] == 500_000_000
        assert attrs["Mounts"] == [] and not host.get("Binds")
        labels = attrs["Config"]["Labels"]
        assert labels[LABEL] == "1"
        assert labels[f"{LABEL}.session"] == current_session().id
        assert attrs["Config"]["Cmd"] == ["sleep", "infinity"]
        assert sb.base_commit is not None and len(sb.base_commit) == 40
    assert _containers_of(docker_client, factory) == []


async def test_container_removed_after_an_exception_in_the_block(
    factory: DockerSandboxFactory, fixture_image: str, docker_client
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="crash"):
        async with factory.sandbox(EnvironmentRef(key="fixture", image=fixture_image)) as sb:
            assert _containers_of(docker_client, factory) == [sb.name]
            raise RuntimeError("crash in the block")
    assert _containers_of(docker_client, factory) == []


async def test_container_removed_after_cancellation(
    factory: DockerSandboxFactory, fixture_image: str, docker_client
) -> None:  # type: ignore[no-untyped-def]
    inside = asyncio.Event()

    async def work() -> None:
        async with factory.sandbox(EnvironmentRef(key="fixture", image=fixture_image)) as sb:
            inside.set()
            await sb.exec(["sleep", "300"])

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), 60)
    await asyncio.sleep(0.3)  # let the exec start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _containers_of(docker_client, factory) == []


async def test_cancellation_while_starting_leaks_nothing(
    factory: DockerSandboxFactory, fixture_image: str, docker_client
) -> None:  # type: ignore[no-untyped-def]
    env = EnvironmentRef(key="fixture", image=fixture_image)
    for delay in (0.0, 0.05, 0.2):

        async def enter() -> None:
            async with factory.sandbox(env):
                await asyncio.sleep(300)

        task = asyncio.create_task(enter())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _containers_of(docker_client, factory) == []


async def test_missing_image_is_a_sandbox_error(factory: DockerSandboxFactory) -> None:
    with pytest.raises(SandboxError, match="not available locally"):
        async with factory.sandbox(
            EnvironmentRef(key="x", image="codemonkeys/does-not-exist:never")
        ):
            pass


async def test_watchdog_returns_when_exec_output_never_ends(
    docker_client, fixture_image: str
) -> None:  # type: ignore[no-untyped-def]
    # A process that leaves the command's process group keeps stdout open, so
    # `timeout` alone cannot end the docker exec: the host watchdog must.
    factory = DockerSandboxFactory(CONFIG, client=docker_client, watchdog_grace_s=1.0)
    try:
        async with factory.sandbox(EnvironmentRef(key="fixture", image=fixture_image)) as sb:
            result = await sb.exec(
                ["sh", "-c", "echo started; setsid sleep 987; echo never"], timeout_s=1
            )
            assert result.timed_out and result.exit_code is None
            assert "started" in result.output and "never" not in result.output
            left = await sb.exec(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"])
            assert "sleep 987" not in left.output
    finally:
        factory.close()


def test_cleanup_leaked_removes_containers_of_dead_processes(
    docker_client, fixture_image: str
) -> None:  # type: ignore[no-untyped-def]
    session = current_session()
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid names a dead process
    run = f"test-{uuid.uuid4().hex[:8]}"

    def start(pid: int, start_time: str) -> str:
        labels = {
            LABEL: "1",
            f"{LABEL}.host": session.host,
            f"{LABEL}.pid": str(pid),
            f"{LABEL}.start": start_time,
            f"{LABEL}.session": f"{session.host}:{pid}:{start_time}",
            f"{LABEL}.run": run,
        }
        container = docker_client.containers.run(
            fixture_image,
            ["sleep", "infinity"],
            detach=True,
            init=True,
            network_mode="none",
            labels=labels,
        )
        return container.name

    dead = start(finished.pid, "1")
    reused_pid = start(session.pid, "1")  # our pid, but another process's start time
    alive = start(session.pid, session.start)
    try:
        removed = cleanup_leaked(docker_client)
        assert dead in removed and reused_pid in removed and alive not in removed
        remaining = [
            c.name
            for c in docker_client.containers.list(
                all=True, filters={"label": f"{LABEL}.run={run}"}
            )
        ]
        assert remaining == [alive]
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL}.run={run}"}
        ):
            container.remove(force=True)


def test_ctrl_c_removes_the_container(docker_client, fixture_image: str) -> None:  # type: ignore[no-untyped-def]
    run = f"test-{uuid.uuid4().hex[:8]}"
    script = textwrap.dedent(
        f"""
        import asyncio
        from codemonkeys.config import SandboxConfig
        from codemonkeys.sandbox.base import EnvironmentRef
        from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

        async def main():
            factory = DockerSandboxFactory(SandboxConfig(), run_id={run!r})
            async with factory.sandbox(EnvironmentRef(key="x", image={fixture_image!r})) as sb:
                print("READY", flush=True)
                await sb.exec(["sleep", "300"])

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        labels = {"label": f"{LABEL}.run={run}"}
        assert len(docker_client.containers.list(all=True, filters=labels)) == 1
        time.sleep(0.3)  # let the exec start
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in stderr
    assert docker_client.containers.list(all=True, filters=labels) == []
