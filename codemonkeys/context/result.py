"""What the context stage leaves in the store for one instance, and how later stages read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..store.protocols import ContextStore
from .files import decode
from .gitread import GitObjects

STAGE = "context"
RESULT_KEY = "result"


@dataclass(frozen=True, slots=True)
class PackedFile:
    """A file of the packed context: read its text from git by ``blob``."""

    path: str
    blob: str
    tokens: int


@dataclass(slots=True)
class ContextResult:
    """One instance's context: what was read, judged relevant, ranked and packed.

    ``complete`` is false when some file or ranking run failed for an
    infrastructure reason (a rerun retries those); parse failures are model
    failures, recorded and not retried.
    """

    instance_id: str
    base_commit: str
    relevance_model: str
    ranking_model: str
    relevance_prompt: str
    ranking_prompt: str
    files: int = 0
    file_tokens: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    parse_failures: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    rankings: list[list[str]] = field(default_factory=list)
    ranking_failures: list[str] = field(default_factory=list)
    ranked: list[str] = field(default_factory=list)
    # Relevant files no ranking run named: left out of the context.
    unranked: list[str] = field(default_factory=list)
    # Why the order is not the rankers' (every run failed: lexical order); "" when it is.
    ranking_fallback: str = ""
    mean_ranks: dict[str, float] = field(default_factory=dict)
    included: list[PackedFile] = field(default_factory=list)
    not_fitting: list[str] = field(default_factory=list)
    # The hard cap used: budget_tokens clamped to window_limit_tokens (the editing model's
    # window less its instructions, issue, expected turns and output); None: window unknown.
    budget_tokens: int = 0
    target_tokens: int = 0
    window_limit_tokens: int | None = None
    packed_tokens: int = 0
    complete: bool = True

    @property
    def included_paths(self) -> list[str]:
        return [item.path for item in self.included]

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ContextResult:
        values = dict(data)
        values["included"] = [PackedFile(**item) for item in values.get("included", [])]
        return cls(**values)


def save_result(store: ContextStore, result: ContextResult) -> None:
    store.put_result(result.instance_id, STAGE, RESULT_KEY, result.to_data())


def load_result(store: ContextStore, instance_id: str) -> ContextResult | None:
    """The stored context of ``instance_id``; ``None`` when the stage has not run for it."""
    data = store.get_result(instance_id, STAGE, RESULT_KEY)
    return None if data is None else ContextResult.from_data(data)


def read_packed(result: ContextResult, objects: GitObjects) -> list[tuple[str, str]]:
    """The packed files' ``(path, text)`` in rank order, read from git by blob (no checkout)."""
    contents = objects.read_blobs(item.blob for item in result.included)
    return [(item.path, decode(contents[item.blob])) for item in result.included]
