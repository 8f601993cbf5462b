"""``report --grade [--candidates]``: grades in the run's store, nothing graded twice, the report shows them.

The run is a stored pipeline run (three shapes instances, noisy oracle
trajectories: some candidates are the gold patch, some are wrong). Grading is
real: the SWE-bench eval script in a container of the run's image, parsed by
swebench's Django-style log parser (the test command prints unittest's names
the way the instances' FAIL_TO_PASS lists spell them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.cli.grade_run import grade_stored_run
from codemonkeys.cli.main import run as cli
from codemonkeys.env.specs import SpecRegistry
from codemonkeys.config import load_config
from codemonkeys.report.run_grades import EnvironmentGrader, stored_grades, wanted_patches
from codemonkeys.sandbox.factory import make_sandbox_factory
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import Instance
from inspect_support import stored_run  # noqa: F401
from pipeline_support import FixedEnvironment, shapes  # noqa: F401
from rich.console import Console
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker

TEST_CMD = (
    "bash -c 'python -m unittest -v \"$@\" 2>&1 | sed -E \"s/[.]test_[a-z_]+[)] [.][.][.]/) .../\"' grade"
)
SPECS = {"local/shapes": {"1.0": {"python": "3.11", "test_cmd": TEST_CMD, "log_parser": "parse_log_django"}}}


class Counting:
    """The real grader, counting what it is asked to grade."""

    def __init__(self, inner: EnvironmentGrader) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    async def grade(self, instance: Instance, patch: str) -> dict[str, Any]:
        self.calls.append((instance.instance_id, patch))
        return await self.inner.grade(instance, patch)


@pytest.fixture()
def grader(shapes) -> Counting:  # type: ignore[no-untyped-def]
    _, _, ref = shapes
    config = load_config(None, ["sandbox.backend=docker"])
    factory = make_sandbox_factory(config.sandbox)
    return Counting(EnvironmentGrader(factory, FixedEnvironment(ref), SpecRegistry.default(SPECS), 120))


def test_grade_then_candidates_then_nothing_twice(stored_run, grader: Counting, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run_dir, ids = stored_run
    console = Console(stderr=True)
    with RunStore.open_read_only(run_dir) as store:
        selected = wanted_patches(store, candidates=False)
        every = wanted_patches(store, candidates=True)
    assert len(selected) == len(ids) and len(every) > len(selected)

    tally = grade_stored_run(run_dir, candidates=False, console=console, grader=grader)
    assert (tally.graded, tally.cached, tally.errors) == (len(selected), 0, 0)
    tally = grade_stored_run(run_dir, candidates=True, console=console, grader=grader)
    assert (tally.graded, tally.cached) == (len(every) - len(selected), len(selected))
    assert len(grader.calls) == len(every) == len(set(grader.calls))  # every distinct patch graded once

    # The second --grade --candidates executes nothing (through the command, with the run's own config).
    configs = []

    def run_grader(config, console):  # type: ignore[no-untyped-def]
        configs.append(config)
        return grader

    monkeypatch.setattr("codemonkeys.cli.grade_run.environment_grader", run_grader)
    capsys.readouterr()
    assert cli(["report", str(run_dir), "--grade", "--candidates", "--json", str(tmp_path / "again.json")]) == 0
    assert len(grader.calls) == len(every)
    assert f"graded 0 patch(es), {len(every)} already graded" in capsys.readouterr().err
    assert configs[0].generation.trajectories == 4 and "local/shapes" in configs[0].environment.spec_overrides

    with RunStore.open_read_only(run_dir) as store:
        grades = stored_grades(store)
        statuses = {str(s) for s in grades.by_patch.values()}
    assert statuses == {"resolved", "unresolved"}  # the gold candidates resolve, the wrong ones do not

    # The report reads the stored grades: resolution, coverage vs k with its fit data, selection accuracy.
    out, data_json = tmp_path / "report.html", tmp_path / "data.json"
    assert cli(["report", str(run_dir), "-o", str(out), "--json", str(data_json)]) == 0
    data = json.loads(data_json.read_text())
    grading = data["grading"]
    assert grading["instances"] == len(ids) and grading["graded_instances"] == len(ids)
    assert 0 < grading["resolved"] <= len(ids)
    assert grading["curve"] and grading["curve"][0][0] == 1 and grading["curve"][-1][0] == 4
    sel = grading["selection"]
    assert sel["instances"] == sel["covered"] == len(ids)  # every instance has a gold candidate
    assert sel["selected_resolved"] == grading["resolved"]
    page = out.read_text()
    assert "Coverage against trajectories" in page and "Selection against coverage" in page
    one = (tmp_path / "report.instances" / f"{ids[0]}.html").read_text()
    assert "resolved" in one and "unresolved" in one  # the candidate table's grade column

    # --candidates alone is a user error; so is mixing the two grading routes.
    capsys.readouterr()
    assert cli(["report", str(run_dir), "-o", str(out), "--candidates"]) == 2
    assert cli(["report", str(run_dir), "--grade", "--export-candidates", str(tmp_path / "x")]) == 2
