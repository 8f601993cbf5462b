"""Which files of a commit the context stage reads, and how many tokens each has.

The filter is pure (paths in, yes/no out). Enumeration lists the commit's
tree, filters it, and counts tokens of each file; counts are cached by git
blob sha, so a file unchanged across instances of a repo is tokenized once.
Files over the token limit, and binary files, are skipped and recorded.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ..config import ContextConfig
from ..store.protocols import TokenCountCache
from .gitread import GitObjects

log = logging.getLogger(__name__)

# Token count recorded for a blob that is not text (holds NUL bytes).
BINARY = -1
TOO_LARGE = "too_large"
NOT_TEXT = "binary"
MISSING = "missing"  # listed in the tree, absent from the object store


_TEST_MODULE = re.compile(r"^(?:test_.*|.*_tests?|tests|conftest)\.py$")


def is_test_module(name: str) -> bool:
    """A file name pytest or unittest would collect (or a pytest conftest)."""
    return bool(_TEST_MODULE.match(name))


@dataclass(frozen=True, slots=True)
class FileFilter:
    """Decides which files of a listing are candidates (pure: paths in, paths out).

    A test directory is one named in ``test_dir_names``, at any depth; with
    ``keep_library_test_dirs`` such a directory that holds no test module
    directly (``django/test``, ``sphinx/testing``) is library code and stays.
    """

    extensions: tuple[str, ...] = (".py",)
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()
    test_dir_names: frozenset[str] = frozenset({"tests", "test", "testing"})
    keep_library_test_dirs: bool = True

    @classmethod
    def from_config(cls, config: ContextConfig) -> FileFilter:
        return cls(
            extensions=tuple(config.extensions),
            include_globs=tuple(config.include_globs),
            exclude_globs=tuple(config.exclude_globs),
            test_dir_names=frozenset(config.test_dir_names)
            if config.exclude_test_dirs
            else frozenset(),
            keep_library_test_dirs=config.keep_library_test_dirs,
        )

    def test_dirs(self, paths: Iterable[str]) -> set[str]:
        """The test directories of a listing (every file of the tree, not only candidates)."""
        named: dict[str, bool] = {}
        for path in paths:
            directory, _, name = path.rpartition("/")
            parts = directory.split("/") if directory else []
            for depth, part in enumerate(parts):
                if part in self.test_dir_names:
                    prefix = "/".join(parts[: depth + 1])
                    holds_test = depth == len(parts) - 1 and is_test_module(name)
                    named[prefix] = named.get(prefix, False) or holds_test
        if not self.keep_library_test_dirs:
            return set(named)
        return {directory for directory, holds_tests in named.items() if holds_tests}

    def accepts(self, path: str, test_dirs: Collection[str]) -> bool:
        if self.extensions and not path.endswith(self.extensions):
            return False
        if self.include_globs and not any(
            fnmatch.fnmatchcase(path, glob) for glob in self.include_globs
        ):
            return False
        if any(fnmatch.fnmatchcase(path, glob) for glob in self.exclude_globs):
            return False
        parts = path.split("/")[:-1]
        return not any("/".join(parts[: depth + 1]) in test_dirs for depth in range(len(parts)))

    def select(self, paths: Sequence[str]) -> list[str]:
        """The candidate paths of a listing, in listing order."""
        test_dirs = self.test_dirs(paths)
        return [path for path in paths if self.accepts(path, test_dirs)]


class Tokenizer(Protocol):
    """Counts tokens of many texts at once; ``name`` keys the count cache."""

    @property
    def name(self) -> str: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class FunctionTokenizer:
    """A tokenizer from a ``count(text)`` function, run on a few threads.

    tiktoken releases the GIL while encoding, so threads use every core.
    """

    def __init__(self, name: str, count: Callable[[str], int], *, threads: int = 2) -> None:
        self._name = name
        self._count = count
        self._threads = threads

    @property
    def name(self) -> str:
        return self._name

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if self._threads <= 1 or len(texts) < 2:
            return [self._count(text) for text in texts]
        with ThreadPoolExecutor(self._threads) as pool:
            return list(pool.map(self._count, texts, chunksize=16))


def model_tokenizer(model: str) -> FunctionTokenizer:
    """The project's token counter for ``model`` (offline cl100k, scaled per provider)."""
    from ..llm.tokens import token_counter

    return FunctionTokenizer(f"count_tokens:{model}", token_counter(model))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file the relevance model will read."""

    path: str
    blob: str
    tokens: int


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file that passed the filter but is not read: too many tokens, not text, or missing."""

    path: str
    blob: str
    reason: str
    tokens: int | None = None


@dataclass(slots=True)
class Enumeration:
    """The outcome of enumerating one commit."""

    commit: str
    listed: int
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    tokenized: int = 0  # blobs tokenized now (the rest came from the cache)


def decode(data: bytes) -> str:
    """File text as the model sees it (undecodable bytes replaced, not dropped)."""
    return data.decode("utf-8", errors="replace")


class MemoryTokenCache:
    """A :class:`TokenCountCache` in a dict, for benches and one-off estimates."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def token_counts(self, tokenizer: str, blobs: Sequence[str]) -> dict[str, int]:
        return {
            blob: self._counts[(tokenizer, blob)]
            for blob in blobs
            if (tokenizer, blob) in self._counts
        }

    def put_token_counts(self, tokenizer: str, counts: Mapping[str, int]) -> None:
        self._counts.update(((tokenizer, blob), tokens) for blob, tokens in counts.items())


def count_blob_tokens(
    objects: GitObjects, blobs: Sequence[str], tokenizer: Tokenizer, cache: TokenCountCache
) -> tuple[dict[str, int], int]:
    """Token counts of blobs (``BINARY`` for non-text), reading and tokenizing only cache misses.

    Returns the counts and how many blobs were tokenized now.
    """
    unique = list(dict.fromkeys(blobs))
    counts = cache.token_counts(tokenizer.name, unique)
    missing = [blob for blob in unique if blob not in counts]
    if missing:
        contents = objects.read_blobs(missing)
        fresh: dict[str, int] = {}
        texts: list[str] = []
        text_blobs: list[str] = []
        for blob in missing:
            data = contents[blob]
            if b"\0" in data:
                fresh[blob] = BINARY
            else:
                texts.append(decode(data))
                text_blobs.append(blob)
        fresh.update(zip(text_blobs, tokenizer.count_many(texts), strict=True))
        cache.put_token_counts(tokenizer.name, fresh)
        counts.update(fresh)
    return counts, len(missing)


def enumerate_files(
    objects: GitObjects,
    commit: str,
    file_filter: FileFilter,
    tokenizer: Tokenizer,
    cache: TokenCountCache,
    *,
    max_file_tokens: int,
) -> Enumeration:
    """List, filter and token-count the files of ``commit``."""
    entries = objects.list_files(commit)
    selected = set(file_filter.select([entry.path for entry in entries]))
    chosen = [entry for entry in entries if entry.path in selected and entry.size is not None]
    counts, tokenized = count_blob_tokens(
        objects, [entry.blob for entry in chosen], tokenizer, cache
    )
    result = Enumeration(commit=commit, listed=len(entries), tokenized=tokenized)
    result.skipped.extend(
        SkippedFile(entry.path, entry.blob, MISSING)
        for entry in entries
        if entry.path in selected and entry.size is None
    )
    for entry in chosen:
        tokens = counts[entry.blob]
        if tokens == BINARY:
            result.skipped.append(SkippedFile(entry.path, entry.blob, NOT_TEXT))
        elif tokens > max_file_tokens:
            result.skipped.append(SkippedFile(entry.path, entry.blob, TOO_LARGE, tokens))
        else:
            result.candidates.append(Candidate(entry.path, entry.blob, tokens))
    if result.skipped:
        log.info(
            "%s: skipped %d file(s): %s",
            commit[:12],
            len(result.skipped),
            [s.path for s in result.skipped][:10],
        )
    return result
