"""Wiring a run's services from its config: store, models, budget, sandboxes, environments, stages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..budget import BudgetGuard
from ..config import Config, dump_config
from ..context.batch import build_stage
from ..env.specs import SpecRegistry
from ..llm.registry import SDK_PROVIDERS, STAGES, ExtraModelFactory, ModelHub, check_prices, resolve_secrets
from ..llm.server_info import HttpWindowProbe
from ..llm.spec import parse_model_string
from ..llm.windows import ResolvedWindow, WindowProbe, resolve_context_windows
from ..sandbox.base import SandboxFactory
from ..sandbox.factory import make_sandbox_factory
from ..store import RunStore
from ..swebench.instances import Instance
from ..swebench.repo import RepoSource
from .instance import EnvironmentProvider, PipelineEvent, Services

log = logging.getLogger(__name__)


def stages_needing_keys(config: Config) -> tuple[str, ...]:
    """Stages whose model is an SDK provider (oracles and scripted models need no key)."""
    return tuple(
        stage for stage in STAGES
        if parse_model_string(getattr(config.models, stage).model).provider in SDK_PROVIDERS
    )


def spec_registry(config: Config) -> SpecRegistry:
    return SpecRegistry.default(config.environment.spec_overrides, config.environment.spec_files)


def record_run_config(store: RunStore, config: Config) -> None:
    """Keep the resolved config of every attempt, newest last, so a report can say what ran."""
    history = json.loads(store.get_meta("config_history") or "[]")
    text = dump_config(config)
    if not history or history[-1] != text:
        history.append(text)
        store.set_meta("config_history", json.dumps(history))


def settle_windows(
    config: Config, secrets: Mapping[str, str], probe: WindowProbe | None = None
) -> tuple[Config, list[ResolvedWindow]]:
    """The config with every stage's context window filled (config, server, shipped table)."""
    return resolve_context_windows(config, probe or HttpWindowProbe(api_key=secrets.get("openai-compatible")))


def record_windows(store: RunStore, windows: Sequence[ResolvedWindow]) -> None:
    """Keep the windows this attempt resolved, for status and the report."""
    store.set_meta("context_windows", json.dumps([w.as_dict() for w in windows]))


def repo_source(config: Config) -> RepoSource:
    """Where this machine finds the instances' repositories (mirrors, then its clone cache)."""
    return RepoSource(
        mirror_dir=config.environment.mirror_dir,
        cache_dir=(config.environment.cache_dir or Path.home() / ".cache" / "codemonkeys") / "repos",
    )


@dataclass
class RunCore:
    """What every command that calls models shares: the store, the models, the budget, the repositories."""

    config: Config
    store: RunStore
    hub: ModelHub
    budget: BudgetGuard
    repos: RepoSource


@contextmanager
def open_run(
    config: Config,
    run_dir: Path,
    instances: Sequence[Instance],
    environ: Mapping[str, str],
    *,
    stages: tuple[str, ...] = STAGES,
    window_probe: WindowProbe | None = None,
    extra_models: ExtraModelFactory | None = None,
) -> Iterator[RunCore]:
    """The store (instances registered), the models of ``stages`` behind the budget, the repository cache.

    Prices and keys are checked for ``stages`` before anything else happens.
    """
    check_prices(config, stages)
    secrets = resolve_secrets(config, environ, tuple(s for s in stages_needing_keys(config) if s in stages))
    config, windows = settle_windows(config, secrets, window_probe)
    store = RunStore.open(run_dir)
    try:
        record_run_config(store, config)
        record_windows(store, windows)
        for instance in instances:
            store.add_instance(instance.instance_id, instance.repo, instance.model_dump(mode="json"))
        budget = BudgetGuard.for_run(config.budget, store)
        hub = ModelHub(config, store, secrets, budget=budget, extra_models=extra_models)
        yield RunCore(config=config, store=store, hub=hub, budget=budget, repos=repo_source(config))
    finally:
        store.close()


@contextmanager
def open_services(
    config: Config,
    run_dir: Path,
    instances: Sequence[Instance],
    environ: Mapping[str, str],
    *,
    stages: tuple[str, ...] = STAGES,
    events: Callable[[PipelineEvent], None] = lambda event: None,
    sandboxes: SandboxFactory | None = None,
    environments: EnvironmentProvider | None = None,
    window_probe: WindowProbe | None = None,
    extra_models: ExtraModelFactory | None = None,
) -> Iterator[Services]:
    """Everything a run (or ``generate``, ``select``, ``ensemble``) needs, closed again when it ends.

    The environment provider follows the sandbox backend (images for Docker,
    local environments for bubblewrap) and builds from the same repository
    cache the context stage reads.
    """
    with open_run(
        config, run_dir, instances, environ, stages=stages, window_probe=window_probe, extra_models=extra_models
    ) as core:
        factory = sandboxes or make_sandbox_factory(core.config.sandbox)
        cleanup = getattr(factory, "cleanup_leaked", None)
        if cleanup is not None:
            removed = cleanup()
            if removed:
                log.warning("removed %d sandbox(es) left behind by a dead process", len(removed))
        if environments is None:
            from .environments import environments_for

            environments = environments_for(factory, core.config, source=core.repos)
        yield Services(
            config=core.config, store=core.store, hub=core.hub, budget=core.budget, repos=core.repos,
            environments=environments, sandboxes=factory, context=build_stage(core.config, core.hub, core.store),
            events=events,
        )
