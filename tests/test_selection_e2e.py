"""Selection end to end: a real buggy repo, three candidates, scripted models, the real Docker sandbox.

One candidate is right, two are wrong (one of them passes one of the tests).
The generated tests vote, the selection model writes one more test, reads the
side-by-side outputs and chooses. Every matrix cell runs once; a rerun runs
none and calls no model; failures of the selection model fall back to the
top-voted candidate.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from repo_images import build_repo_image
from sandbox_support import docker_client  # noqa: F401

from codemonkeys.config import ModelSettings, SandboxConfig, SelectionConfig, load_config
from codemonkeys.edits import make_diff
from codemonkeys.errors import ProviderError
from codemonkeys.execution import SandboxPool, TestRunner
from codemonkeys.execution.sources import SandboxSources
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.llm.types import ChatRequest
from codemonkeys.prompting import Prompt
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.selection import Candidate, SelectionDeps, SelectionInputs, select_instance
from codemonkeys.store import RunStore

pytestmark = pytest.mark.docker

BUGGY = '"""Shapes."""\n\n\ndef area(width, height):\n    return width * width\n'
REPO_FILES = {"shapes.py": BUGGY, ".gitignore": "__pycache__/\n"}


def fixed(body: str) -> str:
    return make_diff({"shapes.py": BUGGY}, {"shapes.py": BUGGY.replace("width * width", body)})


RIGHT = fixed("width * height")
WRONG_SUM = fixed("width + height")
WRONG_MAX = fixed("max(width, height) * 2")  # right for area(2, 3) only
# The right patch again, as another tool writes it: index line, no trailing newline.
RIGHT_AGAIN = RIGHT.replace("--- a/shapes.py", "index 1111111..2222222 100644\n--- a/shapes.py").rstrip("\n")

CANDIDATES = [
    Candidate(id="c-right", patch=RIGHT),
    Candidate(id="c-sum", patch=WRONG_SUM),
    Candidate(id="c-max", patch=WRONG_MAX),
    Candidate(id="c-right-copy", patch=RIGHT_AGAIN),
    Candidate(id="c-empty", patch=""),
]


def area_test(width: int, height: int) -> str:
    return (
        "import sys\nimport shapes\n\n"
        f"result = shapes.area({width}, {height})\nprint('area =', result)\n"
        f"sys.exit(0 if result == {width * height} else 2)\n"
    )


# Two tests that fail on the original code, one that passes there (it cannot vote).
TESTS = [area_test(2, 3), area_test(4, 5), area_test(3, 3)]
ISSUE = "area(width, height) returns width*width instead of width*height"

SELECTION_TEST = "Let me check a non-square case.\n<test>\n```python\n" + area_test(7, 2) + "```\n</test>\n"


def reply_by_reading(request: ChatRequest) -> str:
    """Write one test, then choose the candidate whose diff multiplies width by height."""
    if not any(m.role == "assistant" for m in request.messages):
        return SELECTION_TEST
    assert request.system is not None
    numbers = re.findall(r'<candidate number="(\d+)">\n```diff\n(.*?)```', request.system, re.DOTALL)
    right = next(n for n, diff in numbers if "+    return width * height" in diff)
    assert "candidate 3" in request.messages[-1].content  # outputs side by side
    return f"Candidate {right} is the only one that multiplies.\n<choice>{right}</choice>"


@pytest.fixture(scope="module")
def shapes_env(docker_client) -> EnvironmentRef:  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.baseimage import ensure_test_image

    tag = build_repo_image(docker_client, ensure_test_image(docker_client), REPO_FILES)
    return EnvironmentRef(key=f"shapes-sel-{tag.rsplit(':', 1)[1]}", image=tag, python="python3")


async def run_selection(store: RunStore, env: EnvironmentRef, model: ScriptedModel, **config: object):  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    selection = SelectionConfig(test_timeout_s=30, **config)  # type: ignore[arg-type]
    async with SandboxPool(DockerSandboxFactory(SandboxConfig()), env, size=4) as pool:
        runner = TestRunner(pool, store, timeout_s=selection.test_timeout_s)
        deps = SelectionDeps(
            chat=Gateway(model, store, PriceTable(load_config().pricing)), store=store, runner=runner,
            sources=SandboxSources(pool), prompt=Prompt("selection.j2"),
            model=ModelSettings(model=model.name), config=selection,
        )
        outcome = await select_instance(deps, SelectionInputs("shapes-1", ISSUE, CANDIDATES, TESTS))
        return outcome, runner.executed


async def test_votes_then_the_trajectory_picks_the_right_candidate_and_reruns_are_free(
    tmp_path: Path, shapes_env: EnvironmentRef
) -> None:
    store = RunStore.open(tmp_path / "run")
    model = ScriptedModel(reply_by_reading, name="scripted:selection")
    outcome, executed = await run_selection(store, shapes_env, model)

    assert outcome.method == "selection_trajectory"
    assert outcome.candidate_id == "c-right"
    assert outcome.group is not None and outcome.group.member_ids == ("c-right", "c-right-copy")
    assert outcome.skipped_empty == 1
    # Votes: the right patch passes both counted tests, the max() one only area(2, 3).
    assert [(r.group.member_ids[0], r.votes) for r in outcome.ranking] == [("c-right", 2), ("c-max", 1), ("c-sum", 0)]
    # 3 tests x (original + 3 distinct candidates) + the selection test on the same 4 columns.
    assert outcome.matrix is not None and outcome.matrix.cells == 12
    assert executed == 12 + 4
    assert len(model.calls) == 2
    system = model.calls[0].request.system or ""
    assert "def area(width, height):" in system and ISSUE in system
    assert "area(4, 5)" in system or "area(2, 3)" in system  # a counted test is shown as the example
    stored = store.selection("shapes-1")
    assert stored is not None and stored["candidate_id"] == "c-right"
    assert stored["method"] == "selection_trajectory" and stored["data"]["cells"] == 12
    assert [t.turn for t in store.turns(outcome.trajectory_id or "")] == [0, 1, 2]

    # Rerun on the same store: every cell comes from the cache, the trajectory from its saved state.
    silent = ScriptedModel([], name="scripted:selection")
    again, executed_again = await run_selection(store, shapes_env, silent)
    assert executed_again == 0
    assert silent.calls == []
    assert (again.method, again.candidate_id) == ("selection_trajectory", "c-right")

    # Another selection model (an ablation) is a new trajectory over the same cached cells.
    # This one never answers readably: the top-voted candidate is selected, with the reason.
    babbler = ScriptedModel(lambda request: "I think the second one, maybe.", name="scripted:babbler")
    fallback, executed_fallback = await run_selection(store, shapes_env, babbler, max_turns=2)
    assert executed_fallback == 0
    assert (fallback.method, fallback.candidate_id) == ("fallback_top_vote", "c-right")
    assert fallback.reason is not None and fallback.reason.startswith("model: TurnLimitReached")
    assert len(babbler.calls) == 2
    assert "neither a <choice> nor a <test>" in babbler.calls[1].request.messages[-1].content
    assert "write a <test> now" in babbler.calls[1].request.messages[-1].content  # no test of its own yet
    # A model failure stands on a rerun: no new call.
    again_babbler = ScriptedModel([], name="scripted:babbler")
    assert (await run_selection(store, shapes_env, again_babbler, max_turns=2))[0].method == "fallback_top_vote"
    assert again_babbler.calls == []


async def test_provider_failure_falls_back_and_a_rerun_retries_it(tmp_path: Path, shapes_env: EnvironmentRef) -> None:
    store = RunStore.open(tmp_path / "run")
    broken = ScriptedModel([ProviderError("overloaded after retries")], name="scripted:selection")
    first, _ = await run_selection(store, shapes_env, broken)
    assert (first.method, first.candidate_id) == ("fallback_top_vote", "c-right")
    assert first.reason is not None and first.reason.startswith("infra: ProviderError")
    assert store.selection("shapes-1")["method"] == "fallback_top_vote"  # type: ignore[index]

    # Infrastructure failures are retried by a rerun; the trajectory now chooses.
    model = ScriptedModel(reply_by_reading, name="scripted:selection")
    second, executed = await run_selection(store, shapes_env, model)
    assert (second.method, second.candidate_id) == ("selection_trajectory", "c-right")
    assert executed == 4  # only the selection model's own test is new
    assert store.selection("shapes-1")["method"] == "selection_trajectory"  # type: ignore[index]


# --- an ensemble: submissions' patches, generated tests, the same selection ----------------------


def reply_for_testing(request: ChatRequest) -> str:
    """Trajectory i writes the i-th area test, then is content with it."""
    if any(m.role == "assistant" for m in request.messages):
        return "<done/>"
    return "<test>\n```python\n" + [area_test(2, 3), area_test(4, 5)][request.sample] + "```\n</test>"


async def test_ensemble_of_submissions_generates_tests_and_selects(tmp_path: Path, shapes_env: EnvironmentRef) -> None:
    import json

    from codemonkeys.ensemble import load_predictions
    from codemonkeys.ensemble.pool import pool_submissions, submission_candidate_id
    from codemonkeys.pipeline.build import open_services
    from codemonkeys.pipeline.selecting import select_instances, test_writer
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory
    from codemonkeys.swebench.instances import Instance

    members = []
    for name, patch in (("right", RIGHT), ("sum", WRONG_SUM), ("max", WRONG_MAX), ("blank", "")):
        path = tmp_path / name / "all_preds.jsonl"
        path.parent.mkdir()
        path.write_text(json.dumps({"instance_id": "shapes-1", "model_name_or_path": name, "model_patch": patch}) + "\n")
        members.append((name, load_predictions(path)))
    instance = Instance(
        instance_id="shapes-1", repo="example/shapes", base_commit="abc1234", version="1",
        environment_setup_commit="abc1234", problem_statement=ISSUE, test_patch="", FAIL_TO_PASS=[], PASS_TO_PASS=[],
    )
    cfg = load_config(None, [
        "models.testing.model=scripted:testing", "models.selection.model=scripted:selection",
        "selection.generated_tests=2", "selection.test_timeout_s=30", "sandbox.pool_size=4",
    ])
    models: dict[str, ScriptedModel] = {}

    def scripted(spec, stage, instance_id):  # type: ignore[no-untyped-def]
        reply = reply_for_testing if stage == "testing" else reply_by_reading
        return models.setdefault(stage, ScriptedModel(reply, name=spec.label))

    class Fixed:
        async def environment(self, _: Instance) -> EnvironmentRef:
            return shapes_env

    def run(run_dir: Path):  # type: ignore[no-untyped-def]
        factory = DockerSandboxFactory(cfg.sandbox)
        try:
            with open_services(
                cfg, run_dir, [instance], {}, stages=("selection", "testing"), sandboxes=factory,
                environments=Fixed(), extra_models=scripted,
            ) as services:
                [result] = asyncio.run(select_instances(services, [instance], prepare=test_writer(services)))
        finally:
            factory.close()
        return result

    with RunStore.open(tmp_path / "run") as pool_store:
        summary = pool_submissions(pool_store, members, ["shapes-1"])
    assert sum(summary.added.values()) == 3 and summary.no_patch["blank"] == 1
    result = await asyncio.to_thread(run, tmp_path / "run")
    store = RunStore.open(tmp_path / "run")
    assert result.failure is None, result.failure
    assert result.outcome is not None
    assert (result.outcome.method, result.outcome.candidate_id) == (
        "selection_trajectory", submission_candidate_id("shapes-1", "right")
    )
    assert [r.votes for r in result.outcome.ranking] == [2, 1, 0]
    assert len(store.trajectories("shapes-1", "testing")) == 2
    # 2 generated tests: each on the original once while being written (cached), then
    # 2 x (original + 3 candidates) in the matrix, then the selection test on 4 columns.
    assert result.executed == 2 * 4 + 4
    assert [len(m.calls) for m in (models["testing"], models["selection"])] == [4, 2]

    models.clear()
    again = await asyncio.to_thread(run, tmp_path / "run")
    assert again.executed == 0 and again.outcome is not None
    assert again.outcome.candidate_id == result.outcome.candidate_id
    assert all(m.calls == [] for m in models.values())
