"""The agent loop and its testing and editing configurations, with scripted models and no sandbox.

Each test names the rule it holds; deleting that rule from the loop, from a
configuration or from a parser makes it fail (see docs/paper-comparison.md).
"""

from __future__ import annotations

import pytest
from agent_support import SOURCE, JudgingRunner, answer_test, deps, edit_answer, fresh_editing, gateway, fresh_testing

from codemonkeys.errors import BudgetExceeded, ContextLimitReached, ProviderError, TurnLimitReached
from codemonkeys.generation.stage import ContextFile, GenerationInputs, generate
from codemonkeys.generation.stage import testing_trajectory as guarded_testing
from codemonkeys.generation.state import load
from codemonkeys.generation.trajectory import run_editing, run_testing
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.tokens import count_tokens
from codemonkeys.llm.types import CallTag, ChatRequest, ChatResponse
from codemonkeys.store import RunStore

WRONG = edit_answer("    return width * width\n", "    return width + height\n")
RIGHT_AFTER_WRONG = edit_answer("    return width + height\n", "    return width * height\n")
RIGHT = edit_answer("    return width * width\n", "    return width * height\n")


def last_user(model: ScriptedModel, call: int) -> str:
    return model.calls[call].request.messages[-1].content


# --- the loop ---------------------------------------------------------------------------------


async def test_an_unreadable_answer_is_reasked_with_the_parsers_message(run_store: RunStore) -> None:
    model = ScriptedModel(["It is about area.", answer_test(), "<done/>"])
    state = await run_testing(deps(run_store, gateway(model, run_store)), fresh_testing())
    assert state.status == "done" and state.parse_errors == 1
    assert "could not be read" in last_user(model, 1)
    assert "neither a <test> element nor <done/>" in last_user(model, 1)


async def test_the_turn_limit_is_checked_before_a_call(run_store: RunStore) -> None:
    model = ScriptedModel(lambda request: "prose, again")
    with pytest.raises(TurnLimitReached):
        await run_testing(deps(run_store, gateway(model, run_store), testing_max_turns=3), fresh_testing())
    assert len(model.calls) == 3


class SavedBeforeEveryCall:
    """A chat service that checks, before answering, that the store holds the conversation being sent."""

    def __init__(self, inner: object, store: RunStore) -> None:
        self.inner, self.store, self.checked = inner, store, 0

    @property
    def name(self) -> str:
        return self.inner.name  # type: ignore[attr-defined, no-any-return]

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse:
        record = self.store.trajectory(tag.trajectory or "")
        assert record is not None, "nothing was saved before the call"
        saved = load(self.store, "i1", record.kind, record.index)
        assert saved is not None
        assert [(t.role, t.content) for t in saved.messages] == [(m.role, m.content) for m in request.messages]
        assert len(self.store.turns(tag.trajectory or "")) >= saved.calls
        self.checked += 1
        return await self.inner.complete(request, tag)  # type: ignore[attr-defined, no-any-return]


async def test_every_turn_is_saved_before_the_next_call(run_store: RunStore) -> None:
    model = ScriptedModel(["unreadable", answer_test("a"), answer_test("b"), "<done/>"])
    chat = SavedBeforeEveryCall(gateway(model, run_store), run_store)
    state = await run_testing(deps(run_store, chat), fresh_testing())  # type: ignore[arg-type]
    assert state.status == "done" and chat.checked == 4
    assert [t.turn for t in run_store.turns(state.trajectory_id)] == [0, 1, 2, 3, 4]


class Killed(BaseException):
    """Stands in for kill -9: nothing after it runs, not even the trajectory boundary."""


class KillAfter:
    """Answers ``calls`` requests through the gateway (so they are cached), then dies mid-turn."""

    def __init__(self, inner: object, calls: int) -> None:
        self.inner, self.left = inner, calls

    @property
    def name(self) -> str:
        return self.inner.name  # type: ignore[attr-defined, no-any-return]

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse:
        response = await self.inner.complete(request, tag)  # type: ignore[attr-defined]
        self.left -= 1
        if self.left < 0:
            raise Killed  # the answer is in the response cache, the turn is not saved
        return response  # type: ignore[no-any-return]


async def test_resume_replays_the_conversation_so_the_cache_answers_the_call_in_flight(run_store: RunStore) -> None:
    first = ScriptedModel([WRONG, RIGHT_AFTER_WRONG, "<done/>"], name="scripted:x")
    with pytest.raises(Killed):
        await run_editing(deps(run_store, KillAfter(gateway(first, run_store), 1)), fresh_editing(answer_test()))  # type: ignore[arg-type]
    assert len(first.calls) == 2
    saved = load(run_store, "i1", "editing", 0)
    assert saved is not None and saved.calls == 1
    # The resumed trajectory sends the killed request again, byte for byte: the cache answers it.
    second = ScriptedModel(["<done/>"], name="scripted:x")
    state = await run_editing(deps(run_store, gateway(second, run_store)), saved)
    assert state.status == "done" and fixed_patch(state)
    assert len(second.calls) == 1  # only the last call is new
    assert second.calls[0].request.messages[-2].content == RIGHT_AFTER_WRONG


def fixed_patch(state) -> bool:  # type: ignore[no-untyped-def]
    from codemonkeys.generation.trajectory import draft_diff

    return "+    return width * height" in draft_diff(state)


async def test_a_finished_trajectory_is_not_run_again(run_store: RunStore) -> None:
    state = await run_testing(deps(run_store, gateway(ScriptedModel([answer_test(), "<done/>"]), run_store)), fresh_testing())
    silent = ScriptedModel([])
    again = await run_testing(deps(run_store, gateway(silent, run_store)), state)
    assert again.status == "done" and silent.calls == []




async def _first_prompt_tokens(store: RunStore, files: dict[str, str]) -> int:
    probe = ScriptedModel([ProviderError("probe")], name="scripted:x")
    with pytest.raises(ProviderError):
        await run_editing(deps(store, gateway(probe, store), files=files), fresh_editing(answer_test(), index=9))
    request = probe.calls[0].request
    return count_tokens(request.system or "", "scripted:x") + count_tokens(
        "\n".join(m.content for m in request.messages), "scripted:x"
    )


BIG = SOURCE + "".join(f"\n\ndef helper_{i}(value):\n    return value + {i}\n" for i in range(150))


@pytest.mark.parametrize("window", ["fits", None])
async def test_the_context_window_ends_the_trajectory_before_the_call_and_keeps_the_edit(
    run_store: RunStore, window: str | None
) -> None:
    files = {"shapes.py": BIG}
    first = await _first_prompt_tokens(run_store, files)
    # Room for the first call, not for the second (whose prompt adds the edited file's full text).
    limit = None if window is None else first + 256 + 200
    model = ScriptedModel([WRONG, RIGHT_AFTER_WRONG, "<done/>"])
    state = await run_editing(deps(run_store, gateway(model, run_store), files=files, window=limit), fresh_editing(answer_test()))
    if window is None:  # no window known: no check
        assert state.status == "done" and len(model.calls) == 3
        return
    assert len(model.calls) == 1  # the second call was never sent
    assert state.status == "context_limit" and state.failure_kind == "model"
    assert state.failure is not None and "context window" in state.failure
    assert "width + height" in (state.draft.get("shapes.py") or "")  # the last edit is kept
    assert state.test is not None
    record = run_store.trajectory(state.trajectory_id)
    assert record is not None and record.status == "context_limit"


async def test_the_window_has_room_for_the_prompt_and_max_tokens(run_store: RunStore) -> None:
    files = {"shapes.py": BIG}
    first = await _first_prompt_tokens(run_store, files)
    for index, (window, calls) in enumerate(((first + 256 - 1, 0), (first + 256, 1))):
        model = ScriptedModel([ContextLimitReached("the provider's own 400")])
        d = deps(run_store, gateway(model, run_store), files=files, window=window, max_tokens=256)
        state = await run_editing(d, fresh_editing(answer_test(), index=index + 1))
        assert state.status == "context_limit" and len(model.calls) == calls


async def test_the_providers_context_error_ends_it_the_same_way(run_store: RunStore) -> None:
    too_long = ContextLimitReached("400: prompt is too long", prompt_tokens=9000, window=8192)
    model = ScriptedModel([RIGHT, too_long])
    state = await run_editing(deps(run_store, gateway(model, run_store)), fresh_editing(answer_test()))
    assert state.status == "context_limit" and state.failure_kind == "model"
    assert fixed_patch(state)


# --- generation through the stage: the endings keep their candidates --------------------------------


async def _generate(store: RunStore, testing: ScriptedModel, editing: ScriptedModel, **config: object):  # type: ignore[no-untyped-def]
    runner = JudgingRunner()
    t = deps(store, gateway(testing, store), runner, **config)  # type: ignore[arg-type]
    e = deps(store, gateway(editing, store), runner, **config)  # type: ignore[arg-type]
    inputs = GenerationInputs("i1", "area is wrong", [ContextFile("shapes.py", SOURCE)])
    return await generate(t, e, store, inputs, 1)


async def test_a_context_limited_editing_trajectory_still_yields_its_candidate(run_store: RunStore) -> None:
    testing = ScriptedModel([answer_test(), "<done/>"], name="scripted:t")
    editing = ScriptedModel([RIGHT, ContextLimitReached("400: context length exceeded")], name="scripted:e")
    result = await _generate(run_store, testing, editing)
    assert [c.status for c in result.candidates] == ["context_limit"]
    assert "+    return width * height" in result.candidates[0].patch
    # A model-side outcome: a rerun does not retry it.
    again = await _generate(run_store, ScriptedModel([], name="scripted:t"), ScriptedModel([], name="scripted:e"))
    assert [c.patch for c in again.candidates] == [c.patch for c in result.candidates]


async def test_a_testing_trajectory_that_hits_the_window_without_a_test_is_a_failure(run_store: RunStore) -> None:
    testing = ScriptedModel([ContextLimitReached("400: context length exceeded")], name="scripted:t")
    result = await _generate(run_store, testing, ScriptedModel([], name="scripted:e"))
    assert result.candidates == []
    assert "ContextLimitReached" in result.failures["i1/testing/0"]


# --- testing ------------------------------------------------------------------------------------


async def test_testing_without_a_test_at_the_turn_limit_fails_as_the_models(run_store: RunStore) -> None:
    model = ScriptedModel(lambda request: "I am not sure what to test.")
    d = deps(run_store, gateway(model, run_store), testing_max_turns=2)
    state = await guarded_testing(d, "i1", "issue", 0)
    assert (state.status, state.failure_kind) == ("failed", "model")
    assert state.failure is not None and "no reproduction test after 2 calls" in state.failure
    # Model failures stand on a rerun.
    calls = len(run_store.calls(trajectory=state.trajectory_id))
    again = await guarded_testing(deps(run_store, gateway(ScriptedModel([]), run_store)), "i1", "issue", 0)
    assert (again.status, again.failure_kind) == ("failed", "model") and again.failure == state.failure
    assert len(run_store.calls(trajectory=state.trajectory_id)) == calls  # nothing was asked


async def test_testing_with_a_test_at_the_turn_limit_keeps_the_last_test(run_store: RunStore) -> None:
    model = ScriptedModel([answer_test("a"), answer_test("b")])
    state = await run_testing(deps(run_store, gateway(model, run_store), testing_max_turns=2), fresh_testing())
    assert state.status == "limit" and state.test is not None and "# b" in state.test


async def test_done_before_any_test_is_reasked(run_store: RunStore) -> None:
    model = ScriptedModel(["<done/>", answer_test(), "<done/>"])
    runner = JudgingRunner()
    state = await run_testing(deps(run_store, gateway(model, run_store), runner), fresh_testing())
    assert state.status == "done" and state.test is not None and len(model.calls) == 3
    assert "there is no test yet" in last_user(model, 1)
    assert [patch for patch, _ in runner.runs] == [""]  # the test ran on the original code only
    assert "Exit code: 2" in last_user(model, 2)


async def test_testing_prompts_ask_to_think_first_print_and_stay_on_the_issue(run_store: RunStore) -> None:
    from codemonkeys.prompting import Prompt

    system = Prompt("generation.j2").render("testing_system", issue="x")
    assert "think the problem through" in system
    assert "Print what the script observes" in system
    assert "Exercise only the behaviour the issue describes" in system


# --- editing ------------------------------------------------------------------------------------


async def test_done_with_edits_is_reasked_and_the_edits_are_not_applied(run_store: RunStore) -> None:
    model = ScriptedModel([WRONG + "\n<done/>\n", RIGHT, "<done/>"])
    state = await run_editing(deps(run_store, gateway(model, run_store)), fresh_editing(answer_test()))
    assert state.status == "done" and state.parse_errors == 1
    assert "<done/> must be alone" in last_user(model, 1)
    assert "width + height" not in (state.draft.get("shapes.py") or "")


async def test_edits_accumulate_and_the_model_sees_the_current_text_of_each_changed_file(run_store: RunStore) -> None:
    model = ScriptedModel([WRONG, RIGHT_AFTER_WRONG, "<done/>"])
    runner = JudgingRunner()
    state = await run_editing(deps(run_store, gateway(model, run_store), runner), fresh_editing(answer_test()))
    assert state.status == "done" and fixed_patch(state)
    after_wrong = last_user(model, 1)
    assert "On the edited code the test exits with 2" in after_wrong
    assert '<file path="shapes.py">\n' + SOURCE.replace("width * width", "width + height") in after_wrong
    assert "test may be wrong" in after_wrong
    after_right = last_user(model, 2)
    assert "    return width * height\n" in after_right and "On the edited code the test exits with 0" in after_right
    # Each turn ran the test on the original code and on the draft.
    assert [fixed(p) for p, _ in runner.runs] == [False, False, False, False, True]


def fixed(patch: str) -> bool:
    return "+    return width * height" in patch


async def test_edits_that_do_not_apply_leave_the_draft_and_say_why(run_store: RunStore) -> None:
    model = ScriptedModel([RIGHT_AFTER_WRONG, RIGHT, "<done/>"])
    state = await run_editing(deps(run_store, gateway(model, run_store)), fresh_editing(answer_test()))
    assert "Your edits were not applied" in last_user(model, 1)
    assert state.status == "done" and fixed_patch(state)


async def test_a_replaced_test_is_the_one_that_runs(run_store: RunStore) -> None:
    model = ScriptedModel([RIGHT + answer_test("second"), "<done/>"])
    runner = JudgingRunner()
    state = await run_editing(deps(run_store, gateway(model, run_store), runner), fresh_editing(answer_test("first")))
    assert state.test is not None and "# second" in state.test and state.test_changed
    assert "# second" in runner.runs[-1][1] and "# second" in runner.runs[-2][1]
    assert "now the one you wrote last" in last_user(model, 1)


async def test_editing_at_the_turn_limit_keeps_the_draft(run_store: RunStore) -> None:
    model = ScriptedModel([RIGHT, RIGHT_AFTER_WRONG])  # the second never applies
    state = await run_editing(deps(run_store, gateway(model, run_store), max_iterations=2), fresh_editing(answer_test()))
    assert state.status == "limit" and fixed_patch(state) and len(model.calls) == 2


async def test_editing_prompt_says_the_test_can_be_wrong() -> None:
    from codemonkeys.prompting import Prompt

    system = Prompt("generation.j2").render("editing_system", issue="x", files=[])
    assert "may be wrong itself" in system and "not treat it as an oracle" in system


# --- the trajectory boundary: what a rerun retries ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [(ProviderError("overloaded after retries"), "infra"), (BudgetExceeded("the instance budget is spent"), "budget")],
)
async def test_infra_and_budget_failures_are_recorded_by_kind_and_retried_by_a_rerun(
    run_store: RunStore, error: Exception, kind: str
) -> None:
    broken = ScriptedModel([answer_test(), error])
    state = await guarded_testing(deps(run_store, gateway(broken, run_store)), "i1", "issue", 0)
    assert (state.status, state.failure_kind) == ("failed", kind) and state.test is not None
    # The rerun reopens it and resumes from the saved turn: only the failed call is made again.
    model = ScriptedModel(["<done/>"])
    again = await guarded_testing(deps(run_store, gateway(model, run_store)), "i1", "issue", 0)
    assert again.status == "done" and again.failure_kind is None and len(model.calls) == 1


async def test_a_long_changed_file_is_shown_as_its_changed_regions(run_store: RunStore) -> None:
    files = {"shapes.py": BIG}
    model = ScriptedModel([WRONG, RIGHT_AFTER_WRONG, "<done/>"])
    d = deps(run_store, gateway(model, run_store), files=files, changed_file_limit_chars=500)
    state = await run_editing(d, fresh_editing(answer_test()))
    assert state.status == "done" and fixed_patch(state)
    after_wrong = last_user(model, 1)
    assert '<file path="shapes.py" lines="1-' in after_wrong and "    return width + height\n" in after_wrong
    assert "def helper_149" not in after_wrong  # far from the change


def _counted(request: ChatRequest) -> int:
    return count_tokens(request.system or "", "scripted:x") + count_tokens(
        "\n".join(m.content for m in request.messages), "scripted:x"
    )


@pytest.mark.parametrize("server_ratio", [1.0, 3.0])
async def test_the_window_check_calibrates_on_the_servers_own_prompt_count(
    run_store: RunStore, server_ratio: float
) -> None:
    """A server whose tokenizer counts more than ours (usage says by how much) is not overrun."""
    from codemonkeys.llm.types import Usage

    answers = iter([WRONG, RIGHT_AFTER_WRONG, "<done/>"])

    def reply(request: ChatRequest) -> ChatResponse:
        billed = int(_counted(request) * server_ratio)
        return ChatResponse(text=next(answers), usage=Usage(input_tokens=billed, output_tokens=10))

    files = {"shapes.py": BIG}
    sizing = ScriptedModel([WRONG, RIGHT_AFTER_WRONG, "<done/>"], name="scripted:x")
    await run_editing(deps(run_store, gateway(sizing, run_store), files=files), fresh_editing(answer_test(), index=7))
    largest = max(_counted(call.request) for call in sizing.calls)
    window = largest + 256 + 16  # every request fits by our own count
    model = ScriptedModel(reply, name="scripted:x")
    d = deps(run_store, gateway(model, run_store), files=files, window=window, max_tokens=256)
    state = await run_editing(d, fresh_editing(answer_test(), index=8))
    if server_ratio == 1.0:
        assert state.status == "done" and len(model.calls) == 3
    else:  # after the first answer the check knows the server counts 3x: the second call is not sent
        assert state.status == "context_limit" and len(model.calls) == 1
        assert state.token_ratio == pytest.approx(3.0, rel=0.01)
