"""``select`` and ``ensemble`` on bubblewrap: the same services as ``run``, so no Docker image is ever needed.

The bundled example instance, its environment built as a local (bubblewrap)
environment. Two distinct candidates: the gold patch and a wrong one. The
oracle writes the tests (ensemble) and chooses; what matters here is that
the commands get their environment from the provider the sandbox backend
chose and run their tests in bubblewrap sandboxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from codemonkeys.cli.main import main
from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.env.images import available_pythons
from codemonkeys.env.local import LocalEnvBuilder
from codemonkeys.config import EnvironmentConfig
from codemonkeys.examples import ExampleSetup, example_instance, prepare_example
from codemonkeys.sandbox.bwrap_backend import bwrap_available
from codemonkeys.store import RunStore

pytestmark = [pytest.mark.bwrap, pytest.mark.slow]

INSTANCE = example_instance()
PATH = "src/humansize/sizes.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExampleSetup, Path, str]:
    reason = bwrap_available()
    if reason is not None:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("select-bwrap")
    setup = prepare_example(base)
    if not any(v.startswith("3.1") and int(v.split(".")[1]) >= 11 for v in available_pythons(LocalEnvBuilder(EnvironmentConfig()).pyenv_root())):
        pytest.skip("no CPython >= 3.11 in pyenv for the example")
    mirror = next(setup.mirror_dir.iterdir())
    original = git.Repo(mirror).git.show(f"{INSTANCE.base_commit}:{PATH}") + "\n"
    wrong = make_diff({PATH: original}, {PATH: original + "\n# not a fix\n"})
    return setup, base / "cache", wrong


def _overrides(setup: ExampleSetup, cache: Path) -> list[str]:
    return [
        *setup.overrides, "sandbox.backend=bubblewrap", f"environment.cache_dir={cache}",
        "models.selection.model=oracle", "models.testing.model=oracle", "selection.generated_tests=1",
    ]


def test_select_runs_on_bubblewrap(example: tuple[ExampleSetup, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup, cache, wrong = example
    run = tmp_path / "run"
    with RunStore.open(run) as store:
        store.add_instance(INSTANCE.instance_id, INSTANCE.repo, INSTANCE.model_dump(mode="json"))
        store.add_candidate("c/gold", INSTANCE.instance_id, "generation", INSTANCE.patch, patch_hash(INSTANCE.patch), {})
        store.add_candidate("c/wrong", INSTANCE.instance_id, "generation", wrong, patch_hash(wrong), {})
    args = ["select", str(run), "--json"]
    for override in _overrides(setup, cache):
        args += ["--set", override]
    main(args)  # no SystemExit: every instance selected
    [result] = json.loads(capsys.readouterr().out)
    assert result["failure"] is None
    assert (result["method"], result["candidate_id"]) == ("selection_trajectory", "c/gold")
    with RunStore.open_existing(run) as store:
        assert store.selection(INSTANCE.instance_id)["candidate_id"] == "c/gold"  # type: ignore[index]


def test_ensemble_runs_on_bubblewrap(example: tuple[ExampleSetup, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup, cache, wrong = example
    subs = []
    for name, patch in (("gold", INSTANCE.patch), ("wrong", wrong)):
        path = tmp_path / name / "all_preds.jsonl"
        path.parent.mkdir()
        path.write_text(json.dumps({"instance_id": INSTANCE.instance_id, "model_name_or_path": name, "model_patch": patch}) + "\n")
        subs += ["--submission", str(path)]
    run = tmp_path / "ensemble"
    args = ["ensemble", *subs, "--dataset", str(setup.dataset), "--run-dir", str(run)]
    # top_k=1 would leave one candidate after a vote; an ensemble skips the vote (ensemble_candidates=all).
    for override in [*_overrides(setup, cache), "selection.top_k=1"]:
        args += ["--set", override]
    main(args)
    capsys.readouterr()
    with RunStore.open_existing(run) as store:
        selection = store.selection(INSTANCE.instance_id)
        tests = store.trajectories(INSTANCE.instance_id, "testing")
        executions = store._query("SELECT COUNT(*) AS n FROM test_executions")[0]["n"]
    assert selection is not None and selection["data"]["method"] == "selection_trajectory"
    assert len(selection["data"]["top_k"]) == 2  # the selector saw both submissions
    assert selection is not None and selection["candidate_id"].endswith("gold")
    assert len(tests) == 1 and executions > 0  # the oracle's test ran in bubblewrap sandboxes


def test_evaluate_runs_on_bubblewrap(example: tuple[ExampleSetup, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup, cache, wrong = example
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"instance_id": INSTANCE.instance_id, "model_name_or_path": "g", "model_patch": INSTANCE.patch}) + "\n")
    args = ["evaluate", str(predictions), "--dataset", str(setup.dataset), "--json"]
    for override in _overrides(setup, cache):
        args += ["--set", override]
    main(args)
    report = json.loads(capsys.readouterr().out)
    assert report[INSTANCE.instance_id]["status"] == "resolved", report
