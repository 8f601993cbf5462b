"""The oracle doubles: gold patch as edits, relevance/ranking from the gold files, noisy trajectories."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from codemonkeys.edits import apply_edits, make_diff, normalize_patch, parse_edits, parse_test_script
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.llm.types import ChatRequest, Message
from codemonkeys.oracle import OracleModel, gold_files, is_oracle, patch_to_edits, reproduction_script, wrong_edits
from codemonkeys.resources import resource_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "codemonkeys" / "examples" / "humansize"

OLD = "".join(f"line {i}\n" for i in range(1, 40))
NEW = OLD.replace("line 3\n", "line three\n").replace("line 30\n", "line thirty\nline thirty-one\n")
MULTI = make_diff({"a.py": OLD}, {"a.py": NEW, "b.py": "print('new')\n"})


def test_patch_to_edits_reproduces_the_patch() -> None:
    blocks = patch_to_edits(MULTI)
    assert [b.path for b in blocks] == ["a.py", "a.py", "b.py"]
    changed = apply_edits({"a.py": OLD}, blocks)
    assert normalize_patch(make_diff({"a.py": OLD}, changed)) == normalize_patch(MULTI)


def test_wrong_edits_differ_from_gold_and_still_apply() -> None:
    for patch in (MULTI, make_diff({"a.py": OLD}, {"a.py": NEW.replace("line thirty\nline thirty-one\n", "line 30\n")})):
        changed = apply_edits({"a.py": OLD}, wrong_edits(patch))
        wrong = make_diff({"a.py": OLD}, changed)
        assert wrong.strip() and normalize_patch(wrong) != normalize_patch(patch)


def test_gold_of_the_bundled_example_round_trips(tmp_path: Path) -> None:
    instance = json.loads((EXAMPLE / "instance.json").read_text())
    subprocess.run(["git", "clone", "-q", str(EXAMPLE / "repo.bundle"), str(tmp_path / "repo")], check=True)
    files = {path: (tmp_path / "repo" / path).read_text() for path in gold_files(instance["patch"])}
    changed = apply_edits(files, patch_to_edits(instance["patch"]))
    assert normalize_patch(make_diff(files, changed)) == normalize_patch(instance["patch"])


def _oracle(stage: str, model: str = "oracle") -> OracleModel:
    return OracleModel(parse_model_string(model), stage, instance_id="x-1", gold_patch=MULTI, test_script="import sys\nsys.exit(2)\n")


def _ask(oracle: OracleModel, content: str, *, assistant_turns: int = 0, sample: int = 0) -> str:
    messages = [Message("user", content)]
    for _ in range(assistant_turns):
        messages += [Message("assistant", "..."), Message("user", "feedback")]
    return asyncio.run(oracle.complete(ChatRequest(tuple(messages), sample=sample))).text


def test_relevance_and_ranking_follow_the_gold_files() -> None:
    assert "<relevant>yes</relevant>" in _ask(_oracle("relevance"), 'Here is the file:\n<file path="b.py">\nx\n</file>')
    assert _ask(_oracle("relevance"), '<file path="c.py">\nx\n</file>').strip() == "<relevant>no</relevant>"
    ranking = _ask(_oracle("ranking"), '<file path="c.py" tokens="3">s</file>\n<file path="b.py" tokens="3">s</file>\n<file path="a.py" tokens="3">s</file>')
    assert ranking.split("\n")[1:4] == ["a.py", "b.py", "c.py"]


def test_testing_and_editing_turns() -> None:
    assert parse_test_script(_ask(_oracle("testing"), "issue")).script == "import sys\nsys.exit(2)\n"
    assert _ask(_oracle("testing"), "issue", assistant_turns=1).strip() == "<done/>"
    assert parse_edits(_ask(_oracle("editing"), "go")) == patch_to_edits(MULTI)
    assert _ask(_oracle("editing"), "go", assistant_turns=1).strip() == "<done/>"


def test_noisy_oracle_is_wrong_on_about_its_fraction_and_stable() -> None:
    noisy = _oracle("editing", "oracle-noisy:0.5")
    flags = [noisy.noisy(i) for i in range(200)]
    assert 60 < sum(flags) < 140
    assert flags == [noisy.noisy(i) for i in range(200)]
    wrong = next(i for i, flag in enumerate(flags) if flag)
    assert parse_edits(_ask(noisy, "go", sample=wrong)) == wrong_edits(MULTI)
    assert not any(_oracle("editing", "oracle-noisy:0").noisy(i) for i in range(50))


def test_selection_picks_the_gold_candidate() -> None:
    other = make_diff({"a.py": OLD}, {"a.py": OLD.replace("line 5\n", "line five\n")})
    prompt = (
        f'<candidate number="1">\n```diff\n{other}```\n</candidate>\n'
        f'<candidate number="2">\n```diff\n{MULTI}```\n</candidate>\n'
    )
    first = _ask(_oracle("selection"), prompt)
    assert "<test>" in first and "<choice>" not in first  # a selection trajectory writes a test first
    assert "<choice>2</choice>" in _ask(_oracle("selection"), prompt, assistant_turns=1)
    assert is_oracle("oracle-noisy:0.5") and is_oracle("oracle") and not is_oracle("anthropic:claude-sonnet-4-5")


@pytest.mark.parametrize("fixed", [False, True])
def test_reproduction_script_reports_the_instance_tests(tmp_path: Path, fixed: bool) -> None:
    """The oracle's test applies the test patch, runs the tests, and exits 0/2; checked on the example."""
    instance = json.loads((EXAMPLE / "instance.json").read_text())
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(EXAMPLE / "repo.bundle"), str(repo)], check=True)
    if fixed:
        subprocess.run(["git", "apply", "-"], input=instance["patch"], text=True, cwd=repo, check=True)
    script = reproduction_script(instance["test_patch"], "python -m pytest -q -p no:cacheprovider tests/test_sizes.py", {"PYTHONPATH": "src"})
    (repo / "repro.py").write_text(script)
    import sys

    result = subprocess.run([sys.executable, "repro.py"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == (0 if fixed else 2), result.stdout + result.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert "tests/test_sizes.py" not in status  # the test patch was reverted


def test_selection_recognizes_the_gold_edit_under_another_hunk_layout() -> None:
    """The same edit, diffed with the inserted blank line on the other side, is still the gold one."""
    old = "def a():\n    return 1\n\n\ndef c():\n    return 3\n"
    gold = "def a():\n    return 1\n\n\ndef b():\n    return 2\n\n\ndef c():\n    return 3\n"
    layout_one = make_diff({"m.py": old}, {"m.py": gold})
    layout_two = (
        "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,5 +1,9 @@\n def a():\n     return 1\n \n+\n"
        "+def b():\n+    return 2\n+\n \n def c():\n"
    )
    assert normalize_patch(layout_one) != normalize_patch(layout_two)
    oracle = OracleModel(parse_model_string("oracle"), "selection", instance_id="x-1", gold_patch=layout_one, test_script="")
    prompt = f'<candidate number="1">\n```diff\n{MULTI}```\n</candidate>\n<candidate number="2">\n```diff\n{layout_two}```\n</candidate>\n'
    assert "<choice>2</choice>" in _ask(oracle, prompt, assistant_turns=1)
