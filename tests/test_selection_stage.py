"""Selection without a sandbox: the matrix's bookkeeping, the shown test, dropped candidates,
the zero- and one-candidate cases, tests read back from the store, and the prompt templates."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from codemonkeys.config import ModelSettings, SelectionConfig, load_config
from codemonkeys.edits import TestOutcome, make_diff, parse_test_script, patch_hash
from codemonkeys.execution import runner as runner_module
from codemonkeys.execution.runner import ORIGINAL, patch_key
from codemonkeys.generation.state import TrajectoryState, save
from codemonkeys.llm.gateway import Gateway
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.prompting import Prompt
from codemonkeys.selection import (
    Candidate,
    SelectionDeps,
    SelectionInputs,
    cell_outcome,
    group_candidates,
    make_tests,
    parse_selection_answer,
    rank_candidates,
    run_matrix,
    select_instance,
    stored_candidates,
    stored_tests,
    example_test,
    presentation_order,
    usable_candidates,
)
from codemonkeys.store import RunStore
from codemonkeys.store.records import TestExecution

F, N, C, T = TestOutcome.FIXED, TestOutcome.NOT_FIXED, TestOutcome.CRASHED, TestOutcome.TIMED_OUT
EXIT = {F: 0, N: 2, C: 1}


def diff(new: str) -> str:
    return make_diff({"m.py": "x = 0\n"}, {"m.py": new})


class ScriptedRunner:
    """Exit codes by (patch key, test hash) per attempt; counts what it is asked to run."""

    __test__ = False

    def __init__(self, outcomes: dict[tuple[str, str], list[TestOutcome]]) -> None:
        self.outcomes = outcomes
        self.asked: list[tuple[str, str, int]] = []

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution:
        key = (patch_key(patch), runner_module.test_hash(script))
        self.asked.append((*key, attempt))
        outcome = self.outcomes[key][attempt]
        return TestExecution("env", key[0], key[1], attempt, EXIT.get(outcome), f"{outcome}", 0.1, outcome is T)


class Untouchable:
    """A runner or file source that must not be used."""

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution:
        raise AssertionError("nothing should run")

    async def read(self, path: str) -> str | None:
        raise AssertionError("nothing should be read")


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([F], F),
        ([N], N),
        ([F, F, N], F),
        ([F, N], N),  # a tie never votes
        ([N, F], N),
        ([C, F, F], F),
        ([C, T, F], C),  # no majority, FIXED dropped: the first remaining
        ([T, T, F], T),
    ],
)
def test_cell_outcome_is_the_majority_and_ties_do_not_pass(outcomes: list[TestOutcome], expected: TestOutcome) -> None:
    assert cell_outcome(outcomes) is expected


def test_make_tests_dedups_by_content_and_drops_blank_scripts() -> None:
    tests = make_tests(["a\n", "", "b\n", "a\n", "  \n"])
    assert [t.script for t in tests] == ["a\n", "b\n"]
    assert tests[0].id == "t" + runner_module.test_hash("a\n")[:12]


async def test_run_matrix_reruns_every_cell_and_records_disagreement() -> None:
    a, b = diff("x = 1\n"), diff("x = 2\n")
    groups = group_candidates([Candidate(id="a", patch=a), Candidate(id="b", patch=b)])
    tests = make_tests(["t1\n", "t2\n"])
    h1, h2 = (runner_module.test_hash(t.script) for t in tests)
    runner = ScriptedRunner({
        (ORIGINAL, h1): [N, N, N], (patch_hash(a), h1): [F, F, F], (patch_hash(b), h1): [F, N, N],
        (ORIGINAL, h2): [N, F, N], (patch_hash(a), h2): [F, F, N], (patch_hash(b), h2): [N, N, N],
    })
    matrix = await run_matrix(runner, tests, groups, reruns=2)
    assert len(runner.asked) == 2 * 3 * 3 and len(set(runner.asked)) == len(runner.asked)
    assert matrix.cells == 6
    t1, t2 = (t.id for t in tests)
    assert matrix.original == {t1: N, t2: N}
    assert matrix.results == {t1: {patch_hash(a): F, patch_hash(b): N}, t2: {patch_hash(a): F, patch_hash(b): N}}
    assert {(f.test_id, f.column) for f in matrix.flaky} == {(t1, patch_hash(b)), (t2, ORIGINAL), (t2, patch_hash(a))}
    assert matrix.execution(t1, patch_hash(b)).exit_code == 0  # the first attempt is what a model sees
    ranked = rank_candidates(groups, matrix.results, matrix.original)
    assert [(r.group.member_ids, r.votes) for r in ranked] == [(("a",), 2), (("b",), 0)]


async def test_run_matrix_refuses_an_empty_candidate() -> None:
    with pytest.raises(ValueError, match="empty patch"):
        await run_matrix(Untouchable(), make_tests(["t\n"]), group_candidates([Candidate(id="e", patch="")]))


# --- choosing what the model sees ---------------------------------------------------------


async def _matrix(table: dict[str, dict[str, TestOutcome]]):  # type: ignore[no-untyped-def]
    patches = {name: diff(f"x = {i}\n") for i, name in enumerate("abc", 1)}
    groups = group_candidates([Candidate(id=n, patch=p) for n, p in patches.items()])
    outcomes: dict[tuple[str, str], list[TestOutcome]] = defaultdict(list)
    for script, row in table.items():
        for name, outcome in row.items():
            outcomes[(patch_key(patches.get(name, "")), runner_module.test_hash(script))].append(outcome)
    matrix = await run_matrix(ScriptedRunner(outcomes), make_tests(list(table)), groups)
    return groups, matrix


async def test_the_example_test_and_the_order_carry_no_vote_information() -> None:
    # The test with the smallest hash passes on the original code: it can never be the example.
    useless, first, second = sorted(["first\n", "second\n", "third\n"], key=runner_module.test_hash)
    scripts = [second, first, useless]  # listed out of hash order
    rows = [{"": N, "a": F, "b": N, "c": N}, {"": N, "a": N, "b": N, "c": N}, {"": F, "a": F, "b": F, "c": F}]
    groups, matrix = await _matrix(dict(zip(scripts, rows, strict=True)))
    # The same tests with other results: another candidate leads, backed by the other test.
    swapped = [{"": N, "a": N, "b": N, "c": N}, {"": N, "a": N, "b": N, "c": F}, {"": F, "a": F, "b": F, "c": F}]
    _, other = await _matrix(dict(zip(scripts, swapped, strict=True)))
    leaders = [rank_candidates(groups, m.results, m.original) for m in (matrix, other)]
    assert leaders[0][0].group.member_ids == ("a",) and leaders[1][0].group.member_ids == ("c",)
    chosen = example_test(matrix)
    assert chosen is not None and chosen == example_test(other)
    # A counted test (it fails on the original code), the one with the smallest hash.
    counted = [t for t in matrix.tests if t.script != useless]
    assert chosen == min(counted, key=lambda t: runner_module.test_hash(t.script))
    # Shown by patch hash whatever the votes.
    orders = [[r.key for r in presentation_order(ranking)] for ranking in leaders]
    assert orders[0] == orders[1] == sorted(g.key for g in groups)
    # Only tests that pass on the original: the first test; no tests at all: none.
    _, only_useless = await _matrix({useless: rows[2]})
    assert (example_test(only_useless) or matrix.tests[0]).script == useless
    matrix.tests = []
    assert example_test(matrix) is None


def test_usable_candidates_drop_empty_and_unreadable_patches() -> None:
    kept, empty, unreadable = usable_candidates([
        Candidate(id="ok", patch=diff("x = 1\n")),
        Candidate(id="blank", patch="  \n"),
        Candidate(id="only-pyc", patch=make_diff({}, {"m.pyc": "junk\n"})),
        Candidate(id="prose", patch="I fixed it by editing m.py"),  # no diff in it: empty
        Candidate(id="cut", patch="--- a/m.py\n+++ b/m.py\n@@ -1,9 +1,9 @@\n-x = 0\n+x = 1\n"),
    ])
    assert [c.id for c in kept] == ["ok"]
    assert (empty, unreadable) == (3, 1)


# --- the stage without a model call -----------------------------------------------------------


def deps_for(store: RunStore, model: ScriptedModel) -> SelectionDeps:
    return SelectionDeps(
        chat=Gateway(model, store, PriceTable(load_config().pricing)), store=store, runner=Untouchable(),
        sources=Untouchable(), prompt=Prompt("selection.j2"), model=ModelSettings(model=model.name),
        config=SelectionConfig(),
    )


async def test_one_distinct_candidate_needs_no_model_and_no_sandbox(run_store: RunStore) -> None:
    model = ScriptedModel([], name="scripted:selection")
    patch = diff("x = 1\n")
    same = patch.replace("--- a/m.py", "index 1234567..89abcde 100644\n--- a/m.py")
    candidates = [Candidate(id="b", patch=same), Candidate(id="a", patch=patch), Candidate(id="e", patch="")]
    outcome = await select_instance(deps_for(run_store, model), SelectionInputs("i1", "issue", candidates, ["t\n"]))
    assert (outcome.method, outcome.candidate_id) == ("single_candidate", "a")
    assert model.calls == []
    stored = run_store.selection("i1")
    assert stored is not None and stored["candidate_id"] == "a" and stored["method"] == "single_candidate"
    assert stored["data"]["members"] == ["a", "b"] and stored["data"]["skipped_empty"] == 1


async def test_no_candidate_selects_nothing_and_says_so(run_store: RunStore) -> None:
    outcome = await select_instance(
        deps_for(run_store, ScriptedModel([], name="scripted:x")),
        SelectionInputs("i2", "issue", [Candidate(id="e", patch="")], []),
    )
    assert (outcome.method, outcome.candidate_id, outcome.group) == ("none", None, None)
    stored = run_store.selection("i2")
    assert stored is not None and stored["candidate_id"] is None and stored["method"] == "none"
    assert "no candidate with a non-empty patch" in stored["data"]["reason"]


def test_stored_candidates_and_tests(run_store: RunStore) -> None:
    run_store.add_candidate("i/generation/0", "i", "generation", "p0", "h0", {})
    run_store.add_candidate("i/sub/x", "i", "x", "p1", "h1", {})
    run_store.add_candidate("j/generation/0", "j", "generation", "p2", "h2", {})
    assert [c.id for c in stored_candidates(run_store, "i")] == ["i/generation/0", "i/sub/x"]
    for index, (testing, editing) in enumerate([("first\n", "first, revised\n"), ("second\n", None), (None, None)]):
        save(run_store, TrajectoryState(instance_id="i", kind="testing", index=index, system="s", test=testing), {})
        if editing is not None:
            save(run_store, TrajectoryState(instance_id="i", kind="editing", index=index, system="s", test=editing), {})
    run_store.put_result("i", "selection", "imported_tests", ["imported\n"])
    assert stored_tests(run_store, "i") == ["first, revised\n", "second\n", "imported\n"]
    assert stored_tests(run_store, "j") == []


# --- the prompt templates ---------------------------------------------------------------------


def test_selection_prompts_render_and_their_examples_parse(tmp_path: Path) -> None:
    prompt = Prompt("selection.j2")
    run = {"label": "candidate 1", "exit_code": 0, "outcome": "fixed", "output": "ok"}
    system = prompt.render(
        "selection_system", issue="the issue", files=[{"path": "m.py", "content": "x = 0\n"}],
        candidates=[{"number": 1, "diff": diff("x = 1\n")}, {"number": 2, "diff": diff("x = 2\n")}],
        test="import sys\nsys.exit(0)\n", runs=[run], total_tests=3,
    )
    assert '<candidate number="2">' in system and '<file path="m.py">' in system
    assert "from 1 to 2" in system and '<run on="candidate 1" exit_code="0"' in system
    no_test = prompt.render("selection_system", issue="i", files=[], candidates=[], test=None, runs=[], total_tests=0)
    assert "No reproduction test" in no_test and "none of the edited files" in no_test
    # The format's own examples are valid answers.
    choice_example = system[system.index("<choice>") : system.index("</choice>") + len("</choice>")]
    assert parse_selection_answer(choice_example, 2).candidate == 1  # type: ignore[union-attr]
    test_example = system[system.rindex("<test>\n```python\nimport sys\n...") :]
    assert parse_test_script(test_example).script.startswith("import sys")
    assert "last turn" in prompt.render("selection_feedback", runs=[run], turns_left=1)
    assert "3 turns left" in prompt.render("selection_feedback", runs=[run], turns_left=3)
    assert "last turn" in prompt.render("parse_error", error="bad", turns_left=1, tested=True)
    assert "write a <test> now" in prompt.render("parse_error", error="bad", turns_left=1, tested=False)
    assert "votes" not in system and "how many" not in system
