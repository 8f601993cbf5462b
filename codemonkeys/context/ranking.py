"""Ranking the relevant files: the prompt, the answer format, and merging N rankings.

The ranking model sees the issue and every relevant file's summary and token
count, and answers with paths, one per line, inside ``<ranking>...</ranking>``.
The N runs send the same prompt (distinct ``sample`` numbers keep them apart
in the response cache), so the whole prompt is a shared, cacheable prefix.

The ranker chooses the subset worth reading, aimed at ``context.target_tokens``
(the paper's code: 60k) and never above ``budget_tokens``. Merging is pure
and follows the paper's code: a file at index i of a run naming n files ranks
i / n there, a run that leaves it out ranks it 1.0; files are ordered by mean
relative rank, ties broken by the fallback order, and files no run names are
left out. The fallback order (used for ties, and alone when every run fails)
is BM25 similarity of each file's path and summary to the issue, never the
alphabet.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rank_bm25 import BM25Plus  # type: ignore[import-untyped]

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


def mean_relative_ranks(
    rankings: Sequence[Sequence[str]], fallback: Sequence[str]
) -> dict[str, float]:
    """Each named file's mean relative rank (0 = first) over ``rankings``, as the paper's code merges.

    A file at index ``i`` of a run naming ``n`` files ranks ``i / n`` there; a
    run that leaves it out ranks it 1.0. Only files some run names (and that
    are in ``fallback``, the relevant files) get a rank. Without rankings,
    the fallback order itself gives the ranks.
    """
    members = set(fallback)
    runs = [[path for path in dict.fromkeys(ranking) if path in members] for ranking in rankings]
    runs = [run for run in runs if run]
    if not runs:
        n = len(fallback)
        return {path: (index / (n - 1) if n > 1 else 0.0) for index, path in enumerate(fallback)}
    named = {path for run in runs for path in run}
    totals = dict.fromkeys((path for path in fallback if path in named), 0.0)
    for run in runs:
        position = {path: index / len(run) for index, path in enumerate(run)}
        for path in totals:
            totals[path] += position.get(path, 1.0)
    return {path: total / len(runs) for path, total in totals.items()}


def merge_rankings(rankings: Sequence[Sequence[str]], fallback: Sequence[str]) -> list[str]:
    """The files some run names, by mean relative rank; ties (and no rankings: all files) by ``fallback``."""
    means = mean_relative_ranks(rankings, fallback)
    position = {path: index for index, path in enumerate(fallback)}
    return sorted(means, key=lambda path: (round(means[path], 12), position[path]))


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def lexical_terms(text: str) -> list[str]:
    """Lower-case terms of code and prose: ``get_FooBar.py`` -> get, foo, bar, py."""
    return [term.lower() for term in _WORD.findall(text)]


def lexical_order(issue: str, items: Sequence[RankingItem]) -> list[str]:
    """Relevant files by BM25 similarity of path + summary to the issue: the order when no ranking run succeeds.

    Ties go to the smaller file (more of them fit), then to the order given.
    """
    if not items:
        return []
    corpus = [lexical_terms(f"{item.path} {item.summary}") for item in items]
    query = lexical_terms(issue)
    if not query or not any(corpus):
        scores = [0.0] * len(items)
    else:
        scores = [float(x) for x in BM25Plus([doc or [""] for doc in corpus]).get_scores(query)]
    order = sorted(range(len(items)), key=lambda i: (-round(scores[i], 9), items[i].tokens, i))
    return [items[i].path for i in order]


# Tokens one path line of the ranking answer takes (a long repo path is ~20 tokens).
PATH_LINE_TOKENS = 32
# The smallest output limit among the hosted models of configs/context_windows.yaml (gpt-4o: 16,384).
RANKING_OUTPUT_CAP = 16_384


def ranking_output_tokens(base: int, files: int) -> int:
    """The ranking call's output limit: ``base`` for its reasoning plus a line per relevant file."""
    return min(RANKING_OUTPUT_CAP, max(base, base + PATH_LINE_TOKENS * files))


class RankingPrompt(StagePrompt):
    """Builds the ranking requests of one instance."""

    TEMPLATE = "context_ranking.j2"

    def request(
        self,
        problem_statement: str,
        items: Sequence[RankingItem],
        *,
        target: int,
        budget: int,
        sample: int,
    ) -> ChatRequest:
        """Run ``sample`` of the ranking: the same prompt every run, cached after the summaries.

        ``target`` is what the ranker should aim for, ``budget`` the most it may
        use; the output limit grows with the number of files it may list.
        """
        body = self.template.render(
            "body",
            problem_statement=problem_statement.strip(),
            files=[{"path": i.path, "tokens": i.tokens, "summary": i.summary} for i in items],
            target=target,
            budget=budget,
        )
        return ChatRequest(
            messages=(Message("user", body, cache=True),),
            system=self._system,
            system_cache=True,
            max_tokens=ranking_output_tokens(self.max_tokens, len(items)),
            temperature=self.temperature,
            sample=sample,
        )
