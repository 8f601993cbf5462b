"""Ranking the relevant files: the prompt, the answer format, and merging N rankings.

The ranking model sees the issue and every relevant file's summary and token
count, and answers with paths, one per line, inside ``<ranking>...</ranking>``.
The N runs send the same prompt (distinct ``sample`` numbers keep them apart
in the response cache), so the whole prompt is a shared, cacheable prefix.

Merging is pure: each ranking is completed with the files it left out (in
the fallback order), every file gets its relative rank (position / (n - 1))
in each ranking, and files are ordered by their mean relative rank, ties
broken by the fallback order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ..errors import ParseError
from ..llm.types import ChatRequest, Message
from .prompts import StagePrompt

log = logging.getLogger(__name__)


_BLOCK = re.compile(r"<ranking>(.*?)</ranking>", re.DOTALL | re.IGNORECASE)
_MARKER = re.compile(r"^(?:[-*+\u2022]|\d+[.):]|#\d+[.):]?)\s+")
_QUOTES = "`'\""


@dataclass(frozen=True, slots=True)
class RankingItem:
    """A relevant file as the ranking model sees it."""

    path: str
    tokens: int
    summary: str


@dataclass(frozen=True, slots=True)
class RankingAnswer:
    """A parsed ranking: known paths in the model's order, and what was ignored."""

    order: tuple[str, ...]
    unknown: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()


def render_ranking(order: Sequence[str]) -> str:
    """A ranking as the model is asked to write it (the inverse of :func:`parse_ranking`)."""
    return "<ranking>\n" + "\n".join(order) + "\n</ranking>"


def _clean(line: str) -> str:
    line = _MARKER.sub("", line.strip()).strip()
    return line.strip(_QUOTES).strip().removeprefix("./")


def parse_ranking(text: str, known: Collection[str]) -> RankingAnswer:
    """Read a ranking of ``known`` paths.

    Unknown paths and repeats are dropped (and reported in the answer);
    paths the ranking leaves out are not an error here: the merge appends
    them. A ranking that names none of the known paths is a :class:`ParseError`.
    """
    blocks = _BLOCK.findall(text)
    if not blocks:
        if re.search(r"<ranking>", text, re.IGNORECASE):
            raise ParseError("the <ranking> block is not closed with </ranking>")
        raise ParseError("no <ranking>...</ranking> block in the answer")
    if len(blocks) > 1:
        raise ParseError(f"{len(blocks)} <ranking> blocks in the answer; give exactly one")
    known_set = set(known)
    order: list[str] = []
    seen: set[str] = set()
    unknown: list[str] = []
    duplicates: list[str] = []
    for raw in blocks[0].splitlines():
        path = _clean(raw)
        if not path:
            continue
        if path not in known_set:
            # "path/to/file.py - why" or "path/to/file.py (1234 tokens)": take the leading path.
            head = _clean(path.split()[0])
            if head in known_set:
                path = head
            else:
                unknown.append(path)
                continue
        if path in seen:
            duplicates.append(path)
            continue
        seen.add(path)
        order.append(path)
    if not order:
        raise ParseError(
            f"the ranking names none of the {len(known_set)} files"
            + (f" (unknown: {', '.join(unknown[:3])})" if unknown else "")
        )
    return RankingAnswer(tuple(order), tuple(unknown), tuple(duplicates))


def complete_ranking(order: Sequence[str], fallback: Sequence[str]) -> list[str]:
    """``order`` restricted to ``fallback``'s paths, then the missing ones in fallback order."""
    members = set(fallback)
    head = [path for path in dict.fromkeys(order) if path in members]
    placed = set(head)
    return head + [path for path in fallback if path not in placed]


def mean_relative_ranks(
    rankings: Sequence[Sequence[str]], fallback: Sequence[str]
) -> dict[str, float]:
    """Each file's mean relative rank (0 = always first, 1 = always last) over ``rankings``."""
    n = len(fallback)
    if not rankings or n == 0:
        return {path: (index / (n - 1) if n > 1 else 0.0) for index, path in enumerate(fallback)}
    totals = dict.fromkeys(fallback, 0.0)
    for ranking in rankings:
        for index, path in enumerate(complete_ranking(ranking, fallback)):
            totals[path] += index / (n - 1) if n > 1 else 0.0
    return {path: total / len(rankings) for path, total in totals.items()}


def merge_rankings(rankings: Sequence[Sequence[str]], fallback: Sequence[str]) -> list[str]:
    """Files ordered by mean relative rank over ``rankings``; ties (and no rankings) by ``fallback``."""
    means = mean_relative_ranks(rankings, fallback)
    position = {path: index for index, path in enumerate(fallback)}
    return sorted(fallback, key=lambda path: (round(means[path], 12), position[path]))


class RankingPrompt(StagePrompt):
    """Builds the ranking requests of one instance."""

    TEMPLATE = "context_ranking.j2"

    def request(
        self, problem_statement: str, items: Sequence[RankingItem], budget: int, sample: int
    ) -> ChatRequest:
        """Run ``sample`` of the ranking: the same prompt every run, cached after the summaries."""
        body = self.template.render(
            "body",
            problem_statement=problem_statement.strip(),
            files=[{"path": i.path, "tokens": i.tokens, "summary": i.summary} for i in items],
            budget=budget,
        )
        return ChatRequest(
            messages=(Message("user", body, cache=True),),
            system=self._system,
            system_cache=True,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            sample=sample,
        )
