"""Dropping the hunks of a patch that the image's setup commit already made.

SWE-bench images commit their setup on top of the base commit (swebench 4.1's
repo script: pre-install edits such as pinned ``setup.py`` requirements, then
``git commit -am SWE-bench``), so ``git diff BASE HEAD`` in ``/testbed`` is
that setup. Agents that worked in images where the setup was left
uncommitted often carry it in their patch (devlo's astropy-14309 pins
``setuptools==68.0.0`` in ``pyproject.toml``; Gemini's sphinx-7910 repeats the
spec's ``setup.py`` pins). Against our HEAD those hunks conflict and the whole
patch "does not apply", although the official grading resolved it.

:func:`drop_setup_hunks` removes exactly those changes: a change block (a run
of ``-``/``+`` lines between context lines) whose removed and added lines
equal a block of the setup diff in the same file becomes context (its ``+``
lines, which HEAD already has). Hunks left without changes, and files left
without hunks, are dropped. Any other change, even one next to a setup
change, is kept as is. The caller counts what was dropped and reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk, Line

if TYPE_CHECKING:
    from ..sandbox.base import Sandbox

# Who makes the setup commit in SWE-bench images (ours follow the same script).
SETUP_EMAIL = "setup@swebench.config"
Block = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class SetupDrop:
    """The patch without the setup's changes, and what was dropped (``path: block`` descriptions)."""

    patch: str
    dropped: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.dropped)


def _path(patched_file: object) -> str:
    path = str(getattr(patched_file, "path", ""))
    return path[2:] if path.startswith(("a/", "b/")) else path


def _blocks(hunk: Hunk) -> list[tuple[int, int, Block]]:
    """``(start, end, (removed, added))`` of each change block: line indexes into the hunk."""
    blocks: list[tuple[int, int, Block]] = []
    start: int | None = None
    lines = list(hunk)
    for index, line in enumerate([*lines, None]):
        changed = line is not None and (line.is_added or line.is_removed)
        if changed and start is None:
            start = index
        elif not changed and start is not None:
            removed = tuple(l.value for l in lines[start:index] if l.is_removed)
            added = tuple(l.value for l in lines[start:index] if l.is_added)
            blocks.append((start, index, (removed, added)))
            start = None
    return blocks


def setup_blocks(setup_diff: str) -> dict[str, set[Block]]:
    """Each file's change blocks in the setup diff."""
    found: dict[str, set[Block]] = {}
    try:
        files = PatchSet(setup_diff)
    except UnidiffParseError:
        return found
    for patched_file in files:
        for hunk in patched_file:
            found.setdefault(_path(patched_file), set()).update(block for _, _, block in _blocks(hunk))
    return found


def drop_setup_hunks(patch: str, setup_diff: str) -> SetupDrop:
    """``patch`` without the change blocks the setup commit already made (see the module docstring).

    A patch that does not parse, or a setup diff with no changes, is returned unchanged.
    """
    known = setup_blocks(setup_diff)
    if not known or not patch.strip():
        return SetupDrop(patch)
    try:
        files = PatchSet(patch)
    except UnidiffParseError:
        return SetupDrop(patch)
    dropped: list[str] = []
    for patched_file in files:
        blocks_here = known.get(_path(patched_file), set())
        if not blocks_here:
            continue
        kept_hunks = []
        for hunk in patched_file:
            lines = list(hunk)
            removed_lines: set[int] = set()
            for start, end, block in _blocks(hunk):
                if block not in blocks_here:
                    continue
                dropped.append(f"{_path(patched_file)}: -{len(block[0])} +{len(block[1])} lines at @@ -{hunk.source_start}")
                for index in range(start, end):
                    if lines[index].is_removed:
                        removed_lines.add(index)
                    else:
                        lines[index] = Line(lines[index].value, line_type=" ")
            if removed_lines:
                lines = [line for index, line in enumerate(lines) if index not in removed_lines]
            if not any(line.is_added or line.is_removed for line in lines):
                continue
            rebuilt = Hunk(hunk.target_start, sum(1 for l in lines if l.is_context or l.is_removed),
                           hunk.target_start, sum(1 for l in lines if l.is_context or l.is_added), hunk.section_header)
            rebuilt.extend(lines)
            kept_hunks.append(rebuilt)
        patched_file[:] = kept_hunks
    if not dropped:
        return SetupDrop(patch)
    text = "".join(str(patched_file) for patched_file in files if len(patched_file) or patched_file.is_added_file or patched_file.is_removed_file)
    return SetupDrop(text, dropped)


async def setup_commit_diff(sandbox: Sandbox, base_commit: str | None = None) -> str:
    """``git diff BASE HEAD`` in /testbed when HEAD is a SWE-bench setup commit, else ``""``.

    ``BASE`` defaults to HEAD's parent, which is the base commit in every
    SWE-bench image (one setup commit on top of it).
    """
    script = f'[ "$(git log -1 --format=%ae HEAD)" = {SETUP_EMAIL} ] || exit 0; git -c core.fileMode=false diff "$1" HEAD'
    result = await sandbox.exec(["sh", "-c", script, "sh", base_commit or "HEAD~1"], timeout_s=120)
    return result.output if result.exit_code == 0 and not result.truncated else ""


def drop_note(drop: SetupDrop) -> str:
    """The line put before a test's output when setup hunks were dropped from the code it ran on."""
    return f"[codemonkeys] dropped {drop.count} hunk(s) equal to the image's setup commit: {'; '.join(drop.dropped)}\n"
