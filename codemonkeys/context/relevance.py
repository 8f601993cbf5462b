"""Relevance of one file to one issue: the prompt, the answer format and its parser.

The request puts what is shared first: the instructions (system prompt, the
same for every call), then the issue (the same for every file of an instance,
followed by a cache breakpoint), then the file. vLLM/SGLang radix caches and
provider prompt caches then reuse the prefix across an instance's calls.

Answer format::

    <relevant>yes</relevant>
    <summary>
    what matters in the file, over several lines
    </summary>

or ``<relevant>no</relevant>`` (a summary may follow and is kept). Text
before the tags (brief reasoning) is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError
from ..llm.types import ChatRequest, Message
from .prompts import StagePrompt

_RELEVANT = re.compile(r"<relevant>(.*?)</relevant>", re.DOTALL | re.IGNORECASE)
_SUMMARY = re.compile(r"<summary>(.*?)</summary>", re.DOTALL | re.IGNORECASE)
_YES = {"yes", "true", "relevant"}
_NO = {"no", "false", "not relevant"}


@dataclass(frozen=True, slots=True)
class RelevanceAnswer:
    """A parsed relevance answer; ``summary`` is stripped and may be empty only when not relevant."""

    relevant: bool
    summary: str = ""


def render_answer(answer: RelevanceAnswer) -> str:
    """The answer as a model is asked to write it (the inverse of :func:`parse_answer`)."""
    head = f"<relevant>{'yes' if answer.relevant else 'no'}</relevant>"
    if not answer.summary:
        return head
    return f"{head}\n<summary>\n{answer.summary}\n</summary>"


def parse_answer(text: str) -> RelevanceAnswer:
    """Read a relevance answer; :class:`ParseError` says what is wrong with it."""
    verdicts = _RELEVANT.findall(text)
    if not verdicts:
        if re.search(r"<relevant>", text, re.IGNORECASE):
            raise ParseError("the <relevant> tag is not closed with </relevant>")
        raise ParseError("no <relevant>yes</relevant> or <relevant>no</relevant> tag in the answer")
    if len(verdicts) > 1:
        raise ParseError(f"{len(verdicts)} <relevant> tags in the answer; give exactly one")
    verdict = " ".join(verdicts[0].split()).lower()
    if verdict in _YES:
        relevant = True
    elif verdict in _NO:
        relevant = False
    else:
        raise ParseError(f"<relevant> must hold yes or no, not {verdicts[0].strip()[:40]!r}")
    summaries = _SUMMARY.findall(text)
    if len(summaries) > 1:
        raise ParseError(f"{len(summaries)} <summary> blocks in the answer; give at most one")
    if not summaries and re.search(r"<summary>", text, re.IGNORECASE):
        raise ParseError("the <summary> block is not closed with </summary>")
    summary = summaries[0].strip() if summaries else ""
    if relevant and not summary:
        raise ParseError("a relevant file needs a non-empty <summary>...</summary>")
    return RelevanceAnswer(relevant, summary)


class RelevancePrompt(StagePrompt):
    """Builds the relevance requests of one instance."""

    TEMPLATE = "context_relevance.j2"

    def issue_part(self, problem_statement: str) -> str:
        return self.template.render("issue", problem_statement=problem_statement.strip())

    def file_part(self, path: str, content: str) -> str:
        return self.template.render("file", path=path, content=content.rstrip("\n"))

    def request(self, problem_statement: str, path: str, content: str) -> ChatRequest:
        """The request for one file: system, issue (cache breakpoint), file."""
        return ChatRequest(
            messages=(
                Message("user", self.issue_part(problem_statement), cache=True),
                Message("user", self.file_part(path, content)),
            ),
            system=self._system,
            system_cache=True,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
