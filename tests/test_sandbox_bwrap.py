"""Bubblewrap backend: nothing outside the private tree is writable, and nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sandbox_support import bwrap_env
from sandbox_support import bwrap_root as _bwrap_root  # noqa: F401

from codemonkeys.config import SandboxConfig
from codemonkeys.errors import SandboxError
from codemonkeys.sandbox.bwrap_backend import BubblewrapSandboxFactory, parse_size

pytestmark = pytest.mark.bwrap


@pytest.fixture
def config(tmp_path: Path) -> SandboxConfig:
    work = tmp_path / "work"
    work.mkdir()
    return SandboxConfig(command_timeout_s=60, work_dir=work)


def _processes() -> str:
    """The command lines of every process on the host."""
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_nothing_outside_the_private_tree_is_writable(
    bwrap_root: Path, config: SandboxConfig, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before = _tree(bwrap_root)
    targets = [
        str(outside / "f"),
        "/usr/f",
        "/etc/f",
        "/f",
        str(bwrap_root / "testbed" / "f"),
        str(bwrap_root / "f"),
    ]
    async with BubblewrapSandboxFactory(config).sandbox(bwrap_env(bwrap_root)) as sb:
        for target in targets:
            result = await sb.exec(["sh", "-c", 'echo x > "$1"', "sh", target])
            assert result.exit_code != 0, target
        await sb.write_file("calc.py", "changed inside\n")
        inside = await sb.exec(["cat", "calc.py"])
        assert inside.output == "changed inside\n"
        with pytest.raises(SandboxError):
            await sb.write_file("/usr/evil.txt", "x")
    assert list(outside.iterdir()) == []
    assert not Path("/usr/f").exists() and not Path("/f").exists()
    assert _tree(bwrap_root) == before  # the environment itself never changes


async def test_commands_run_unprivileged(bwrap_root: Path, config: SandboxConfig) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops to the sandbox uid")
    async with BubblewrapSandboxFactory(config).sandbox(bwrap_env(bwrap_root)) as sb:
        result = await sb.exec(["sh", "-c", "id -u; grep CapEff /proc/self/status"])
    assert result.output.split()[0] == str(config.bwrap_uid)
    assert result.output.split()[-1] == "0000000000000000"


async def test_only_a_grading_factory_shares_the_network(bwrap_root: Path, config: SandboxConfig) -> None:
    def interfaces(output: str) -> set[str]:
        return {line.split(":")[0].strip() for line in output.splitlines()[2:]}

    async with BubblewrapSandboxFactory(config).sandbox(bwrap_env(bwrap_root)) as sb:
        offline = interfaces((await sb.exec(["cat", "/proc/net/dev"])).output)
    async with BubblewrapSandboxFactory(config, network=True).sandbox(bwrap_env(bwrap_root)) as sb:
        online = interfaces((await sb.exec(["cat", "/proc/net/dev"])).output)
    assert offline == {"lo"}
    assert online == interfaces(Path("/proc/net/dev").read_text()) and online != {"lo"}


async def test_timeout_kills_processes_that_left_the_session(
    bwrap_root: Path, config: SandboxConfig
) -> None:
    async with BubblewrapSandboxFactory(config).sandbox(bwrap_env(bwrap_root)) as sb:
        result = await sb.exec(["sh", "-c", "setsid sleep 986 & sleep 986"], timeout_s=1)
    assert result.timed_out
    assert "sleep 986" not in _processes()


async def test_private_tree_removed_on_exit_exception_and_cancel(
    bwrap_root: Path, config: SandboxConfig
) -> None:
    assert config.work_dir is not None
    factory = BubblewrapSandboxFactory(config)
    async with factory.sandbox(bwrap_env(bwrap_root)):
        assert len(list(config.work_dir.iterdir())) == 1
    assert list(config.work_dir.iterdir()) == []

    with pytest.raises(RuntimeError):
        async with factory.sandbox(bwrap_env(bwrap_root)):
            raise RuntimeError("crash in the block")
    assert list(config.work_dir.iterdir()) == []

    inside = asyncio.Event()

    async def work() -> None:
        async with factory.sandbox(bwrap_env(bwrap_root)) as sb:
            inside.set()
            await sb.exec(["sleep", "985"])

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), 30)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(config.work_dir.iterdir()) == []
    assert "sleep 985" not in _processes()


async def test_environment_without_git_repo_is_refused(
    tmp_path: Path, config: SandboxConfig, bwrap_root: Path
) -> None:
    (tmp_path / "env" / "testbed").mkdir(parents=True)
    with pytest.raises(SandboxError, match="not a git repository"):
        async with BubblewrapSandboxFactory(config).sandbox(bwrap_env(tmp_path / "env")):
            pass


def test_parse_size() -> None:
    assert parse_size("4g") == 4 * 1024**3
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("100") == 100
    assert parse_size("64MiB") == 64 * 1024**2
    with pytest.raises(SandboxError):
        parse_size("lots")


def test_ctrl_c_leaves_no_tree_and_no_process(bwrap_root: Path, config: SandboxConfig) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from codemonkeys.config import SandboxConfig
        from codemonkeys.sandbox.base import EnvironmentRef
        from codemonkeys.sandbox.bwrap_backend import BubblewrapSandboxFactory

        async def main():
            factory = BubblewrapSandboxFactory(SandboxConfig(work_dir=Path({str(config.work_dir)!r})))
            env = EnvironmentRef(key="x", root={str(bwrap_root)!r}, python={bwrap_env(bwrap_root).python!r})
            async with factory.sandbox(env) as sb:
                print("READY", flush=True)
                await sb.exec(["sleep", "984"])

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.3)  # let the command start
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in stderr
    assert config.work_dir is not None and list(config.work_dir.iterdir()) == []
    assert "sleep 984" not in _processes()
