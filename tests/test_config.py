"""Config loading, overrides and their errors; the ``config show`` and ``costs`` commands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from codemonkeys.cli.main import main
from codemonkeys.config import Config, dump_config, load_config
from codemonkeys.errors import ConfigError
from codemonkeys.store import CallRecord, RunStore


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- loading ------------------------------------------------------------------------


def test_shipped_config_loads_with_the_papers_models() -> None:
    config = load_config("verified")
    assert config.models.relevance.model.startswith(
        "openai-compatible:Qwen/Qwen2.5-Coder-32B-Instruct@"
    )
    assert config.models.editing.temperature == 0.5
    assert config.providers["anthropic"].limits.tokens_per_minute == 400_000
    assert config.pricing["claude-sonnet-4-5"].cache_write == 3.75


def test_overrides_are_yaml_typed() -> None:
    config = load_config(
        "verified",
        [
            "generation.trajectories=4",
            "budget.total_usd=12.5",
            "models.testing.model=openai:gpt-4.1",
            "cache.responses=false",
        ],
    )
    assert config.generation.trajectories == 4
    assert config.budget.total_usd == 12.5
    assert config.models.testing.model == "openai:gpt-4.1"
    assert config.cache.responses is False


def test_overriding_one_provider_keeps_the_others_defaults() -> None:
    config = load_config(None, ["providers.anthropic.max_retries=2"])
    assert config.providers["anthropic"].max_retries == 2
    assert config.providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert config.providers["openai"].api_key_env == "OPENAI_API_KEY"
    assert config.providers["openai-compatible"].limits.max_in_flight == 256


def test_user_pricing_extends_the_shipped_table(tmp_path: Path) -> None:
    path = write(
        tmp_path / "run.yaml",
        "pricing:\n  my-finetune: {input: 0.5, output: 1.5}\n  gpt-4.1: {input: 1.0, output: 4.0, cache_read: 0.25}\n",
    )
    config = load_config(path)
    assert config.pricing["my-finetune"].output == 1.5
    assert config.pricing["gpt-4.1"].input == 1.0
    assert "claude-sonnet-4-5" in config.pricing  # the shipped entries stay


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config("verified", ["generation.trajectories=3"])
    again = load_config(write(tmp_path / "dumped.yaml", dump_config(config)))
    assert again == config and isinstance(again, Config)


# --- errors -----------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "generation:\n  trajectoriez: 3\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert f"generation.trajectoriez: unknown key (in {path})" in str(raised.value)


def test_bad_type_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "models:\n  editing:\n    temperature: hot\n")
    with pytest.raises(
        ConfigError, match=r"models\.editing\.temperature: .*number.*\(in .*bad\.yaml\)"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("generation.bogus=1", "generation.bogus: unknown key (in override 'generation.bogus=1')"),
        (
            "generation.trajectories=lots",
            "generation.trajectories: Input should be a valid integer",
        ),
        ("generation.trajectories=0", "generation.trajectories: Input should be greater than 0"),
        ("providers.anthropic.limits.max_in_flight=-1", "providers.anthropic.limits.max_in_flight"),
    ],
)
def test_override_errors_name_the_key_and_the_override(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config("verified", [override])
    assert expected in str(raised.value)
    assert f"override {override!r}" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a: [unclosed\n", "not valid YAML"), ("- just\n- a list\n", "must be a mapping")],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path / "c.yaml", text))


def test_malformed_override_and_missing_config() -> None:
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_config(None, ["generation.trajectories"])
    with pytest.raises(ConfigError, match="not found.*verified"):
        load_config("no-such-config")


# --- the CLI ------------------------------------------------------------------------------


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("generation:\n  trajectoriez: 3\n", "generation.trajectoriez"),
        ("sandbox:\n  cpus: many\n", "sandbox.cpus"),
    ],
)
def test_config_show_bad_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = write(tmp_path / "bad.yaml", text)
    assert run_cli(["config", "show", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if key in line]
    assert len(lines) == 1 and str(path) in lines[0]
    assert "Traceback" not in err


def test_config_show_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["config", "show", "verified", "generation.trajectories=2", "--plain"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["generation"]["trajectories"] == 2
    assert shown["providers"]["anthropic"]["max_retries"] == 8


def test_costs_json_of_a_filled_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    with RunStore.open(run_dir) as store:

        def call(stage: str, model: str, cost: float | None, **extra: Any) -> None:
            record = CallRecord(
                stage,
                "django__django-11099",
                None,
                f"h{stage}{cost}",
                model,
                1000,
                100,
                0,
                0,
                cost,
                1.0,
            )
            store.record_call(dataclasses.replace(record, **extra))

        call("ranking", "anthropic:claude-sonnet-4-5", 0.0045)
        call(
            "ranking",
            "anthropic:claude-sonnet-4-5",
            0.0,
            cached=True,
            input_tokens=0,
            output_tokens=0,
        )
        call("editing", "anthropic:claude-sonnet-4-5", 0.012, cache_read_tokens=5000)
        call("relevance", "openai-compatible:qwen@http://h:8000/v1", None)
        call("editing", "anthropic:claude-sonnet-4-5", None, error_kind="infra", error="HTTP 529")
    assert run_cli(["costs", str(run_dir), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {(row["stage"], row["model"]): row for row in payload["rows"]}
    assert rows[("ranking", "anthropic:claude-sonnet-4-5")]["cached_calls"] == 1
    assert rows[("editing", "anthropic:claude-sonnet-4-5")]["cost_usd"] == 0.012
    assert rows[("editing", "anthropic:claude-sonnet-4-5")]["failed_calls"] == 1
    assert rows[("editing", "anthropic:claude-sonnet-4-5")]["cache_read_tokens"] == 5000
    assert rows[("relevance", "openai-compatible:qwen@http://h:8000/v1")]["unpriced_calls"] == 1
    total = payload["total"]
    assert (
        total["calls"] == 5
        and total["cost_usd"] == pytest.approx(0.0165)
        and total["unpriced_calls"] == 1
    )

    assert run_cli(["costs", str(run_dir), "--json", "--by", "instance"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["instance_id"] == "django__django-11099" and row["calls"] == 5


def test_costs_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["costs", str(tmp_path / "nowhere")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    RunStore.open(tmp_path / "run").close()
    assert run_cli(["costs", str(tmp_path / "run"), "--by", "colour"]) == 2
    assert "--by must be one of" in capsys.readouterr().err


def test_an_unknown_config_lists_only_run_configs() -> None:
    from codemonkeys.errors import ConfigError
    from codemonkeys.resources import find_config

    with pytest.raises(ConfigError) as raised:
        find_config("nosuch")
    assert "'example'" in str(raised.value) and "'verified'" in str(raised.value)
    assert "pricing" not in str(raised.value) and "context_windows" not in str(raised.value)
