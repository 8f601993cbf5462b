"""The relevance answer format, its prompt, and re-asking on malformed answers."""

from __future__ import annotations

import pytest

from codemonkeys.context.asking import AnswerUnreadable, ask
from codemonkeys.context.relevance import (
    RelevanceAnswer,
    RelevancePrompt,
    parse_answer,
    render_answer,
)
from codemonkeys.errors import ParseError, ProviderError
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import CallTag, Message
from codemonkeys.store import RunStore

ANSWERS = [
    RelevanceAnswer(False),
    RelevanceAnswer(True, "Defines `parse_date`, which the issue is about."),
    RelevanceAnswer(
        True,
        "Line one.\n\n  - a bullet with <angle> brackets & {braces}\n  - `code()` and unicode: é ü 日本\nlast line",
    ),
    RelevanceAnswer(False, "Only tangentially related:\nit imports the module."),
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_round_trip(answer: RelevanceAnswer) -> None:
    assert parse_answer(render_answer(answer)) == answer


@pytest.mark.parametrize("answer", ANSWERS)
def test_round_trip_with_reasoning_and_noise(answer: RelevanceAnswer) -> None:
    text = (
        "Let me look at the imports first.\nThe function is used by the parser.\n\n"
        + render_answer(answer)
        + "\n"
    )
    assert parse_answer(text) == answer


def test_lenient_on_case_and_spacing() -> None:
    assert parse_answer("<RELEVANT> Yes </RELEVANT><Summary>  s  </Summary>") == RelevanceAnswer(
        True, "s"
    )
    assert parse_answer("<relevant>\nno\n</relevant>") == RelevanceAnswer(False)
    assert parse_answer("<relevant>not   relevant</relevant>") == RelevanceAnswer(False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no <relevant>"),
        ("RELEVANT\nThe file defines parse_date.", "no <relevant>"),
        ("<relevant>yes", "not closed"),
        ("<relevant>maybe</relevant>", "must hold yes or no"),
        ("<relevant>yes</relevant><relevant>no</relevant>", "2 <relevant> tags"),
        ("<relevant>yes</relevant>", "non-empty <summary>"),
        ("<relevant>yes</relevant><summary>   </summary>", "non-empty <summary>"),
        ("<relevant>yes</relevant><summary>cut off by max_tokens", "not closed"),
        ("<relevant>no</relevant><summary>a</summary><summary>b</summary>", "2 <summary> blocks"),
    ],
)
def test_malformed_answers_are_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_answer(text)


def test_request_puts_instructions_then_issue_then_file_with_cache_breakpoints() -> None:
    prompt = RelevancePrompt.load(max_tokens=321, temperature=0.0)
    request = prompt.request("The issue {{ not jinja }}", "pkg/a.py", "x = '{% raw %}'\n\n")
    assert request.system == prompt.system and request.system_cache
    issue, file = request.messages
    assert issue.role == file.role == "user"
    assert issue.cache and not file.cache
    assert "<issue>\nThe issue {{ not jinja }}\n</issue>" in issue.content
    assert "pkg/a.py" not in issue.content
    assert "<file path=\"pkg/a.py\">\nx = '{% raw %}'\n</file>" in file.content
    assert request.max_tokens == 321
    # Two files of one instance share everything up to the file message.
    other = prompt.request("The issue {{ not jinja }}", "pkg/b.py", "y = 2")
    assert other.system == request.system and other.messages[0] == request.messages[0]


def test_prompt_version_follows_the_template_and_what_it_includes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from codemonkeys.prompting import Prompt
    from codemonkeys.resources import resource_dir

    root = tmp_path / "prompts"
    shutil.copytree(resource_dir("prompts"), root)
    relevance = Prompt("context_relevance.j2", root).version
    generation = Prompt("generation.j2", root).version
    assert len(relevance) == 12 and relevance == Prompt("context_relevance.j2").version
    (root / "formats" / "edits.j2").write_text((root / "formats" / "edits.j2").read_text() + " ")
    assert Prompt("context_relevance.j2", root).version == relevance  # it does not include the edit format
    assert Prompt("generation.j2", root).version != generation  # it does
    (root / "context_relevance.j2").write_text((root / "context_relevance.j2").read_text() + " ")
    assert Prompt("context_relevance.j2", root).version != relevance


async def test_malformed_answer_is_reasked_once_with_the_error(run_store: RunStore) -> None:
    model = ScriptedModel(
        ["I think it is relevant.", "<relevant>yes</relevant>\n<summary>\nfixed\n</summary>"]
    )
    gateway = Gateway(model, run_store, PriceTable({}))
    prompt = RelevancePrompt.load(max_tokens=100, temperature=0.0)
    request = prompt.request("issue", "a.py", "x = 1")
    answer = await ask(
        gateway,
        request,
        CallTag("relevance", "i1"),
        parse_answer,
        reasks=1,
        reask_prompt=prompt.reask,
    )
    assert answer.value == RelevanceAnswer(True, "fixed") and answer.attempts == 2
    second = model.calls[1].request
    assert second.messages[:2] == request.messages
    assert second.messages[2] == Message("assistant", "I think it is relevant.")
    assert "no <relevant>yes</relevant>" in second.messages[3].content
    assert len(run_store.calls(stage="relevance")) == 2


async def test_unreadable_after_reasks_carries_every_answer(run_store: RunStore) -> None:
    model = ScriptedModel(["nope", "", "still nope"])
    gateway = Gateway(model, run_store, PriceTable({}))
    prompt = RelevancePrompt.load(max_tokens=100, temperature=0.0)
    with pytest.raises(AnswerUnreadable) as caught:
        await ask(
            gateway,
            prompt.request("i", "a.py", "x"),
            CallTag("relevance"),
            parse_answer,
            reasks=1,
            reask_prompt=prompt.reask,
        )
    assert caught.value.answers == ["nope", ""]
    assert caught.value.usage.output_tokens > 0
    assert model.remaining == 1  # re-asked once, not more
    assert model.calls[1].request.messages[2].content == "nope"


async def test_provider_errors_pass_through_without_reasking(run_store: RunStore) -> None:
    model = ScriptedModel([ProviderError("503 from upstream")])
    gateway = Gateway(model, run_store, PriceTable({}))
    prompt = RelevancePrompt.load(max_tokens=100, temperature=0.0)
    with pytest.raises(ProviderError):
        await ask(
            gateway,
            prompt.request("i", "a.py", "x"),
            CallTag("relevance"),
            parse_answer,
            reasks=3,
            reask_prompt=prompt.reask,
        )
