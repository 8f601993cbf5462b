"""The README's main job: the bundled example through ``codemonkeys run`` with oracle models.

It runs in the Docker sandbox (environment built locally, no Docker Hub); the
exported ``all_preds.jsonl`` must grade as resolved by ``codemonkeys evaluate``,
and the oracle's predictions must be refused by export without --allow-oracle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.cli.main import main
from codemonkeys.store import RunStore
from sandbox_support import docker_client  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_example_run_resolves_and_grades(tmp_path: Path, docker_client, capsys) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    cache = f"environment.cache_dir={tmp_path / 'cache'}"
    main(["run", "example", "--dataset", "example", "--run-dir", str(run_dir), "--allow-oracle", "sandbox.backend=docker", cache])
    preds = [json.loads(line) for line in (run_dir / "all_preds.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == ["codemonkeys-examples__humansize-1"]
    assert "ORACLE" in capsys.readouterr().err

    with RunStore.open_existing(run_dir) as store:
        selection = store.selection("codemonkeys-examples__humansize-1")
        assert selection is not None and selection["candidate_id"] is not None

    report_path = tmp_path / "report.json"
    main(["evaluate", str(run_dir / "all_preds.jsonl"), "--dataset", "example", "--output", str(report_path), "--set", cache])
    report = json.loads(report_path.read_text())
    assert report["codemonkeys-examples__humansize-1"]["status"] == "resolved"

    # Without --allow-oracle, export refuses the oracle's work (exit code 2, one line).
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run_dir), "--output", str(tmp_path / "refused.jsonl")])
    assert exit_info.value.code == 2
    assert "oracle" in capsys.readouterr().err
