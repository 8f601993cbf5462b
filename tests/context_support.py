"""Helpers for the context stage tests: small real git repositories and scripted answers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import git

from codemonkeys.config import ContextConfig
from codemonkeys.context.files import FunctionTokenizer
from codemonkeys.context.ranking import RankingPrompt, render_ranking
from codemonkeys.context.relevance import RelevanceAnswer, RelevancePrompt, render_answer
from codemonkeys.context.stage import ContextStage, ProgressEvent
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import ChatRequest
from codemonkeys.store import RunStore

_ENV = {
    "GIT_AUTHOR_NAME": "fixture",
    "GIT_AUTHOR_EMAIL": "fixture@localhost",
    "GIT_COMMITTER_NAME": "fixture",
    "GIT_COMMITTER_EMAIL": "fixture@localhost",
    "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
}

# A little library: the issue will be about parsing dates.
LIBRARY: dict[str, str | bytes] = {
    "pkg/__init__.py": '"""A small package."""\n',
    "pkg/dates.py": "import re\n\n\ndef parse_date(text):\n    y, m, d = text.split('-')\n    return int(y), int(m), int(d)\n",
    "pkg/formats.py": "from .dates import parse_date\n\nFORMATS = ['%Y-%m-%d']\n\n\ndef iso(text):\n    return parse_date(text)\n",
    "pkg/util.py": "def clamp(x, lo, hi):\n    return max(lo, min(hi, x))\n",
    "pkg/huge.py": "DATA = [\n" + "    'x y z w',\n" * 400 + "]\n",
    "pkg/blob.py": b"\x00\x01binary\x00",
    "pkg/tests/test_dates.py": "from pkg.dates import parse_date\n\n\ndef test_parse():\n    assert parse_date('2020-01-02') == (2020, 1, 2)\n",
    "pkg/test/helpers.py": "def make_date():\n    return '2020-01-01'\n",
    "tests/test_formats.py": "def test_iso():\n    pass\n",
    "docs/conf.py": "project = 'pkg'\n",
    "README.md": "# pkg\n",
}
ISSUE = "parse_date crashes on dates with a time part, e.g. '2020-01-02T10:00'."


def commit_files(
    repo_dir: Path, files: Mapping[str, str | bytes | None], message: str = "change"
) -> str:
    """Write (or delete, for ``None``) files in ``repo_dir`` (created if needed) and commit; returns the sha."""
    if not (repo_dir / ".git").exists():
        repo_dir.mkdir(parents=True, exist_ok=True)
        git.Repo.init(repo_dir, initial_branch="main")
    repo = git.Repo(repo_dir)
    for path, content in files.items():
        target = repo_dir / path
        if content is None:
            repo.index.remove([path], working_tree=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        repo.index.add([path])
    with repo.git.custom_environment(**_ENV):
        repo.git.commit("-q", "--allow-empty", "-m", message)
    sha = repo.head.commit.hexsha
    repo.close()
    return sha


def make_repo(path: Path, files: Mapping[str, str | bytes] = LIBRARY) -> str:
    return commit_files(path, dict(files), "initial")


def counting_tokenizer(name: str = "words") -> tuple[FunctionTokenizer, list[str]]:
    """A deterministic tokenizer (one token per whitespace-separated word) that logs what it counts."""
    seen: list[str] = []

    def count(text: str) -> int:
        seen.append(text)
        return len(text.split())

    return FunctionTokenizer(name, count, threads=1), seen


def file_path(request: ChatRequest) -> str:
    """The path of the file a relevance request asks about."""
    for message in request.messages:
        found = re.search(r'<file path="([^"]+)">', message.content)
        if found:
            return found.group(1)
    raise AssertionError("not a relevance request")


def ranked_paths(request: ChatRequest) -> list[str]:
    """The paths a ranking request lists, in the order given."""
    return re.findall(r'<file path="([^"]+)" tokens=', request.messages[0].content)


def relevance_by_path(relevant: Mapping[str, str]) -> Callable[[ChatRequest], str]:
    """A relevance responder: files in ``relevant`` (path -> summary) are relevant, others not."""

    def reply(request: ChatRequest) -> str:
        path = file_path(request)
        if path in relevant:
            return "Thinking: it matters.\n" + render_answer(RelevanceAnswer(True, relevant[path]))
        return render_answer(RelevanceAnswer(False))

    return reply


def ranking_in_order(order: list[str]) -> Callable[[ChatRequest], str]:
    """A ranking responder that puts ``order`` first, then the rest as given."""

    def reply(request: ChatRequest) -> str:
        given = ranked_paths(request)
        return render_ranking(
            [p for p in order if p in given] + [p for p in given if p not in order]
        )

    return reply


class Models:
    """A GatewaySource of two scripted models behind real gateways (ledger and response cache)."""

    def __init__(self, store: RunStore, relevance: ScriptedModel, ranking: ScriptedModel) -> None:
        prices = PriceTable({})
        self.relevance = relevance
        self.ranking = ranking
        self._gateways = {
            "relevance": Gateway(relevance, store, prices),
            "ranking": Gateway(ranking, store, prices),
        }

    def gateway(self, stage: str, instance_id: str | None = None) -> Gateway:
        return self._gateways[stage]


def make_stage(
    store: RunStore, models: Models, events: list[ProgressEvent] | None = None, **config: object
) -> ContextStage:
    tokenizer, _ = counting_tokenizer()
    return ContextStage(
        config=ContextConfig(max_file_tokens=1000, **config),  # type: ignore[arg-type]
        models=models,
        store=store,
        relevance_prompt=RelevancePrompt.load(max_tokens=200, temperature=0.0),
        ranking_prompt=RankingPrompt.load(max_tokens=200, temperature=0.0),
        tokenizer=tokenizer,
        pack_tokenizer=counting_tokenizer("pack-words")[0],
        progress=events.append if events is not None else None,
    )
