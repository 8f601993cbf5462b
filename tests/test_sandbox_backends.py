"""What every sandbox backend promises, checked on real Docker and real bubblewrap."""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap

import pytest
from sandbox_support import Backend
from sandbox_support import backend as _backend  # noqa: F401
from sandbox_support import bwrap_root as _bwrap_root  # noqa: F401
from sandbox_support import docker_client as _docker_client  # noqa: F401
from sandbox_support import fixture_image as _fixture_image  # noqa: F401

from codemonkeys.config import SandboxConfig
from codemonkeys.errors import EditApplyError, SandboxError, SandboxFileNotFoundError
from codemonkeys.sandbox import patching
from codemonkeys.sandbox.fixture_repo import IGNORED_ARTIFACT, TEST_IDS, calc_patch

CONFIG = SandboxConfig(output_limit_bytes=4000, command_timeout_s=60)

# Lists the processes running `sleep 987` (a duration nothing else uses).
FIND_SLEEPERS = (
    "import os\n"
    "found = []\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
    "    except OSError:\n"
    "        continue\n"
    "    if cmd[:2] == [b'sleep', b'987']:\n"
    "        found.append(pid)\n"
    "print('SLEEPERS', found)\n"
)


def _host_sleepers() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().split(b"\0")
        except OSError:
            continue
        if cmd[:2] == [b"sleep", b"987"]:
            found.append(pid)
    return found


async def test_exit_codes_and_combined_output(backend: Backend) -> None:
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        result = await sb.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert result.exit_code == 3
        assert result.output == "out\nerr\n"
        assert not result.timed_out and not result.truncated
        missing = await sb.exec(["no-such-command-xyz"])
        assert missing.exit_code == 127
        passing = await sb.exec(["python3", "-m", "unittest", TEST_IDS[0]])
        assert passing.exit_code == 0, passing.output
        assert "Ran 1 test" in passing.output


async def test_argv_reaches_the_command_untouched(backend: Backend) -> None:
    tricky = ["a b", "$HOME", "'q'", '"dq"', ";rm -rf /", "`id`", "\\n", "ünï"]
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        result = await sb.exec(["printf", "%s|", *tricky])
        assert result.output == "|".join(tricky) + "|"
        env_and_dir = await sb.exec(
            ["sh", "-c", 'echo "$FOO"; pwd'], env={"FOO": "bar baz"}, workdir="/tmp"
        )
        assert env_and_dir.output == "bar baz\n/tmp\n"


async def test_long_output_is_cut_in_the_middle(backend: Backend) -> None:
    script = "import sys; sys.stdout.write('A' * 50000 + 'B' * 50000)"
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        result = await sb.exec(["python3", "-c", script])
        assert result.exit_code == 0
        assert result.truncated
        assert result.output.startswith("A" * 2000) and result.output.endswith("B" * 2000)
        assert "[... 96000 bytes cut ...]" in result.output


async def test_timeout_kills_the_whole_process_group(backend: Backend) -> None:
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        result = await sb.exec(["sh", "-c", "echo started; sleep 987 & sleep 987"], timeout_s=1)
        assert result.timed_out
        assert result.exit_code is None
        assert "started" in result.output
        # Docker: look inside the container. bwrap: each command has its own pid
        # namespace, so look at the host's processes.
        if backend.name == "docker":
            after = await sb.exec(["python3", "-c", FIND_SLEEPERS])
            assert after.output.strip() == "SLEEPERS []"
        else:
            assert _host_sleepers() == []
        again = await sb.exec(["echo", "still usable"])
        assert again.output == "still usable\n"


async def test_no_network_not_even_the_hosts_loopback(backend: Backend) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the server answers from the host, so a refusal below is the sandbox's doing
    probe = textwrap.dedent(
        f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=3)
            print("CONNECTED")
        except OSError as exc:
            print("BLOCKED", exc)
        names = [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]
        print("INTERFACES", names)
        """
    )
    try:
        async with backend.make(CONFIG).sandbox(backend.env) as sb:
            result = await sb.exec(["python3", "-c", probe])
    finally:
        server.close()
        await server.wait_closed()
    assert "BLOCKED" in result.output and "CONNECTED" not in result.output
    assert "INTERFACES ['lo']" in result.output


async def test_memory_limit_is_enforced(backend: Backend) -> None:
    config = SandboxConfig(memory="256m", command_timeout_s=60)
    script = (
        "b = bytearray(768 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint('ALLOCATED')"
    )
    async with backend.make(config).sandbox(backend.env) as sb:
        result = await sb.exec(["python3", "-c", script])
        small = await sb.exec(
            ["python3", "-c", "b = bytearray(32 * 1024 * 1024); print('SMALL OK')"]
        )
    assert result.exit_code != 0
    assert "ALLOCATED" not in result.output
    assert small.output.strip() == "SMALL OK"


async def test_process_limit_is_enforced(backend: Backend) -> None:
    config = SandboxConfig(pids_limit=40, command_timeout_s=60)
    script = textwrap.dedent(
        """
        import os, time
        pids = []
        try:
            for _ in range(200):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                pids.append(pid)
            print("NO LIMIT", len(pids))
        except OSError as exc:
            print("LIMIT", len(pids), exc.errno)
        for pid in pids:
            os.kill(pid, 9)
        """
    )
    async with backend.make(config).sandbox(backend.env) as sb:
        result = await sb.exec(["python3", "-c", script])
    assert result.output.startswith("LIMIT"), result.output
    assert int(result.output.split()[1]) < 40


async def test_write_and_read_any_content(backend: Backend) -> None:
    big = "".join(f"line {i} ✓ \t\x00\x7f\n" for i in range(120_000))  # > 2 MB
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        await sb.write_file("new/deep/dir/data.txt", big)
        assert await sb.read_file("/testbed/new/deep/dir/data.txt") == big
        await sb.write_file("/tmp/scratch.py", "print('from tmp ✓')\n")
        assert (await sb.exec(["python3", "/tmp/scratch.py"])).output == "from tmp ✓\n"
        await sb.write_file("calc.py", "")
        assert await sb.read_file("calc.py") == ""
        await sb.write_file("run.sh", "#!/bin/sh\necho one\n")
        await sb.exec(["chmod", "+x", "run.sh"])
        await sb.write_file("run.sh", "#!/bin/sh\necho two\n")  # keeps the executable bit
        assert (await sb.exec(["./run.sh"])).output == "two\n"
        with pytest.raises(SandboxFileNotFoundError):
            await sb.read_file("does/not/exist.txt")
        with pytest.raises(SandboxError):
            await sb.read_file("tests")  # a directory


async def test_apply_patch_clean_fuzzy_and_failing(backend: Backend) -> None:
    clean = calc_patch({"add": "a + b + 0"})
    # Same change to sub(), but one context line differs from the file:
    # git apply refuses it, patch --fuzz=3 takes it.
    fuzzy = calc_patch({"sub": "(a - b)"}).replace(" def mul(a, b):", " def mul(x, y):")
    assert fuzzy != calc_patch({"sub": "(a - b)"})
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        assert await patching.apply_patch(sb, clean) == "git apply"
        assert await patching.apply_patch(sb, fuzzy) == "patch --fuzz=3"
        diff = await sb.diff()
        assert "+    return a + b + 0" in diff and "+    return (a - b)" in diff
        await sb.apply_patch("")  # an empty patch changes nothing

        # A two-file patch whose second file does not apply: the first must not stay changed.
        await sb.write_file("README.md", "edited before the patch\n")
        before = await sb.diff()
        readme_hunk = (
            "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-edited before the patch\n+patched\n"
        )
        broken_hunk = calc_patch({"mul": "a * b * 1"}).replace(
            "-    return a * b", "-    return a ** b ** b"
        )
        with pytest.raises(EditApplyError) as caught:
            await sb.apply_patch(readme_hunk + broken_hunk)
        assert "git apply" in str(caught.value) and "patch --fuzz=3" in str(caught.value)
        assert await sb.diff() == before
        assert await sb.read_file("README.md") == "edited before the patch\n"
        leftovers = await sb.exec(["sh", "-c", "find . -name '*.rej' -o -name '*.orig'"])
        assert leftovers.output == ""

        with pytest.raises(EditApplyError):
            await sb.apply_patch(
                "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n"
            )
        with pytest.raises(EditApplyError):
            await sb.apply_patch("this is not a diff\n")


async def test_diff_has_new_files_but_not_ignored_ones(backend: Backend) -> None:
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        assert await sb.diff() == ""
        await sb.write_file("calc.py", (await sb.read_file("calc.py")).replace("a + b", "b + a"))
        await sb.write_file("pkg/new_module.py", "VALUE = 1\n")
        await sb.write_file("build/generated.o", "ignored\n")
        diff = await sb.diff()
        assert "+    return b + a" in diff
        assert "new file mode 100644" in diff and "+++ b/pkg/new_module.py" in diff
        assert "build/" not in diff
        index = await sb.exec(["git", "ls-files", "pkg"])
        assert index.output == ""  # the sandbox's own index is not touched


async def test_reset_restores_the_base_commit_and_keeps_ignored_artifacts(backend: Backend) -> None:
    async with backend.make(CONFIG).sandbox(backend.env) as sb:
        await sb.apply_patch(calc_patch({"add": "a + b + 1"}))
        await sb.write_file("scratch/new.py", "x = 1\n")
        await sb.write_file("build/other.o", "ignored\n")
        committed = await sb.exec(["git", "commit", "-qam", "model commits too"])
        assert committed.exit_code == 0, committed.output
        await sb.reset()
        assert await sb.diff() == ""
        status = await sb.exec(["git", "status", "--porcelain"])
        assert status.output == ""
        with pytest.raises(SandboxFileNotFoundError):
            await sb.read_file("scratch/new.py")
        assert "compiled extension" in await sb.read_file(IGNORED_ARTIFACT)
        assert await sb.read_file("build/other.o") == "ignored\n"
        tests = await sb.exec(["python3", "-m", "unittest", *TEST_IDS])
        assert tests.exit_code == 0, tests.output


async def test_sandboxes_are_isolated_from_each_other(backend: Backend) -> None:
    factory = backend.make(CONFIG)
    async with factory.sandbox(backend.env) as one, factory.sandbox(backend.env) as two:
        await one.write_file("only_in_one.txt", "1\n")
        with pytest.raises(SandboxFileNotFoundError):
            await two.read_file("only_in_one.txt")
        results = await asyncio.gather(
            *(sb.exec(["python3", "-m", "unittest", *TEST_IDS]) for sb in (one, two))
        )
        assert [r.exit_code for r in results] == [0, 0]


async def test_use_outside_the_block_is_an_error(backend: Backend) -> None:
    sandbox = backend.make(CONFIG).sandbox(backend.env)
    with pytest.raises(SandboxError):
        await sandbox.exec(["true"])
    async with sandbox:
        pass
    with pytest.raises(SandboxError):
        await sandbox.exec(["true"])
