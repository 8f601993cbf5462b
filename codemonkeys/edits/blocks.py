"""The SEARCH/REPLACE edit format: the one way a model changes code.

The format, chosen so that it is unambiguous and line based::

    <edit>
    <path>pkg/module.py</path>
    <<<<<<< SEARCH
    exact old lines
    =======
    new lines
    >>>>>>> REPLACE
    </edit>

Rules (the prompt in ``prompts/formats/edits.j2`` states the same):

* One ``<edit>`` holds exactly one ``<path>`` and exactly one SEARCH/REPLACE
  block; an answer may contain any number of ``<edit>`` elements, applied in
  order. Text outside ``<edit>`` elements is ignored (reasoning, fences).
* The tag and marker lines stand alone on their line and start at column 0
  (trailing spaces are tolerated). Everything between the markers is taken
  verbatim, whole lines only.
* A line consisting of exactly one of the three markers can therefore not be
  part of SEARCH or REPLACE text; such a block is rejected as ambiguous.
* Empty SEARCH creates a new file (or fills an existing empty one); empty
  REPLACE deletes the SEARCH lines.

Text is stored with ``\\n`` line ends; applying an edit to a CRLF file keeps the
file's line ends (see :mod:`codemonkeys.edits.apply`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import ParseError

SEARCH_MARKER = "<<<<<<< SEARCH"
DIVIDER_MARKER = "======="
REPLACE_MARKER = ">>>>>>> REPLACE"
MARKERS = (SEARCH_MARKER, DIVIDER_MARKER, REPLACE_MARKER)

_PATH_LINE = re.compile(r"^\s*<path>(?P<path>.*?)</path>\s*$")


def check_relative_path(path: str) -> str:
    """Canonical repository-relative POSIX path, or ``ValueError``.

    Edits and patches must never reach outside the repository, so absolute
    paths, ``..`` components and Windows separators are refused outright.
    """
    path = path.strip()
    if not path:
        raise ValueError("the path is empty")
    if "\x00" in path:
        raise ValueError(f"path {path!r} contains a NUL character")
    if "\\" in path:
        raise ValueError(f"path {path!r} contains a backslash; use forward slashes")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"path {path!r} is absolute; give a path relative to the repository root")
    if ".." in path.split("/"):
        raise ValueError(f"path {path!r} contains '..'; give a path inside the repository")
    if path.endswith("/"):
        raise ValueError(f"path {path!r} names a directory, not a file")
    normal = posixpath.normpath(path)
    if normal in (".", ""):
        raise ValueError(f"path {path!r} does not name a file")
    return normal


class EditBlock(BaseModel):
    """One SEARCH/REPLACE block on one file.

    ``search`` and ``replace`` are whole lines: empty, or ending in ``\\n``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    search: str
    replace: str

    @field_validator("path")
    @classmethod
    def _path_ok(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("search", "replace", mode="before")
    @classmethod
    def _lf_only(cls, value: object) -> object:
        return value.replace("\r\n", "\n") if isinstance(value, str) else value

    @field_validator("search", "replace")
    @classmethod
    def _whole_lines(cls, value: str) -> str:
        if value and not value.endswith("\n"):
            raise ValueError("text must be empty or end with a newline (whole lines only)")
        for line in value.split("\n")[:-1]:
            if line.rstrip() in MARKERS:
                raise ValueError(
                    f"a line {line.rstrip()!r} cannot be part of SEARCH or REPLACE text "
                    "because it is a marker of the edit format"
                )
        return value

    @property
    def creates_file(self) -> bool:
        """An empty SEARCH means: create the file (or fill an empty one)."""
        return self.search == ""


def render_edit(block: EditBlock) -> str:
    """One block in the canonical format, ending with a newline."""
    return (
        f"<edit>\n<path>{block.path}</path>\n{SEARCH_MARKER}\n{block.search}"
        f"{DIVIDER_MARKER}\n{block.replace}{REPLACE_MARKER}\n</edit>\n"
    )


def render_edits(blocks: Sequence[EditBlock]) -> str:
    """Several blocks, separated by a blank line; ``parse_edits`` reads it back."""
    return "\n".join(render_edit(block) for block in blocks)


def _lines(text: str) -> list[str]:
    """Split on ``\\n`` only: form feeds and Unicode separators are content."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _is_marker(line: str, marker: str) -> bool:
    return line.rstrip() == marker


class _BlockReader:
    """A small state machine over the answer's lines; errors name the edit."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def error(self, number: int, start: int, message: str) -> ParseError:
        return ParseError(
            f"edit {number} (the <edit> on line {start + 1} of your answer): {message}. "
            "Each edit must look like:\n"
            + render_edit(
                EditBlock(path="path/to/file.py", search="old line\n", replace="new line\n")
            )
        )

    def skip_blank(self, index: int) -> int:
        while index < len(self.lines) and not self.lines[index].strip():
            index += 1
        return index

    def read(self, start: int, number: int) -> tuple[EditBlock, int]:
        """Read the edit whose ``<edit>`` line is ``start``; return it and the next index."""
        lines = self.lines
        index = self.skip_blank(start + 1)
        match = _PATH_LINE.match(lines[index]) if index < len(lines) else None
        if match is None:
            raise self.error(
                number, start, "the line after <edit> must be <path>relative/path</path>"
            )
        raw_path = match.group("path")
        index = self.skip_blank(index + 1)
        if index >= len(lines) or not _is_marker(lines[index], SEARCH_MARKER):
            raise self.error(
                number, start, f"expected a line {SEARCH_MARKER!r} after the <path> line"
            )
        search, index = self.read_section(index + 1, number, start, DIVIDER_MARKER)
        replace, index = self.read_section(index + 1, number, start, REPLACE_MARKER)
        index = self.skip_blank(index + 1)
        if index < len(lines) and _is_marker(lines[index], SEARCH_MARKER):
            raise self.error(
                number,
                start,
                "an <edit> holds exactly one SEARCH/REPLACE block; close it with </edit> and start a new <edit> for the next block",
            )
        if index >= len(lines) or lines[index].strip() != "</edit>":
            raise self.error(number, start, f"expected </edit> after {REPLACE_MARKER!r}")
        try:
            block = EditBlock(path=raw_path, search=search, replace=replace)
        except ValidationError as exc:
            reason = "; ".join(
                str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()
            )
            raise self.error(number, start, reason) from None
        return block, index + 1

    def read_section(self, index: int, number: int, start: int, end_marker: str) -> tuple[str, int]:
        """Collect verbatim lines up to ``end_marker``; any other marker is an error."""
        collected: list[str] = []
        while index < len(self.lines):
            line = self.lines[index]
            if _is_marker(line, end_marker):
                return "".join(item + "\n" for item in collected), index
            for marker in MARKERS:
                if _is_marker(line, marker):
                    raise self.error(number, start, _misplaced(marker, end_marker))
            collected.append(line)
            index += 1
        raise self.error(number, start, f"the answer ended before the line {end_marker!r}")


def _misplaced(marker: str, expected: str) -> str:
    if marker == DIVIDER_MARKER:
        return (
            f"found a second {DIVIDER_MARKER!r} line; a line of exactly {DIVIDER_MARKER!r} cannot be part of "
            "SEARCH or REPLACE text, so edit a region that does not include it"
        )
    if marker == SEARCH_MARKER:
        return f"found {SEARCH_MARKER!r} before {expected!r}; each SEARCH/REPLACE block needs its own <edit>"
    return f"found {marker!r} before {expected!r}"


def parse_edits(text: str) -> list[EditBlock]:
    """All edit blocks of a model answer, in order.

    An answer without any ``<edit>`` is returned as an empty list: whether that
    is acceptable is the caller's decision. Marker lines outside an ``<edit>``
    raise :class:`ParseError`, since they mean the model forgot the wrapper.
    """
    lines = _lines(text)
    reader = _BlockReader(lines)
    blocks: list[EditBlock] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == "<edit>":
            block, index = reader.read(index, len(blocks) + 1)
            blocks.append(block)
            continue
        if any(_is_marker(line, marker) for marker in MARKERS):
            raise ParseError(
                f"line {index + 1} of your answer, {line.strip()!r}, is outside an <edit>...</edit> element; "
                "wrap every SEARCH/REPLACE block as <edit>, <path>...</path>, the block, </edit>"
            )
        index += 1
    return blocks
