"""The context stage through the real SDKs against the loopback fake server, and the CLI around it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from context_support import ISSUE, make_repo
from typer.testing import CliRunner

from codemonkeys.cli.main import build_app
from codemonkeys.config import load_config
from codemonkeys.context.batch import build_stage
from codemonkeys.context.ranking import render_ranking
from codemonkeys.context.relevance import RelevanceAnswer, render_answer
from codemonkeys.context.stage import ContextTask
from codemonkeys.llm.registry import ModelHub
from codemonkeys.store import RunStore
from codemonkeys.testing import fake_wire as wire
from codemonkeys.testing.fake_server import FakeLLMServer

# The SDK warns that the model name is deprecated; irrelevant against the loopback server.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

RELEVANT = {"pkg/dates.py": "Defines parse_date.", "pkg/formats.py": "iso() calls parse_date."}


def responder(body: dict[str, Any]) -> str:
    """Relevance for OpenAI-style requests, rankings for Anthropic ones; both parsed from the wire."""
    text = "\n".join(block.text for block in wire.anthropic_blocks(body))
    listed = re.findall(r'<file path="([^"]+)" tokens=', text)
    if listed:
        return "Dates first.\n" + render_ranking(sorted(listed))
    path = re.findall(r'<file path="([^"]+)">', text)[-1]
    return render_answer(RelevanceAnswer(path in RELEVANT, RELEVANT.get(path, "")))


def config_overrides(server: FakeLLMServer) -> list[str]:
    return [
        f"models.relevance.model=openai-compatible:qwen-test@{server.openai_base_url}",
        f"models.ranking.model=anthropic:claude-sonnet-4-5@{server.anthropic_base_url}",
        "providers.anthropic.max_retries=0",
        "context.budget_tokens=100000",
        "context.max_file_tokens=1000",
    ]


async def test_small_repo_scored_end_to_end_through_the_sdks(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    with FakeLLMServer(responder) as server, RunStore.open(tmp_path / "run") as store:
        config = load_config("verified", config_overrides(server))
        hub = ModelHub(config, store, {"anthropic": "test-key"})
        stage = build_stage(config, hub, store)
        result = await stage.run(ContextTask("i1", ISSUE, tmp_path / "repo", commit))

        assert result.relevant == ["pkg/dates.py", "pkg/formats.py"]
        assert result.included_paths == ["pkg/dates.py", "pkg/formats.py"]
        assert result.complete and len(result.rankings) == 3
        assert server.count("openai") == result.files == 6
        assert server.count("anthropic") == 3
        anthropic = [r.body for r in server.requests if r.api == "anthropic"]
        assert anthropic[0]["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert anthropic[0]["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
        openai_body = next(r.body for r in server.requests if r.api == "openai")
        roles = [m["role"] for m in openai_body["messages"]]
        assert (
            roles == ["system", "user", "user"]
            and "<issue>" in openai_body["messages"][1]["content"]
        )
        ledger = {row.group[0]: row for row in store.ledger(group_by=("stage",))}
        # The shared prefix (instructions + issue) is read from the prompt cache after the first file,
        # and ranking runs 2 and 3 read what run 1 wrote.
        assert ledger["relevance"].calls == 6 and ledger["relevance"].cache_read_tokens > 0
        assert ledger["ranking"].cache_write_tokens > 0
        assert ledger["ranking"].cache_read_tokens >= 2 * ledger["ranking"].cache_write_tokens
        assert ledger["ranking"].cost_usd > 0

        # The same models served from elsewhere: every decision and ranking is reused.
        with FakeLLMServer(responder) as moved:
            config = load_config("verified", config_overrides(moved))
            stage = build_stage(config, ModelHub(config, store, {"anthropic": "k"}), store)
            again = await stage.run(ContextTask("i1", ISSUE, tmp_path / "repo", commit))
            assert moved.request_count == 0
            assert again.included == result.included


def dataset_row(instance_id: str, commit: str, patch: str) -> dict[str, Any]:
    return {
        "repo": "o/pkg",
        "instance_id": instance_id,
        "base_commit": commit,
        "patch": patch,
        "test_patch": "",
        "problem_statement": ISSUE,
        "version": "1.0",
        "environment_setup_commit": commit,
        "FAIL_TO_PASS": "[]",
        "PASS_TO_PASS": "[]",
    }


def gold_patch(path: str, first_line: str) -> str:
    return (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
        f"@@ -1,1 +1,1 @@\n-{first_line}\n+# fixed\n"
    )


@pytest.fixture
def cli_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    commit = make_repo(tmp_path / "work")
    mirror = tmp_path / "mirrors" / "o__pkg"
    git.Repo.clone_from(tmp_path / "work", mirror, bare=True).close()
    rows = [
        dataset_row("o__pkg-1", commit, gold_patch("pkg/dates.py", "import re")),
        dataset_row("o__pkg-2", commit, gold_patch("pkg/util.py", "def clamp(x, lo, hi):")),
    ]
    dataset = tmp_path / "dev.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return dataset, tmp_path / "mirrors", tmp_path / "run"


def test_cli_estimate_run_and_report(
    cli_setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, mirrors, run_dir = cli_setup
    runner = CliRunner()
    app = build_app()
    with FakeLLMServer(responder) as server:
        common = [
            "context",
            "--run-dir",
            str(run_dir),
            "--dataset",
            str(dataset),
            "--mirror-dir",
            str(mirrors),
        ]
        overrides = config_overrides(server)

        estimate = runner.invoke(app, [*common, "--estimate", "--json", *overrides])
        assert estimate.exit_code == 0, estimate.output
        data = json.loads(estimate.output)
        assert [row["files"] for row in data["instances"]] == [6, 6]
        assert (
            data["total"]["prompt_tokens"] > 0 and data["total"]["worst_case_usd"] is None
        )  # qwen is unpriced
        assert server.request_count == 0  # no model called

        missing_key = runner.invoke(app, [*common, "--instance-ids", "o__pkg-1", *overrides])
        assert missing_key.exit_code != 0 and "ANTHROPIC_API_KEY" in str(
            missing_key.exception or missing_key.output
        )

        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        run = runner.invoke(app, [*common, "--json", *overrides])
        assert run.exit_code == 0, run.output
        outcomes = json.loads(run.output)
        assert [o["result"]["included"][0]["path"] for o in outcomes] == ["pkg/dates.py"] * 2
        calls = server.request_count

        again = runner.invoke(
            app, [*common, "--json", "--instance-ids", "o__pkg-2,o__pkg-1", *overrides]
        )
        assert again.exit_code == 0, again.output
        assert server.request_count == calls  # everything came from the store

    report = runner.invoke(app, ["context", "--report", "--json", "--run-dir", str(run_dir)])
    assert report.exit_code == 0, report.output
    recall = json.loads(report.output)
    assert recall["instances"] == 2 and recall["recall"] == 0.5 and recall["read_recall"] == 1.0
    hits = {row["instance_id"]: row["hit"] for row in recall["rows"]}
    assert hits == {"o__pkg-1": True, "o__pkg-2": False}
    table = runner.invoke(
        app, ["context", "--report", "--run-dir", str(run_dir), "--dataset", str(dataset)]
    )
    assert table.exit_code == 0 and "recall 50.0% of 2 instance(s)" in table.output


def test_cli_reports_a_missing_mirror_per_instance(
    cli_setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    dataset, _mirrors, run_dir = cli_setup
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        build_app(),
        [
            "context",
            "--run-dir",
            str(run_dir),
            "--dataset",
            str(dataset),
            "--mirror-dir",
            str(tmp_path / "empty"),
            "--estimate",
        ],
    )
    assert result.exit_code == 1
    assert "no mirror of o/pkg" in result.output


def test_config_file_written_for_the_cli_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"context": {"test_dir_names": ["tests"], "keep_library_test_dirs": False}})
    )
    config = load_config(path)
    assert config.context.test_dir_names == ["tests"] and not config.context.keep_library_test_dirs
