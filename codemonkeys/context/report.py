"""Context recall: did the packed context hold every file the gold patch edits?

For each instance with a gold patch and a stored context result, the gold
patch's edited files (files it modifies or deletes; new files cannot be in
any context) are traced through the stage: were they read at all (the
filter), judged relevant, and packed. Recall is the fraction of instances
whose edited files are all packed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from ..errors import DataError
from ..store.protocols import ContextStore
from .result import load_result


def edited_files(patch: str) -> list[str]:
    """Paths of pre-existing files a unified diff changes or removes."""
    try:
        patch_set = PatchSet(patch)
    except UnidiffParseError as exc:
        raise DataError(f"gold patch is not a unified diff: {exc}") from exc
    return sorted({pf.path for pf in patch_set if not pf.is_added_file})


@dataclass(frozen=True, slots=True)
class RecallRow:
    instance_id: str
    gold: tuple[str, ...]
    read: tuple[str, ...]
    relevant: tuple[str, ...]
    packed: tuple[str, ...]
    complete: bool
    fallback: str = ""  # why the order is not the rankers' ("" when it is)

    @property
    def hit(self) -> bool:
        return set(self.gold) <= set(self.packed)


@dataclass(frozen=True, slots=True)
class RecallReport:
    rows: tuple[RecallRow, ...]
    missing: tuple[str, ...]  # instances with a gold patch but no context result

    def _share(self, attribute: str) -> float:
        if not self.rows:
            return 0.0
        return sum(set(r.gold) <= set(getattr(r, attribute)) for r in self.rows) / len(self.rows)

    @property
    def recall(self) -> float:
        """Fraction of instances whose edited files are all in the packed context."""
        return self._share("packed")

    @property
    def relevance_recall(self) -> float:
        """Fraction whose edited files were all judged relevant."""
        return self._share("relevant")

    @property
    def read_recall(self) -> float:
        """Fraction whose edited files were all read (passed the file filter)."""
        return self._share("read")


def context_recall(store: ContextStore, gold: Iterable[tuple[str, str]]) -> RecallReport:
    """Recall over ``(instance_id, gold_patch)`` pairs; empty patches are left out."""
    rows: list[RecallRow] = []
    missing: list[str] = []
    for instance_id, patch in gold:
        if not patch.strip():
            continue
        result = load_result(store, instance_id)
        if result is None:
            missing.append(instance_id)
            continue
        files = edited_files(patch)
        read = {
            d.path
            for d in store.context_decisions(
                instance_id, result.relevance_model, result.relevance_prompt
            )
        }
        relevant = set(result.relevant)
        packed = set(result.included_paths)
        rows.append(
            RecallRow(
                instance_id=instance_id,
                gold=tuple(files),
                read=tuple(f for f in files if f in read),
                relevant=tuple(f for f in files if f in relevant),
                packed=tuple(f for f in files if f in packed),
                complete=result.complete,
                fallback=result.ranking_fallback,
            )
        )
    return RecallReport(tuple(rows), tuple(missing))
