"""The gateway end to end: real SDK + loopback server + real store: costs, response cache, failures, limits."""

from __future__ import annotations

import dataclasses
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.config import Price, ProviderSettings
from codemonkeys.errors import ProviderError
from codemonkeys.llm.gateway import Gateway, reserved_prompt_tokens
from codemonkeys.llm.pricing import PriceTable
from codemonkeys.llm.providers.anthropic import AnthropicModel
from codemonkeys.llm.providers.openai import OpenAIModel
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.llm.types import CallTag, ChatRequest, Message
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer

SONNET_LIKE = Price(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)
TAG = CallTag(stage="editing", instance_id="astropy__astropy-12907", trajectory="edit-0")


def claude(server: FakeLLMServer, name: str = "claude-test", retries: int = 2) -> AnthropicModel:
    settings = ProviderSettings(base_url=server.anthropic_base_url, max_retries=retries)
    return AnthropicModel(parse_model_string(f"anthropic:{name}"), settings, "test-key")


def conversation(document: str, question: str) -> ChatRequest:
    return ChatRequest(
        messages=(
            Message("user", document, cache=True),
            Message("assistant", "Read it."),
            Message("user", question),
        ),
        system="You fix bugs. " * 30,
        system_cache=True,
        max_tokens=256,
    )


async def test_cost_of_cache_writes_and_reads(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    model = claude(fake_llm_server)
    gateway = Gateway(model, run_store, PriceTable({"claude-test": SONNET_LIKE}))
    document = "def parse(line):\n    return line.split(',')\n" * 60
    first = await gateway.complete(conversation(document, "Where is the bug?"), TAG)
    second = await gateway.complete(conversation(document, "And the fix?"), TAG)
    await model.aclose()
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    assert (
        second.usage.cache_read_tokens == first.usage.cache_write_tokens
        and second.usage.cache_write_tokens == 0
    )

    def by_hand(u: Any) -> float:
        return (
            u.input_tokens * 3.0
            + u.output_tokens * 15.0
            + u.cache_read_tokens * 0.30
            + u.cache_write_tokens * 3.75
        ) / 1e6

    calls = run_store.calls(stage="editing")
    assert [c.cost_usd for c in calls] == pytest.approx(
        [by_hand(first.usage), by_hand(second.usage)]
    )
    assert [(c.cache_read_tokens, c.cache_write_tokens) for c in calls] == [
        (0, first.usage.cache_write_tokens),
        (second.usage.cache_read_tokens, 0),
    ]
    assert calls[1].cost_usd < calls[0].cost_usd  # reading the cache is the cheap part
    (row,) = run_store.ledger(group_by=("stage", "instance_id"))
    assert row.group == ("editing", "astropy__astropy-12907") and row.calls == 2
    assert row.cost_usd == pytest.approx(by_hand(first.usage) + by_hand(second.usage))
    assert run_store.total_cost(instance_id="astropy__astropy-12907") == pytest.approx(row.cost_usd)


async def test_cache_prices_default_to_the_input_price(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    model = claude(fake_llm_server)
    gateway = Gateway(model, run_store, PriceTable({"claude-test": Price(input=2.0, output=10.0)}))
    document = "x = 1\n" * 200
    await gateway.complete(conversation(document, "a"), TAG)
    response = await gateway.complete(conversation(document, "b"), TAG)
    await model.aclose()
    u = response.usage
    expected = (
        (u.input_tokens + u.cache_read_tokens + u.cache_write_tokens) * 2.0 + u.output_tokens * 10.0
    ) / 1e6
    assert run_store.calls()[-1].cost_usd == pytest.approx(expected)


async def test_response_cache_hit_on_rerun(fake_llm_server: FakeLLMServer, tmp_path: Path) -> None:
    request = conversation("some file\n" * 50, "Summarize.")
    prices = PriceTable({"claude-test": SONNET_LIKE})
    with RunStore.open(tmp_path / "run") as store:
        model = claude(fake_llm_server)
        fresh = await Gateway(model, store, prices).complete(request, TAG)
        await model.aclose()
    assert fake_llm_server.request_count == 1

    with RunStore.open(tmp_path / "run") as store:  # the rerun: a new process would do exactly this
        model = claude(fake_llm_server)
        gateway = Gateway(model, store, prices)
        again = await gateway.complete(request, TAG)
        other_sample = await gateway.complete(dataclasses.replace(request, sample=1), TAG)
        await model.aclose()
        calls = store.calls()
        (row,) = store.ledger(group_by=("stage",))
    assert (again.text, again.usage, again.cached) == (fresh.text, fresh.usage, True)
    assert not other_sample.cached
    assert fake_llm_server.request_count == 2  # the rerun paid only for the new sample
    assert [(c.cached, c.cost_usd == 0.0, c.input_tokens == 0) for c in calls] == [
        (False, False, False),
        (True, True, True),
        (False, False, False),
    ]
    assert row.cached_calls == 1 and row.calls == 3


async def test_cache_can_be_turned_off(fake_llm_server: FakeLLMServer, run_store: RunStore) -> None:
    model = claude(fake_llm_server)
    gateway = Gateway(model, run_store, PriceTable({}), use_cache=False)
    request = conversation("doc", "q")
    await gateway.complete(request, TAG)
    await gateway.complete(request, TAG)
    await model.aclose()
    assert (
        fake_llm_server.request_count == 2
        and run_store.cached_response(request.key(model.name)) is None
    )


async def test_unknown_model_cost_is_unknown_not_zero(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    spec = parse_model_string(f"openai-compatible:my-finetune@{fake_llm_server.openai_base_url}")
    model = OpenAIModel(spec, ProviderSettings(), None)
    gateway = Gateway(model, run_store, PriceTable({"claude-test": SONNET_LIKE}))
    await gateway.complete(ChatRequest((Message("user", "hello"),)), CallTag("relevance", "i-1"))
    await model.aclose()
    (call,) = run_store.calls()
    assert call.cost_usd is None and call.input_tokens > 0
    (row,) = run_store.ledger(group_by=("model",))
    assert row.unpriced_calls == 1 and row.group == (spec.label,)


async def test_failed_call_is_recorded_and_not_cached(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    model = claude(fake_llm_server, retries=1)
    gateway = Gateway(model, run_store, PriceTable({"claude-test": SONNET_LIKE}))
    request = conversation("doc", "q")
    fake_llm_server.fail_next(529, retry_after=0.01, times=2)
    with pytest.raises(ProviderError) as raised:
        await gateway.complete(request, TAG)
    assert raised.value.status_code == 529
    answer = await gateway.complete(request, TAG)  # a rerun asks again: failures are never cached
    await model.aclose()
    failed, succeeded = run_store.calls()
    assert (failed.error_kind, failed.cost_usd, failed.cached) == ("infra", None, False)
    assert "529" in (failed.error or "")
    assert succeeded.error_kind is None and answer.text == "q"
    (row,) = run_store.ledger(group_by=("stage",))
    assert row.failed_calls == 1 and row.unpriced_calls == 0


async def test_unexpected_exceptions_become_provider_errors(run_store: RunStore) -> None:
    class Broken:
        name = "scripted:broken"

        async def complete(self, request: ChatRequest) -> Any:
            raise ValueError("socket fell over")

    with pytest.raises(ProviderError, match="ValueError: socket fell over"):
        await Gateway(Broken(), run_store, PriceTable({})).complete(
            ChatRequest((Message("user", "x"),)), TAG
        )
    assert run_store.calls()[0].error_kind == "infra"


class RecordingLimiter:
    """Records the estimate each slot reserves and the usage the gateway settles."""

    def __init__(self) -> None:
        self.reserved: list[int] = []
        self.settled: list[int] = []

    def slot(self, tokens: int) -> Any:
        self.reserved.append(tokens)
        limiter = self

        class Permit:
            def settle(self, actual: int) -> None:
                limiter.settled.append(actual)

        @asynccontextmanager
        async def scope() -> Any:
            yield Permit()

        return scope()


async def test_limiter_gets_the_estimate_then_the_real_usage(
    fake_llm_server: FakeLLMServer, run_store: RunStore
) -> None:
    model = claude(fake_llm_server)
    limiter = RecordingLimiter()
    gateway = Gateway(model, run_store, PriceTable({}), limiter=limiter)
    request = conversation("body " * 100, "q")
    response = await gateway.complete(request, TAG)
    await gateway.complete(request, TAG)  # a cache hit takes no slot
    await model.aclose()
    assert limiter.reserved == [reserved_prompt_tokens(request, model.name) + request.max_tokens]
    assert limiter.settled == [response.usage.prompt_tokens + response.usage.output_tokens]


# --- the request key -----------------------------------------------------------------------


def test_request_key_depends_on_every_field_and_the_model() -> None:
    base = ChatRequest((Message("user", "a"),))
    variants = {
        "messages": (Message("user", "b"),),
        "system": "s",
        "max_tokens": 1,
        "temperature": 0.7,
        "stop": ("x",),
        "sample": 3,
        "system_cache": True,
    }
    assert set(variants) == {f.name for f in dataclasses.fields(ChatRequest)}, (
        "a new field must change the key"
    )
    keys = {base.key("m")} | {
        dataclasses.replace(base, **{k: v}).key("m") for k, v in variants.items()
    }
    keys |= {
        ChatRequest((Message("user", "a", cache=True),)).key("m"),
        ChatRequest((Message("assistant", "a"),)).key("m"),
    }
    assert len(keys) == len(variants) + 3
    assert base.key("m") != base.key("n") and base.key("m") == ChatRequest(
        (Message("user", "a"),)
    ).key("m")


def test_request_key_matches_the_asdict_definition() -> None:
    import hashlib

    request = ChatRequest(
        (Message("user", "é", cache=True), Message("assistant", "b")), system="s", stop=("x", "y")
    )
    payload = {"model": "m", **dataclasses.asdict(request)}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert request.key("m") == hashlib.sha256(blob.encode("utf-8")).hexdigest()
