"""Reading a commit's tree and blobs straight from a git object database (no checkout).

The backend of the context stage's file enumeration: one ``git ls-tree`` per
commit and one persistent ``git cat-file --batch`` process (kept by
GitPython) for the blobs. Works on bare mirrors, including ones without a
``config`` file, because ``GIT_DIR`` is set explicitly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import git

from ..errors import RepoError

# Modes of entries that are real files (not symlinks 120000, not submodules 160000).
_FILE_MODES = ("100644", "100755")


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """A file of a commit: its path, git blob sha (the content hash) and size in bytes.

    ``size`` is ``None`` when the object store lacks the blob (a mirror that
    left out its largest files): it is listed but cannot be read.
    """

    path: str
    blob: str
    size: int | None


class GitObjects:
    """Read-only access to one repository's objects; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise RepoError(f"repository {path} does not exist")
        try:
            git_dir = git.Git(str(path)).rev_parse("--absolute-git-dir").strip()
        except git.GitCommandError as exc:
            raise RepoError(f"{path} is not a git repository: {exc.stderr.strip() or exc}") from exc
        self.git_dir = Path(git_dir)
        self._git = git.Git(git_dir)
        self._git.update_environment(GIT_DIR=git_dir)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the persistent cat-file process."""
        with self._lock:
            self._git.clear_cache()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, commit: str) -> str:
        """The full sha of ``commit``; :class:`RepoError` if the repository lacks it."""
        try:
            with self._lock:
                return self._git.rev_parse("--verify", "--quiet", f"{commit}^{{commit}}").strip()
        except git.GitCommandError as exc:
            raise RepoError(f"commit {commit} is not in {self.git_dir}") from exc

    def list_files(self, commit: str) -> list[TreeEntry]:
        """Every regular file of ``commit``'s tree, sorted by path."""
        sha = self.resolve(commit)
        try:
            with self._lock:
                out = self._git.ls_tree(
                    "-r", "-l", "-z", "--full-tree", sha, strip_newline_in_stdout=False
                )
        except git.GitCommandError as exc:
            raise RepoError(
                f"cannot list the tree of {commit} in {self.git_dir}: {exc.stderr.strip() or exc}"
            ) from exc
        entries = []
        for record in out.split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, kind, blob, size = meta.split()
            if kind == "blob" and mode in _FILE_MODES:
                entries.append(TreeEntry(path, blob, int(size) if size.isdigit() else None))
        entries.sort(key=lambda entry: entry.path)
        return entries

    def read_blob(self, blob: str) -> bytes:
        """The raw content of a blob."""
        try:
            with self._lock:
                _sha, kind, _size, data = self._git.get_object_data(blob)
        except (git.GitCommandError, ValueError) as exc:
            raise RepoError(f"cannot read blob {blob} from {self.git_dir}: {exc}") from exc
        if kind not in (b"blob", "blob"):
            raise RepoError(f"object {blob} in {self.git_dir} is a {kind!r}, not a blob")
        return data

    def read_blobs(self, blobs: Iterable[str]) -> dict[str, bytes]:
        """Contents of several blobs (duplicates read once)."""
        return {blob: self.read_blob(blob) for blob in dict.fromkeys(blobs)}
