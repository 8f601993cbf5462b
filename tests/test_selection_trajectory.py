"""The selection configuration of the agent loop, and what the selector is shown, without a sandbox.

Candidates are judged by a scripted runner; the selector is a scripted model
that reads the prompt it is given.
"""

from __future__ import annotations

import re

import pytest
from agent_support import SOURCE, DictSources, JudgingRunner, gateway

from codemonkeys.config import ModelSettings, SelectionConfig
from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.errors import ContextLimitReached
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import ChatRequest
from codemonkeys.prompting import Prompt
from codemonkeys.selection import Candidate, SelectionDeps, SelectionInputs, select_instance
from codemonkeys.selection.trajectory import SelectionState
from codemonkeys.store import RunStore


def fixed(body: str) -> str:
    return make_diff({"shapes.py": SOURCE}, {"shapes.py": SOURCE.replace("width * width", body)})


RIGHT, SUM, MAX = fixed("width * height"), fixed("width + height"), fixed("max(width, height) * 2")
CANDIDATES = [Candidate(id="right", patch=RIGHT), Candidate(id="sum", patch=SUM), Candidate(id="max", patch=MAX)]
TESTS = ["import sys\n# strict\nsys.exit(2)\n", "import sys\n# loose\nsys.exit(2)\n"]
SELECTOR_TEST = "Let me try a non-square case.\n<test>\n```python\nimport sys\n# selector\nsys.exit(2)\n```\n</test>\n"


def judge(patch: str, script: str) -> int:
    """``right`` passes everything; ``max`` passes the loose test; nothing passes on the original."""
    if patch == "":
        return 2
    if "width * height" in patch:
        return 0
    return 0 if "# loose" in script and "max(" in patch else 2


def shown(request: ChatRequest) -> list[str]:
    """The diffs in the order the prompt numbers them."""
    return re.findall(r'<candidate number="\d+">\n```diff\n(.*?)```', request.system or "", re.DOTALL)


def picks_right(request: ChatRequest) -> str:
    if not any(m.role == "assistant" for m in request.messages):
        return SELECTOR_TEST
    number = next(i for i, d in enumerate(shown(request), 1) if "+    return width * height" in d)
    return f"The tests agree.\n<choice>{number}</choice>"


async def select(store: RunStore, model: ScriptedModel, runner: JudgingRunner | None = None, *, ensemble: bool = False, **config: object):  # type: ignore[no-untyped-def]
    runner = runner or JudgingRunner(judge)
    deps = SelectionDeps(
        chat=gateway(model, store), store=store, runner=runner, sources=DictSources({"shapes.py": SOURCE}),
        prompt=Prompt("selection.j2"), model=ModelSettings(model=model.name, max_output_tokens=256, context_window=config.pop("window", None)),  # type: ignore[arg-type]
        config=SelectionConfig(**config),  # type: ignore[arg-type]
    )
    return await select_instance(deps, SelectionInputs("i1", "area is wrong", CANDIDATES, TESTS, ensemble=ensemble))


async def test_the_first_answer_must_be_a_test(run_store: RunStore) -> None:
    model = ScriptedModel(["Candidate 1 looks right.\n<choice>1</choice>", SELECTOR_TEST, "<choice>2</choice>"])
    outcome = await select(run_store, model)
    assert len(model.calls) == 3
    assert "write a test before choosing" in model.calls[1].request.messages[-1].content
    assert "write a <test> now" in model.calls[1].request.messages[-1].content
    assert outcome.method == "selection_trajectory"


async def test_the_selectors_test_runs_on_the_original_and_every_shown_candidate(run_store: RunStore) -> None:
    runner = JudgingRunner(judge)
    model = ScriptedModel(picks_right)
    outcome = await select(run_store, model, runner, top_k=3)
    assert (outcome.method, outcome.candidate_id) == ("selection_trajectory", "right")
    selector_runs = sorted(patch_hash(p) if p else "" for p, s in runner.runs if "# selector" in s)
    assert selector_runs == sorted(["", *(patch_hash(p) for p in (RIGHT, SUM, MAX))])
    feedback = model.calls[1].request.messages[-1].content
    assert all(f'on="candidate {i}"' in feedback for i in (1, 2, 3)) and 'on="original code"' in feedback


async def test_no_choice_by_the_turn_limit_falls_back_to_the_vote(run_store: RunStore) -> None:
    model = ScriptedModel(lambda request: "<choice>1</choice>")  # never a test first
    outcome = await select(run_store, model, max_turns=3)
    assert len(model.calls) == 3
    assert (outcome.method, outcome.candidate_id) == ("fallback_top_vote", "right")
    assert outcome.reason is not None and outcome.reason.startswith("model: TurnLimitReached")


async def test_a_full_context_window_falls_back_to_the_vote(run_store: RunStore) -> None:
    outcome = await select(run_store, ScriptedModel([ContextLimitReached("400: too long")]))
    assert outcome.method == "fallback_top_vote" and outcome.candidate_id == "right"
    assert outcome.reason is not None and outcome.reason.startswith("model: ContextLimitReached")
    # Checked before the call, too: a window smaller than the prompt sends nothing.
    silent = ScriptedModel([], name="scripted:small")
    small = await select(run_store, silent, window=300)
    assert silent.calls == [] and small.method == "fallback_top_vote"
    assert small.reason is not None and "context window" in small.reason


async def test_candidates_are_shown_in_an_order_that_carries_no_votes(run_store: RunStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedModel(picks_right, name="scripted:a")
    await select(run_store, model, top_k=3)
    order = shown(model.calls[0].request)
    assert [patch_hash(d) for d in order] == sorted(patch_hash(p) for p in (RIGHT, SUM, MAX))
    system = model.calls[0].request.system or ""
    assert "how many" not in system and "vote" not in system and "leading" not in system
    # Another vote (``sum`` now leads): the same order and the same example test.
    other_store = RunStore.open(tmp_path / "other")
    flipped = ScriptedModel(picks_right, name="scripted:a")
    # ``sum`` passes only the loose test, which a leader-backing pick would now show.
    sum_leads = JudgingRunner(lambda p, s: 0 if "width + height" in p and "# loose" in s else 2)
    outcome = await select(other_store, flipped, sum_leads, top_k=3)
    assert outcome.ranking[0].group.member_ids == ("sum",)
    assert shown(flipped.calls[0].request) == order
    example = re.findall(r"<test>\n```python\n(.*?)```", system, re.DOTALL)[0]
    assert example in (flipped.calls[0].request.system or "")


@pytest.mark.parametrize(
    ("ensemble", "config", "count"),
    [
        (False, {}, 2),  # a run's own candidates: the top_k by votes
        (True, {}, 3),  # an ensemble: every candidate, no vote (the paper's setup)
        (False, {"candidates": "all"}, 3),
        (True, {"ensemble_candidates": "top_k"}, 2),
    ],
)
async def test_which_candidates_the_selector_sees(run_store: RunStore, ensemble: bool, config: dict[str, str], count: int) -> None:
    model = ScriptedModel(picks_right)
    outcome = await select(run_store, model, ensemble=ensemble, top_k=2, **config)
    assert len(shown(model.calls[0].request)) == count
    assert outcome.candidate_id == "right"


def test_a_selection_state_saved_before_the_loop_moved_still_loads() -> None:
    old = (
        '{"instance_id": "i1", "key": "k", "system": "s", "candidates": ["a", "b"], "patches": ["p", "q"], '
        '"messages": [{"role": "user", "content": "hi"}], "calls": 0, "tests": [], "parse_errors": 0, '
        '"choice": null, "status": "running", "failure_kind": null, "failure": null}'
    )
    state = SelectionState.model_validate_json(old)
    assert state.trajectory_id == "i1/selection/k" and state.kind == "selection" and state.index == 0
