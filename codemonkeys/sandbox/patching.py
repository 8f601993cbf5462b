"""Repository operations every backend shares: apply a patch, diff, reset.

They run *inside* the sandbox through its ``exec``/``write_file``/``read_file``,
so Docker and bubblewrap behave the same and the host never touches model
output with a shell. Scripts get their arguments through ``"$@"`` only.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from ..errors import EditApplyError, SandboxError
from .base import TESTBED, ExecResult

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 300.0
STRATEGIES = ("git apply", "git apply --reject", "patch --fuzz=3")
# One round trip for the whole strategy chain: snapshot the touched files, try
# each tool, put the files back after a tool that may leave a half-applied
# tree, clean up. Arguments: marker, patch file, snapshot file, touched paths.
# Each try prints "<marker> <index> <exit code>" after its output.
_APPLY = """
m="$1"; pf="$2"; snap="$3"; shift 3
tar -cf "$snap" --ignore-failed-read -- "$@" 2>/dev/null || { echo "$m snapshot-failed"; exit 90; }
restore() { for p in "$@"; do rm -rf -- "$p" "$p.rej" "$p.orig"; done; tar -xf "$snap"; }
done_with() { rm -f -- "$pf" "$snap"; echo "$m $1 0"; exit 0; }
git apply -v "$pf" 2>&1 && done_with 0
echo "$m 0 $?"
git apply -v --reject "$pf" 2>&1 && done_with 1
echo "$m 1 $?"
restore "$@"
patch -p1 --fuzz=3 --forward --batch --no-backup-if-mismatch -i "$pf" 2>&1 && done_with 2
echo "$m 2 $?"
restore "$@"
rm -f -- "$pf" "$snap"
exit 1
"""
# Working tree against the base commit, new untracked files included and
# ignored ones left out, via intent-to-add entries in a throwaway index so
# the sandbox's own index is never changed.
_DIFF = (
    'set -e; base="$1"; out="$2"; idx="$(mktemp -u)"; gitdir="$(git rev-parse --absolute-git-dir)"; '
    'if [ -f "$gitdir/index" ]; then cp "$gitdir/index" "$idx"; fi; '
    'GIT_INDEX_FILE="$idx" git add -A -N; '
    'GIT_INDEX_FILE="$idx" git diff --binary --no-color --no-ext-diff "$base" > "$out"; rm -f "$idx"'
)


class Runner(Protocol):
    """The part of a sandbox these operations need."""

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


_HEADER = re.compile(r"^(?:--- |\+\+\+ |diff --git |rename (?:from|to) |copy (?:from|to) )(.*)$")


def _unquote(name: str) -> str:
    """Git's C-style quoting of unusual names (octal escapes are UTF-8 bytes)."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        inner = name[1:-1]
        try:
            return (
                inner.encode("latin-1")
                .decode("unicode_escape")
                .encode("latin-1")
                .decode("utf-8", "replace")
            )
        except UnicodeError:
            return inner
    return name


def _strip_one(name: str) -> str:
    """``-p1``: drop the ``a/``/``b/`` component."""
    return name.split("/", 1)[1] if "/" in name else name


def touched_paths(patch: str) -> list[str]:
    """Every repository path a unified diff names (old and new names), in order.

    Raises :class:`EditApplyError` for a path that leaves the repository or
    touches ``.git``, since such a patch must not reach any tool.
    """
    found: dict[str, None] = {}
    for line in patch.splitlines():
        match = _HEADER.match(line)
        if not match:
            continue
        rest = match.group(1)
        if line.startswith("diff --git "):
            parts = re.match(r'^("(?:[^"\\]|\\.)*"|\S+) ("(?:[^"\\]|\\.)*"|\S+)$', rest)
            names = [_strip_one(_unquote(p)) for p in parts.groups()] if parts else []
        elif line.startswith(("rename ", "copy ")):
            names = [_unquote(rest.strip())]
        else:
            name = _unquote(rest.split("\t", 1)[0].strip())
            if name == "/dev/null":
                continue
            names = [_strip_one(name)]
        for name in names:
            parts_of = name.split("/")
            if not name or name.startswith("/") or ".." in parts_of or parts_of[0] == ".git":
                raise EditApplyError(f"patch touches a path outside the repository: {name!r}")
            found[name] = None
    return list(found)


async def _run(sb: Runner, argv: Sequence[str], what: str) -> ExecResult:
    result = await sb.exec(argv, timeout_s=GIT_TIMEOUT_S)
    if result.timed_out:
        raise SandboxError(f"{what} timed out after {GIT_TIMEOUT_S:.0f} s")
    return result


async def apply_patch(sb: Runner, patch: str) -> str:
    """Apply ``patch`` to /testbed: git apply, then --reject, then patch --fuzz=3.

    Returns the name of the strategy that applied it. An empty patch is a
    no-op. When none applies, the touched files are put back as they were and
    :class:`EditApplyError` carries each tool's output.
    """
    if not patch.strip():
        return "empty"
    if not patch.endswith("\n"):
        patch += "\n"
    paths = touched_paths(patch)
    if not paths:
        raise EditApplyError("patch has no file headers (--- a/... / +++ b/...)")
    tag = uuid.uuid4().hex
    patch_file, snapshot, marker = (
        f"/tmp/codemonkeys-{tag}.patch",
        f"/tmp/codemonkeys-{tag}.tar",
        f"@@codemonkeys-{tag}",
    )
    await sb.write_file(patch_file, patch)
    result = await _run(
        sb, ["sh", "-c", _APPLY, "sh", marker, patch_file, snapshot, *paths], "apply patch"
    )
    outputs: list[str] = []
    chunk: list[str] = []
    tried = 0
    for line in result.output.splitlines():
        if not line.startswith(marker + " "):
            chunk.append(line)
            continue
        fields = line.split()
        if fields[1] == "snapshot-failed":
            raise SandboxError(f"cannot snapshot files before patching: {result.output}")
        index, code = int(fields[1]), fields[2]
        if code == "0" and result.exit_code == 0:
            log.debug("patch applied with %s", STRATEGIES[index])
            return STRATEGIES[index]
        outputs.append(f"--- {STRATEGIES[index]} (exit {code}) ---\n" + "\n".join(chunk).strip())
        chunk, tried = [], tried + 1
    if result.exit_code == 1 and (tried == len(STRATEGIES) or result.truncated):
        raise EditApplyError("patch does not apply:\n" + "\n".join(outputs + chunk))
    raise SandboxError(
        f"applying a patch failed unexpectedly (exit {result.exit_code}): {result.output}"
    )


async def head_commit(sb: Runner) -> str | None:
    """The commit /testbed is at, or ``None`` when /testbed is not a git repository."""
    result = await _run(sb, ["git", "rev-parse", "--verify", "HEAD"], "git rev-parse")
    text = result.output.strip()
    if result.exit_code == 0 and re.fullmatch(r"[0-9a-f]{40,64}", text):
        return text
    return None


def _require(base: str | None) -> str:
    if base is None:
        raise SandboxError(f"{TESTBED} is not a git repository with a commit")
    return base


async def diff(sb: Runner, base: str | None) -> str:
    """/testbed against ``base``: tracked changes and new non-ignored files."""
    out = f"/tmp/codemonkeys-{uuid.uuid4().hex}.diff"
    try:
        result = await _run(sb, ["sh", "-c", _DIFF, "sh", _require(base), out], "git diff")
        if result.exit_code != 0:
            raise SandboxError(f"git diff failed (exit {result.exit_code}): {result.output}")
        return await sb.read_file(out)
    finally:
        await sb.exec(["rm", "-f", out], timeout_s=GIT_TIMEOUT_S)


async def reset(sb: Runner, base: str | None) -> None:
    """Back to ``base``; untracked files go, ignored build artifacts stay."""
    script = 'git reset -q --hard "$1" && git clean -fdq'
    result = await _run(sb, ["sh", "-c", script, "sh", _require(base)], "git reset")
    if result.exit_code != 0:
        raise SandboxError(f"reset to {base} failed (exit {result.exit_code}): {result.output}")
