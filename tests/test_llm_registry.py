"""From config to gateways: secrets, SDK-backed models per stage, shared limiters."""

from __future__ import annotations

import pytest

from codemonkeys.config import ProviderSettings, load_config
from codemonkeys.errors import MissingCredentialsError, UnknownProviderError
from codemonkeys.llm.gateway import Limiter
from codemonkeys.llm.limiter import ProviderLimiter
from codemonkeys.llm.registry import ModelHub, resolve_secrets
from codemonkeys.llm.types import CallTag, ChatRequest, Message
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer


def test_missing_key_names_the_variable() -> None:
    config = load_config("verified")
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        resolve_secrets(config, {})
    assert resolve_secrets(config, {"ANTHROPIC_API_KEY": " sk-test "}) == {"anthropic": "sk-test"}
    # A run whose stages all use a local server needs no key at all.
    assert resolve_secrets(config, {}, stages=("relevance",)) == {}


async def test_hub_builds_sdk_models_per_stage(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    config = load_config(
        "verified",
        [
            "models.ranking.model=anthropic:claude-test",
            "models.editing.model=anthropic:claude-test",
            f"models.relevance.model=openai-compatible:qwen-test@{fake_llm_server.openai_base_url}",
            f"providers.anthropic.base_url={fake_llm_server.anthropic_base_url}",
            "pricing.claude-test={input: 3.0, output: 15.0}",
        ],
    )
    made: list[ProviderSettings] = []

    def limiter_factory(settings: ProviderSettings) -> Limiter:
        made.append(settings)
        return ProviderLimiter(settings.limits)

    hub = ModelHub(config, run_store, {"anthropic": "sk-test"}, limiter_factory=limiter_factory)
    request = ChatRequest((Message("user", "which files matter?"),))
    ranked = await hub.gateway("ranking").complete(request, CallTag("ranking", "i-1"))
    relevant = await hub.gateway("relevance").complete(request, CallTag("relevance", "i-1"))
    edited = await hub.gateway("editing").complete(
        ChatRequest((Message("user", "edit"),)), CallTag("editing", "i-1")
    )
    await hub.aclose()

    assert (ranked.text, relevant.text, edited.text) == (
        "which files matter?",
        "which files matter?",
        "edit",
    )
    assert [r.api for r in fake_llm_server.requests] == ["anthropic", "openai", "anthropic"]
    assert fake_llm_server.requests[0].headers["authorization"] == "Bearer sk-test"
    assert len(made) == 2  # one limiter per provider, shared by its stages
    assert made[0].limits.tokens_per_minute == 400_000
    costs = {call.stage: call.cost_usd for call in run_store.calls()}
    assert (
        costs["ranking"] is not None and costs["relevance"] is None
    )  # the local model has no price


async def test_the_oracle_is_a_provider_named_by_the_model_string(run_store: RunStore) -> None:
    """No factory holding gold patches is passed in: the hub builds it from the store's instance row."""
    from codemonkeys.examples import resolve_dataset
    from codemonkeys.oracle import OracleModel
    from codemonkeys.swebench.instances import load_instances

    dataset, extra = resolve_dataset("example", run_store.path.parent)
    [instance] = load_instances(dataset)
    run_store.add_instance(instance.instance_id, instance.repo, instance.model_dump(mode="json"))
    config = load_config("verified", [*extra, "models.relevance.model=oracle", "models.editing.model=oracle-noisy:0.25"])
    hub = ModelHub(config, run_store, {})
    relevance = hub.gateway("relevance", instance.instance_id)
    editing = hub.gateway("editing", instance.instance_id)
    assert isinstance(relevance.model, OracleModel) and isinstance(editing.model, OracleModel)
    assert editing.name == "oracle-noisy:0.25"
    gold = instance.patch.split("\n", 1)[0].split(" b/")[-1]
    answer = await relevance.complete(
        ChatRequest((Message("user", f'<file path="{gold}">\n...'),)), CallTag("relevance", instance.instance_id)
    )
    assert "<relevant>yes</relevant>" in answer.text
    with pytest.raises(UnknownProviderError, match="one instance"):
        hub.gateway("relevance")  # an oracle answers for an instance only
    with pytest.raises(UnknownProviderError):
        ModelHub(load_config("verified", ["models.relevance.model=nosuch:model"]), run_store, {}).gateway("relevance", "x")
