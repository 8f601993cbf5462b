"""Applying SEARCH/REPLACE blocks to file contents, as a pure function.

Matching is line based and goes from strict to tolerant, stopping at the first
level that finds anything:

1. exact: the SEARCH lines equal consecutive file lines (line ends ignored, so
   a CRLF file matches LF SEARCH text);
2. trailing whitespace ignored on both sides;
3. indentation shifted: every non-blank line differs only by the same leading
   whitespace prefix (the model indented the snippet more or less than the
   file); the REPLACE lines are shifted by the same prefix.

A level with one match applies it; with several it is an error (a fuzzier
level is never tried, because it could only add matches). Blocks apply in
order, each seeing the result of the previous ones. If any block fails, nothing
is applied and one :class:`EditsNotApplied` lists every failing block with the
closest candidate lines, so the model can fix all of them in its next turn.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import EditApplyError
from .blocks import EditBlock

_CONTEXT_CANDIDATE_LINES = 40


@dataclass(frozen=True, slots=True)
class BlockFailure:
    """Why one block did not apply; ``index`` is 1-based as the model counts."""

    index: int
    path: str
    message: str


class EditsNotApplied(EditApplyError):
    """Some blocks did not apply; none were applied. The message is for the model."""

    def __init__(self, failures: Sequence[BlockFailure], total: int) -> None:
        self.failures = tuple(failures)
        self.total = total
        header = (
            f"{len(self.failures)} of {total} edit block(s) could not be applied, "
            "so none of the edits were applied. Fix the blocks below and send all edits again."
        )
        super().__init__("\n\n".join([header, *(f.message for f in self.failures)]))


@dataclass(frozen=True, slots=True)
class _Match:
    start: int
    end: int
    reindent: Callable[[str], str]


class _NoMatch(Exception):
    """Internal: carries the block-level message up to ``apply_edits``."""


def split_lines(text: str) -> list[str]:
    """Lines with their ends kept, split on ``\\n`` only (form feeds are content)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _body(line: str) -> str:
    """A line without its line end (``\\n`` or ``\\r\\n``)."""
    line = line.removesuffix("\n")
    line = line.removesuffix("\r")
    return line


def _line_end(text: str) -> str:
    """The file's dominant line end, so edits do not mix CRLF and LF."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _identity(line: str) -> str:
    return line


def _shift(file_lines: list[str], search: list[str]) -> Callable[[str], str] | None:
    """The re-indentation that maps ``search`` onto ``file_lines``, if one exists."""
    delta: tuple[str, str] | None = None
    for have, want in zip(file_lines, search, strict=True):
        have, want = have.rstrip(), want.rstrip()
        if not have or not want:
            if have or want:
                return None
            continue
        have_indent, want_indent = _indent(have), _indent(want)
        if have[len(have_indent) :] != want[len(want_indent) :]:
            return None
        if have_indent.endswith(want_indent):
            line_delta = ("add", have_indent[: len(have_indent) - len(want_indent)])
        elif want_indent.endswith(have_indent):
            line_delta = ("remove", want_indent[: len(want_indent) - len(have_indent)])
        else:
            return None
        if delta is None:
            delta = line_delta
        elif delta != line_delta:
            return None
    if delta is None or not delta[1]:
        return None
    mode, prefix = delta

    def reindent(line: str) -> str:
        if not line.strip():
            return line
        if mode == "add":
            return prefix + line
        if not line.startswith(prefix):
            raise _NoMatch(
                f"the REPLACE line {line!r} cannot be dedented by {prefix!r} like the SEARCH lines"
            )
        return line[len(prefix) :]

    return reindent


def _find(bodies: list[str], search: list[str]) -> tuple[str, list[_Match]]:
    """All matches of the first matching level, and the level's description."""
    n = len(search)
    windows = range(len(bodies) - n + 1)
    exact = [_Match(i, i + n, _identity) for i in windows if bodies[i : i + n] == search]
    if exact:
        return "exactly", exact
    stripped_search = [line.rstrip() for line in search]
    stripped = [line.rstrip() for line in bodies]
    loose = [_Match(i, i + n, _identity) for i in windows if stripped[i : i + n] == stripped_search]
    if loose:
        return "when trailing whitespace is ignored", loose
    shifted = []
    for i in windows:
        reindent = _shift(bodies[i : i + n], search)
        if reindent is not None:
            shifted.append(_Match(i, i + n, reindent))
    return "when indentation is ignored", shifted


def _span(start: int, end: int) -> str:
    """1-based, inclusive description of lines ``start:end``."""
    return f"line {end}" if end - start == 1 else f"lines {start + 1}-{end}"


def _numbered(bodies: list[str], start: int, end: int) -> str:
    width = len(str(end))
    return "\n".join(
        f"{number:>{width}} | {bodies[number - 1]}" for number in range(start + 1, end + 1)
    )


def _closest(bodies: list[str], search: list[str]) -> tuple[int, float] | None:
    """Start of the window most similar to ``search`` (difflib ratio), if any."""
    if not bodies:
        return None
    n = min(len(search), len(bodies))
    target = "\n".join(line.strip() for line in search)
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    best: tuple[int, float] | None = None
    stripped = [line.strip() for line in bodies]
    for i in range(len(bodies) - n + 1):
        matcher.set_seq1("\n".join(stripped[i : i + n]))
        floor = best[1] if best else 0.0
        if matcher.real_quick_ratio() <= floor or matcher.quick_ratio() <= floor:
            continue
        ratio = matcher.ratio()
        if ratio > floor:
            best = (i, ratio)
    return best


def _not_found_message(bodies: list[str], search: list[str], path: str) -> str:
    closest = _closest(bodies, search)
    if closest is None:
        return f"the SEARCH text was not found: {path} is empty."
    start, ratio = closest
    end = min(start + len(search), len(bodies))
    shown_end = min(end, start + _CONTEXT_CANDIDATE_LINES)
    diff = "\n".join(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            search,
            bodies[start:end],
            "your SEARCH",
            f"{path} {_span(start, end)}",
            lineterm="",
            n=1,
        )
    )
    return (
        f"the SEARCH text was not found in {path}. The most similar part is {_span(start, end)} "
        f"({ratio:.0%} similar):\n{_numbered(bodies, start, shown_end)}\n"
        f"Differences between your SEARCH text and those lines:\n{diff}\n"
        "Copy the lines exactly as they are in the file (including whitespace) into SEARCH."
    )


def _apply_block(content: str, block: EditBlock) -> str:
    """``content`` with ``block`` applied, or ``_NoMatch`` with a message for the model."""
    lines = split_lines(content)
    bodies = [_body(line) for line in lines]
    search = [_body(line) for line in split_lines(block.search)]
    level, matches = _find(bodies, search)
    if not matches:
        raise _NoMatch(_not_found_message(bodies, search, block.path))
    if len(matches) > 1:
        places = ", ".join(_span(m.start, m.end) for m in matches[:10])
        more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        raise _NoMatch(
            f"the SEARCH text matches {len(matches)} places in {block.path} {level} ({places}{more}). "
            "Add neighbouring lines to SEARCH so that it matches exactly one place."
        )
    match = matches[0]
    eol = _line_end(content)
    new_bodies = [match.reindent(_body(line)) for line in split_lines(block.replace)]
    replacement = [body + eol for body in new_bodies]
    if replacement and match.end == len(lines) and not lines[-1].endswith("\n"):
        replacement[-1] = new_bodies[-1]
    return "".join(lines[: match.start] + replacement + lines[match.end :])


def apply_edits(files: Mapping[str, str], edits: Sequence[EditBlock]) -> dict[str, str]:
    """New contents of every file the edits change (created files included).

    ``files`` maps repository-relative paths to current contents; it is read
    only. Files whose content ends up unchanged (no-op edits) are left out, so
    an empty result means the edits changed nothing. All blocks apply or none:
    on any failure :class:`EditsNotApplied` is raised.
    """
    working: dict[str, str] = {}
    failures: list[BlockFailure] = []
    for index, block in enumerate(edits, start=1):
        prefix = f"Edit block {index} (file {block.path}): "
        current = working.get(block.path, files.get(block.path))
        try:
            working[block.path] = _apply_to(current, block, files)
        except _NoMatch as exc:
            failures.append(BlockFailure(index, block.path, prefix + str(exc)))
    if failures:
        raise EditsNotApplied(failures, len(edits))
    return {path: text for path, text in working.items() if files.get(path) != text}


def _apply_to(current: str | None, block: EditBlock, files: Mapping[str, str]) -> str:
    if current is None:
        if block.creates_file:
            return block.replace
        close = difflib.get_close_matches(block.path, list(files), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise _NoMatch(
            "the file does not exist. To create a new file leave SEARCH empty; "
            f"to change a file use its exact path.{hint}"
        )
    if block.creates_file:
        if current:
            raise _NoMatch(
                "SEARCH is empty, which creates a new file, but the file already exists and is not empty. "
                "To change it, put the existing lines you want to replace into SEARCH."
            )
        return block.replace
    return _apply_block(current, block)
