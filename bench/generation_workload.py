"""The workload of ``bench/generation.py``: issues, packed context, and the fake models.

The loopback server plays both models from the request alone. The testing model
writes a short reproduction test tagged with a random variant (so every
trajectory's test, and with it every draft, is a distinct cell that really runs),
then ``<done/>``. The editing model makes ``turns - 1`` edits that each apply (a
note under calc.py's docstring moved on a step; the last also sets the flag the
test checks, so it passes), then ``<done/>``. It runs in a child process
(``python bench/generation.py --serve``) so its CPU is not the client's.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from codemonkeys.generation.stage import ContextFile
from codemonkeys.sandbox import fixture_repo
from codemonkeys.testing import fake_wire
from codemonkeys.testing.fake_server import FakeLLMServer

CONTEXT_MODULES = ("heapq", "textwrap", "calendar", "fractions", "shlex", "string", "queue", "numbers", "glob")
TESTING_MARK = "Before anybody fixes the GitHub issue"
EDITING_MARK = "Fix the GitHub issue below by editing the repository"
DOCSTRING = '"""Arithmetic for the sandbox tests."""\n'


def issue_text(function: str, index: int) -> str:
    """A distinct issue per instance, about one function of the fixture's calc.py."""
    return (
        f"`calc.{function}(a, b)` gives no way to tell whether the known problem report #{index} "
        f"about it has been dealt with.\n\nDownstream code checks `calc.ISSUE_{function.upper()}_FIXED` "
        f"before relying on `calc.{function}`; the flag is missing, so every caller takes the slow "
        "path. Please add the flag once the behaviour is right, and leave a note in the module.\n"
    )


def context_files(budget_tokens: int) -> list[ContextFile]:
    """calc.py, then standard-library modules as the rest of a packed context, up to the budget."""
    files = [ContextFile("calc.py", fixture_repo.FILES["calc.py"])]
    used = fake_wire.block_tokens(files[0].content)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in CONTEXT_MODULES:
        text = (stdlib / f"{name}.py").read_text()
        tokens = fake_wire.block_tokens(text)
        if used + tokens > budget_tokens:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[: max(1, len(lines) * (budget_tokens - used) // tokens)])
            tokens = fake_wire.block_tokens(text)
        files.append(ContextFile(f"lib/{name}.py", text))
        used += tokens
        if used >= budget_tokens * 0.98:
            break
    return files


def test_answer(function: str, variant: str) -> str:
    return (
        "<test>\n```python\nimport sys\n\nimport calc\n\n"
        f"# reproduction, variant {variant}\n"
        f'print("calc.{function}(2, 3) =", calc.{function}(2, 3))\n'
        f'fixed = getattr(calc, "ISSUE_{function.upper()}_FIXED", False)\n'
        'print("fixed:", fixed)\nsys.exit(0 if fixed else 2)\n```\n</test>\n'
    )


def edit_answer(function: str, variant: str, step: int, last: bool) -> str:
    """Step 1 adds a note under the docstring; later steps move it on; the last sets the flag."""
    note = f"# {function}: variant {variant}, step {{}}\n"
    search = DOCSTRING if step == 1 else note.format(step - 1)
    replace = (DOCSTRING if step == 1 else "") + note.format(step)
    if last:
        replace += f"ISSUE_{function.upper()}_FIXED = True\n"
    return f"Step {step}.\n<edit>\n<path>calc.py</path>\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</edit>\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def make_responder(turns: int) -> Callable[[dict[str, Any]], str]:
    """Both models, decided from the request (runs in the server process)."""

    def responder(body: dict[str, Any]) -> str:
        system = _text(body.get("system") or [])
        messages = body.get("messages", [])
        step = 1 + sum(1 for message in messages if message.get("role") == "assistant")
        issue = system[system.rindex("<issue>") :]
        function = re.search(r"`calc\.(\w+)\(", issue).group(1)  # type: ignore[union-attr]
        if TESTING_MARK in system:
            return test_answer(function, uuid.uuid4().hex[:12]) if step == 1 else "<done/>\n"
        if EDITING_MARK not in system:
            raise ValueError("neither a testing nor an editing request")
        variant = re.search(r"variant ([0-9a-f]{12})", _text(messages[0]["content"])).group(1)  # type: ignore[union-attr]
        if step >= turns:
            return "<done/>\n"
        return edit_answer(function, variant, step, last=step == turns - 1)

    return responder


def serve(args: argparse.Namespace) -> None:
    """The ``--serve`` child: the fake server with the bench's responder until SIGTERM."""
    server = FakeLLMServer(
        make_responder(args.turns), latency_s=args.latency, record=False, min_cache_tokens=args.min_cache_tokens
    )

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@contextlib.contextmanager
def server_process(args: argparse.Namespace, script: str) -> Iterator[str]:
    """Start ``script --serve`` (the bench itself) and yield the server's URL; stopped on exit."""
    command = [
        sys.executable, script, "--serve", "--turns", str(args.turns),
        "--latency", str(args.latency), "--min-cache-tokens", str(args.min_cache_tokens),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise SystemExit(f"the fake server did not start (said {line!r})")
        yield line
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
