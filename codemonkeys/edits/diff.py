"""Unified diffs: produce them from file contents, and bring any diff into one canonical form.

The canonical form (``normalize_patch``) is what candidates are deduplicated
and hashed by, so two trajectories that made the same change count as one
candidate with multiplicity two, however the diff text was produced:

* files sorted by path, build and cache artefacts dropped (``STRAY_PATTERNS``);
* per file a ``diff --git a/P b/P`` header, only the semantic extended headers
  (file modes, renames; no ``index`` or ``similarity`` lines), then ``---`` /
  ``+++`` without timestamps and without trailing whitespace;
* hunk headers without the optional section text (it depends on the tool);
* hunk lines verbatim (their whitespace is content); exactly one trailing newline.

An empty patch (no files left) normalizes to ``""``: "no change" is a value,
not an error. Text that is not a diff raises :class:`DataError`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from fnmatch import fnmatchcase

from unidiff.constants import DEV_NULL, LINE_TYPE_EMPTY
from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from ..errors import DataError

# Path components (any depth) and name patterns of files that are never part of a fix.
STRAY_DIRS = (
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".tox",
    ".nox",
    ".eggs",
    ".ipynb_checkpoints",
)
STRAY_TOP_DIRS = ("build", "dist")
STRAY_PATTERNS = (
    "*.pyc",
    "*.pyo",
    "*.pyd",
    "*.so",
    "*.o",
    "*.egg-info",
    ".coverage",
    ".coverage.*",
    ".DS_Store",
)

_KEPT_HEADERS = (
    "old mode ",
    "new mode ",
    "deleted file mode ",
    "new file mode ",
    "rename from ",
    "rename to ",
    "copy from ",
    "copy to ",
)


def is_stray_path(path: str) -> bool:
    """True for build/cache artefacts that a candidate patch should not carry."""
    parts = [part for part in path.strip('"').split("/") if part]
    if len(parts) > 1 and parts[0] in STRAY_TOP_DIRS:
        return True
    return any(
        part in STRAY_DIRS or any(fnmatchcase(part, pattern) for pattern in STRAY_PATTERNS)
        for part in parts
    )


# --- producing diffs ----------------------------------------------------------


def _split(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _range(start: int, length: int) -> str:
    """Git's hunk range: ``start`` alone for one line, ``start-1,0`` for none."""
    if length == 1:
        return str(start + 1)
    if length == 0:
        return f"{start},0"
    return f"{start + 1},{length}"


def _body_line(prefix: str, line: str) -> str:
    if line.endswith("\n"):
        return prefix + line
    return prefix + line + "\n\\ No newline at end of file\n"


def _hunks(old: list[str], new: list[str], context: int) -> str:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    out: list[str] = []
    for group in matcher.get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        out.append(
            f"@@ -{_range(first[1], last[2] - first[1])} +{_range(first[3], last[4] - first[3])} @@\n"
        )
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(_body_line(" ", line) for line in old[i1:i2])
                continue
            out.extend(_body_line("-", line) for line in old[i1:i2])
            out.extend(_body_line("+", line) for line in new[j1:j2])
    return "".join(out)


def make_diff(
    old_files: Mapping[str, str], new_files: Mapping[str, str | None], context: int = 3
) -> str:
    """A git-style unified diff from ``old_files`` to ``new_files``.

    ``new_files`` lists only what changes (as :func:`apply_edits` returns it):
    a path missing there is unchanged, ``None`` deletes the file, a path
    missing from ``old_files`` is a new file. The result applies with
    ``git apply`` and ``patch -p1`` and is already in canonical form.
    """
    chunks: list[str] = []
    for path in sorted(new_files):
        old = old_files.get(path)
        new = new_files[path]
        if old == new or (old is None and new is None):
            continue
        header = f"diff --git a/{path} b/{path}\n"
        if old is None:
            header += "new file mode 100644\n"
            source, target = DEV_NULL, f"b/{path}"
        elif new is None:
            header += "deleted file mode 100644\n"
            source, target = f"a/{path}", DEV_NULL
        else:
            source, target = f"a/{path}", f"b/{path}"
        body = _hunks(_split(old or ""), _split(new or ""), context)
        chunks.append(header + (f"--- {source}\n+++ {target}\n{body}" if body else ""))
    return "".join(chunks)


# --- canonical form -------------------------------------------------------------


_MAX_RESTORED_BLANK_LINES = 3


def _parse(patch: str) -> PatchSet:
    """Parse with unidiff, restoring blank context lines lost to a ``strip()``.

    Published predictions are often stored stripped, which eats the last
    hunk's trailing blank context lines (a context line for an empty line is a
    single space). ``git apply`` rejects such a hunk; we put the lines back,
    which is the only reading under which the hunk header is right.
    """
    if patch and not patch.endswith("\n"):
        patch += "\n"
    for restored in range(_MAX_RESTORED_BLANK_LINES + 1):
        try:
            return PatchSet(patch + " \n" * restored)
        except UnidiffParseError as exc:
            if "shorter than expected" not in str(exc) or restored == _MAX_RESTORED_BLANK_LINES:
                raise DataError(f"not a valid unified diff: {exc}") from None
    raise AssertionError("unreachable")


def _strip_prefix(name: str, prefix: str) -> str:
    """``a/x`` -> ``x``; git's quoted names keep their quotes: ``"a/x y"`` -> ``"x y"``."""
    name = name.rstrip()
    quoted = len(name) > 1 and name.startswith('"') and name.endswith('"')
    inner = name[1:-1] if quoted else name
    if inner == DEV_NULL:
        return inner
    inner = inner.removeprefix(prefix)
    return f'"{inner}"' if quoted else inner


def _file_paths(patched: PatchedFile) -> tuple[str, str]:
    """Source and target path without ``a/``/``b/`` (``/dev/null`` kept)."""
    return _strip_prefix(patched.source_file, "a/"), _strip_prefix(patched.target_file, "b/")


def _real_path(patched: PatchedFile) -> str:
    source, target = _file_paths(patched)
    return source if target == DEV_NULL else target


def _canonical_file(patched: PatchedFile) -> str:
    source, target = _file_paths(patched)
    header_source = target if source == DEV_NULL else source
    header_target = source if target == DEV_NULL else target
    info = [line.rstrip() for line in (patched.patch_info or [])[1:]]
    kept = [line for line in info if line.startswith(_KEPT_HEADERS)]
    out = [
        f"diff --git {_side(header_source, 'a')} {_side(header_target, 'b')}\n",
        *(line + "\n" for line in kept),
    ]
    if patched.is_binary_file:
        out.append(f"Binary files {_side(source, 'a')} and {_side(target, 'b')} differ\n")
        return "".join(out)
    if len(patched) == 0:
        return "".join(out) if kept else ""
    out.append(f"--- {_side(source, 'a')}\n+++ {_side(target, 'b')}\n")
    for hunk in patched:
        out.append(
            f"@@ -{_range(hunk.source_start - (1 if hunk.source_length else 0), hunk.source_length)} "
            f"+{_range(hunk.target_start - (1 if hunk.target_length else 0), hunk.target_length)} @@\n"
        )
        out.extend(str(line) for line in hunk if line.line_type != LINE_TYPE_EMPTY)
    return "".join(out)


def _side(path: str, prefix: str) -> str:
    if path == DEV_NULL:
        return path
    if path.startswith('"'):
        return f'"{prefix}/{path[1:]}'
    return f"{prefix}/{path}"


def _kept_files(patch: str) -> list[PatchedFile]:
    files = [f for f in _parse(patch) if not is_stray_path(_real_path(f))]
    return sorted(files, key=lambda f: (_real_path(f), _file_paths(f)))


def normalize_patch(patch: str) -> str:
    """The canonical text of ``patch`` (see the module docstring)."""
    text = "".join(_canonical_file(f) for f in _kept_files(patch))
    return text.rstrip("\n") + "\n" if text else ""


def patch_hash(patch: str) -> str:
    """sha256 of the canonical form: the identity of a candidate."""
    return hashlib.sha256(normalize_patch(patch).encode("utf-8")).hexdigest()


def files_touched(patch: str) -> tuple[str, ...]:
    """Sorted paths the patch changes, build/cache artefacts excluded."""
    return tuple(sorted({_real_path(f) for f in _kept_files(patch)}))


def changed_lines(patch: str) -> int:
    """Added plus removed lines, artefacts excluded: the size used to break vote ties."""
    return sum(f.added + f.removed for f in _kept_files(patch))
