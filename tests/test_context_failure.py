"""An instance whose context could not be made fails in the context stage, by cause; generation never starts.

The bundled example runs through ``run_instance`` with a relevance model that
answers prose (the model's failure) or cannot be reached (infrastructure).
No sandbox or environment is touched: both doubles fail the test if used.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from codemonkeys.config import load_config
from codemonkeys.examples import example_instance, example_mirror, example_spec_overrides
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer


class _Untouchable:
    """Environments and sandboxes: generation must never start."""

    async def environment(self, instance: Any) -> Any:
        raise AssertionError("the environment was requested after a failed context")

    def cleanup_leaked(self) -> list[str]:
        return []  # asked once when the run opens

    def create(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a sandbox was created after a failed context")


def _config(tmp_path: Path, relevance: str) -> Any:
    mirrors = tmp_path / "mirrors"
    example_mirror(mirrors)
    config = load_config(None, [
        f"models.relevance.model={relevance}", "models.ranking.model=oracle", "models.testing.model=oracle",
        "models.editing.model=oracle", "models.selection.model=oracle",
        "providers.openai-compatible.max_retries=0", "providers.openai-compatible.timeout_s=5",
        f"environment.mirror_dir={mirrors}", f"environment.cache_dir={tmp_path / 'cache'}",
    ])
    config.environment.spec_overrides = example_spec_overrides()
    return config


def _run(config: Any, run_dir: Path, retry_infra: bool = False) -> dict[str, str]:
    instance = example_instance()
    untouchable = _Untouchable()
    with open_services(config, run_dir, [instance], {}, sandboxes=untouchable, environments=untouchable) as services:  # type: ignore[arg-type]
        chosen = choose_instances(services.store, [instance], retry_infra=retry_infra)
        return asyncio.run(run_instances(services, chosen.run))


def _state(run_dir: Path) -> tuple[str, str, str, str]:
    with RunStore.open_existing(run_dir) as store:
        (state,) = store.instance_states()
        return state["stage"], state["status"], state["failure_kind"], state["failure"] or ""


def test_unreadable_relevance_answers_fail_the_context_stage_as_the_models_failure(tmp_path: Path) -> None:
    with FakeLLMServer(lambda body: "The file is not relevant, I think.") as server:
        config = _config(tmp_path, f"openai-compatible:small@{server.openai_base_url}")
        iid = example_instance().instance_id
        assert _run(config, tmp_path / "run") == {iid: "failed"}
        stage, status, kind, failure = _state(tmp_path / "run")
        assert (stage, status, kind) == ("context", "failed", "model")
        assert "no answer could be read" in failure
        calls = server.request_count
        # A model failure is not redone, not even with --retry-infra.
        assert _run(config, tmp_path / "run") == {}
        assert _run(config, tmp_path / "run", retry_infra=True) == {}
        assert server.request_count == calls


def test_an_unreachable_relevance_model_fails_as_infrastructure_and_retry_infra_redoes_it(tmp_path: Path) -> None:
    with FakeLLMServer(lambda body: "ok") as server:
        url = server.openai_base_url
    # The server is gone: every relevance call fails to connect.
    config = _config(tmp_path, f"openai-compatible:small@{url}")
    iid = example_instance().instance_id
    assert _run(config, tmp_path / "run") == {iid: "failed"}
    stage, status, kind, failure = _state(tmp_path / "run")
    assert (stage, status, kind) == ("context", "failed", "infra")
    assert "not reached" in failure
    assert _run(config, tmp_path / "run") == {}  # a plain rerun leaves it alone
    with RunStore.open_existing(tmp_path / "run") as store:
        before = len(store.calls())
    assert _run(config, tmp_path / "run", retry_infra=True) == {iid: "failed"}  # redone (still unreachable)
    with RunStore.open_existing(tmp_path / "run") as store:
        assert len(store.calls()) > before
