"""The SDK-backed providers, end to end through the official clients against the loopback server."""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import Any

import pytest

from codemonkeys.config import ProviderSettings
from codemonkeys.errors import ContextLimitReached, FailureKind, ProviderError, failure_kind
from codemonkeys.llm.providers.anthropic import AnthropicModel
from codemonkeys.llm.providers.openai import OpenAIModel
from codemonkeys.llm.spec import parse_model_string
from codemonkeys.llm.tokens import count_tokens
from codemonkeys.llm.types import ChatRequest, Message, Usage
from codemonkeys.testing import fake_wire as wire
from codemonkeys.testing.fake_server import FakeLLMServer

Model = AnthropicModel | OpenAIModel


def anthropic(server: FakeLLMServer, name: str = "claude-test", **settings: Any) -> AnthropicModel:
    spec = parse_model_string(f"anthropic:{name}")
    return AnthropicModel(
        spec, ProviderSettings(base_url=server.anthropic_base_url, **settings), "test-key"
    )


def openai_compatible(
    server: FakeLLMServer, name: str = "qwen-test", **settings: Any
) -> OpenAIModel:
    spec = parse_model_string(f"openai-compatible:{name}@{server.openai_base_url}")
    return OpenAIModel(spec, ProviderSettings(**settings), None)


def openai_official(server: FakeLLMServer, name: str = "gpt-test", **settings: Any) -> OpenAIModel:
    spec = parse_model_string(f"openai:{name}")
    return OpenAIModel(
        spec, ProviderSettings(base_url=server.openai_base_url, **settings), "test-key"
    )


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), **fields)


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the SDKs announced before each retry (both log one INFO line per retry)."""
    found = (
        re.search(r"Retrying request .*?in ([\d.]+) seconds", r.getMessage())
        for r in caplog.records
    )
    return [float(match.group(1)) for match in found if match]


def test_tests_cannot_reach_a_real_provider() -> None:
    # The guard must be in place before trying, so no packet can leave even if it were broken.
    assert getattr(socket.socket.connect, "__guarded__", False)
    assert not [name for name in os.environ if name.startswith(("ANTHROPIC_", "OPENAI_"))]
    with socket.socket() as sock, pytest.raises(RuntimeError, match="loopback"):
        sock.connect(("192.0.2.1", 443))


# --- request shapes ---------------------------------------------------------------------


async def test_anthropic_request_carries_cache_breakpoints(fake_llm_server: FakeLLMServer) -> None:
    model = anthropic(fake_llm_server)
    messages = tuple(
        Message("user" if i % 2 == 0 else "assistant", f"turn {i}", cache=i != 2) for i in range(7)
    )
    request = ChatRequest(
        messages, system="be brief", system_cache=True, stop=("END",), temperature=0.5
    )
    response = await model.complete(request)
    await model.aclose()
    body = fake_llm_server.requests[0].body
    assert response.text == "turn 6"
    assert (
        body["model"] == "claude-test"
        and body["temperature"] == 0.5
        and body["stop_sequences"] == ["END"]
    )
    # Six breakpoints asked for (system + turns 0,1,3,4,5,6): the first two are dropped.
    assert "cache_control" not in body["system"][0]
    marked = [i for i, m in enumerate(body["messages"]) if isinstance(m["content"], list)]
    assert marked == [3, 4, 5, 6]
    assert all(
        m["content"][-1]["cache_control"] == {"type": "ephemeral"} for m in body["messages"][3:]
    )
    assert body["messages"][0] == {"role": "user", "content": "turn 0"}


async def test_anthropic_system_breakpoint_and_no_temperature(
    fake_llm_server: FakeLLMServer,
) -> None:
    model = anthropic(fake_llm_server, send_temperature=False)
    await model.complete(
        ChatRequest((Message("user", "q", cache=True),), system="sys", system_cache=True)
    )
    await model.aclose()
    body = fake_llm_server.requests[0].body
    assert body["system"] == [
        {"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}
    ]
    assert "temperature" not in body


async def test_openai_request_shapes(fake_llm_server: FakeLLMServer) -> None:
    compatible, official, reasoning = (
        openai_compatible(fake_llm_server),
        openai_official(fake_llm_server),
        openai_official(fake_llm_server, "o4-mini"),
    )
    request = ChatRequest(
        (Message("user", "q", cache=True),), system="sys", max_tokens=77, stop=("X",)
    )
    for model in (compatible, official, reasoning):
        await model.complete(request)
        await model.aclose()
    bodies = [r.body for r in fake_llm_server.requests]
    assert bodies[0]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
    ]
    assert bodies[0]["max_tokens"] == 77 and "max_completion_tokens" not in bodies[0]
    assert bodies[0]["temperature"] == 0.0 and bodies[0]["stop"] == ["X"]
    assert bodies[1]["max_completion_tokens"] == 77 and "max_tokens" not in bodies[1]
    assert "temperature" not in bodies[2]


async def test_sdks_never_read_provider_environment(
    fake_llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://192.0.2.1")
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://192.0.2.1/v1")
    spec = parse_model_string("anthropic:claude-test")
    model = AnthropicModel(
        spec, ProviderSettings(base_url=fake_llm_server.anthropic_base_url), None
    )
    await model.complete(ask("hi"))
    await model.aclose()
    other = openai_compatible(fake_llm_server)
    await other.complete(ask("hi"))
    await other.aclose()
    for recorded in fake_llm_server.requests:
        assert "from-env" not in " ".join(recorded.headers.values())


# --- usage ------------------------------------------------------------------------------------


async def test_anthropic_usage_maps_cache_reads_and_writes(fake_llm_server: FakeLLMServer) -> None:
    model = anthropic(fake_llm_server)
    document = "def handler(event):\n    return event['id']\n" * 40
    first = await model.complete(
        ChatRequest(
            (
                Message("user", document, cache=True),
                Message("assistant", "ok"),
                Message("user", "why?"),
            )
        )
    )
    second = await model.complete(
        ChatRequest(
            (
                Message("user", document, cache=True),
                Message("assistant", "ok"),
                Message("user", "how?"),
            )
        )
    )
    await model.aclose()
    doc_tokens = wire.block_tokens(document)
    tail = wire.block_tokens("ok") + wire.block_tokens("why?")
    assert first.usage == Usage(
        input_tokens=tail, output_tokens=wire.block_tokens("why?"), cache_write_tokens=doc_tokens
    )
    assert second.usage.cache_read_tokens == doc_tokens and second.usage.cache_write_tokens == 0
    assert second.usage.input_tokens == wire.block_tokens("ok") + wire.block_tokens("how?")
    assert first.stop_reason == "end_turn" and first.model == "anthropic:claude-test"


async def test_openai_usage_takes_cached_tokens_out_of_input(
    fake_llm_server: FakeLLMServer,
) -> None:
    model = openai_compatible(fake_llm_server)
    system = "You rank files by relevance. " * 40
    await model.complete(ask("first", system=system))
    second = await model.complete(ask("second", system=system))
    await model.aclose()
    assert second.usage == Usage(
        input_tokens=wire.block_tokens("second"),
        output_tokens=wire.block_tokens("second"),
        cache_read_tokens=wire.block_tokens(system),
    )
    assert second.stop_reason == "stop"


# --- retries and failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "status"),
    [(anthropic, 429), (anthropic, 529), (openai_compatible, 429), (openai_compatible, 503)],
    ids=["anthropic-429", "anthropic-529", "openai-429", "openai-503"],
)
async def test_retries_honour_retry_after(
    fake_llm_server: FakeLLMServer, caplog: pytest.LogCaptureFixture, make: Any, status: int
) -> None:
    caplog.set_level(logging.INFO)
    model: Model = make(fake_llm_server, max_retries=3)
    fake_llm_server.fail_next(status, retry_after=0.05, times=2)
    response = await model.complete(ask("after the storm"))
    await model.aclose()
    assert response.text == "after the storm"
    assert fake_llm_server.request_count == 3
    assert retry_waits(caplog) == [0.05, 0.05]
    assert [r.headers["x-stainless-retry-count"] for r in fake_llm_server.requests] == [
        "0",
        "1",
        "2",
    ]


async def test_retry_after_ms_is_honoured(
    fake_llm_server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    model = anthropic(fake_llm_server, max_retries=2)
    fake_llm_server.fail_next(529, retry_after_ms=30, times=1)
    await model.complete(ask("x"))
    await model.aclose()
    assert retry_waits(caplog) == [0.03]


@pytest.mark.parametrize("make", [anthropic, openai_compatible], ids=["anthropic", "openai"])
async def test_exhausted_retries_become_a_typed_infra_failure(
    fake_llm_server: FakeLLMServer, make: Any
) -> None:
    model: Model = make(fake_llm_server, max_retries=2)
    fake_llm_server.fail_next(529 if make is anthropic else 500, retry_after=0.01, times=3)
    with pytest.raises(ProviderError) as raised:
        await model.complete(ask("x"))
    await model.aclose()
    assert raised.value.status_code == (529 if make is anthropic else 500)
    assert failure_kind(raised.value) is FailureKind.INFRA
    assert fake_llm_server.request_count == 3


@pytest.mark.parametrize("make", [anthropic, openai_compatible], ids=["anthropic", "openai"])
async def test_client_errors_are_not_retried(fake_llm_server: FakeLLMServer, make: Any) -> None:
    model: Model = make(fake_llm_server, max_retries=5)
    fake_llm_server.fail_next(400, message="max_tokens: must be at least 1")
    with pytest.raises(ProviderError, match="must be at least 1") as raised:
        await model.complete(ask("x"))
    await model.aclose()
    assert raised.value.status_code == 400 and fake_llm_server.request_count == 1


# --- context-length refusals: a model-side outcome in every vendor's wording --------------

_LLAMA_CPP_TOO_LONG = {  # llama.cpp's C++ server (tools/server/utils.hpp, format_error_response)
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5000,
        "n_ctx": 4096,
    }
}
_OPENAI_TOO_LONG = {  # OpenAI's answer; llama-cpp-python's server sends the same (captured from it)
    "error": {
        "message": "This model's maximum context length is 512 tokens. However, you requested 851 tokens "
        "(831 in the messages, 20 in the completion). Please reduce the length of the messages or completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
_VLLM_TOO_LONG = (
    "This model's maximum context length is 4096 tokens. However, you requested 5096 tokens "
    "(4096 in the messages, 1000 in the completion). Please reduce the length of the messages or completion."
)
CONTEXT_REFUSALS = [
    pytest.param(anthropic, 400, "prompt is too long: 210000 tokens > 200000 maximum", None, 210000, 200000, id="anthropic"),
    pytest.param(openai_official, 400, None, _OPENAI_TOO_LONG, 831, 512, id="openai-and-llama-cpp-python"),
    pytest.param(openai_compatible, 400, _VLLM_TOO_LONG, None, 4096, 4096, id="vllm"),
    pytest.param(openai_compatible, 400, "The decoder prompt (length 5000) is longer than the maximum model length of 4096. "
                 "Make sure that `max_model_len` is no smaller than the number of text tokens.", None, 5000, 4096, id="vllm-v1"),
    pytest.param(openai_compatible, 400, "The input (5000 tokens) is longer than the model's context length (4096 tokens).",
                 None, 5000, 4096, id="sglang"),
    pytest.param(openai_compatible, 400, None, _LLAMA_CPP_TOO_LONG, 5000, 4096, id="llama-cpp-server"),
    pytest.param(openai_compatible, 400, "request (5000 tokens) exceeds the available context size (4096 tokens), "
                 "try increasing it", None, 5000, 4096, id="llama-cpp-server-newer"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "status", "message", "body", "prompt", "window"), CONTEXT_REFUSALS)
async def test_context_length_refusals_are_context_limit_reached(
    fake_llm_server: FakeLLMServer,
    make: Any,
    status: int,
    message: str | None,
    body: dict[str, Any] | None,
    prompt: int,
    window: int,
) -> None:
    model: Model = make(fake_llm_server, max_retries=5)
    fake_llm_server.fail_next(status, message=message, body=body)
    with pytest.raises(ContextLimitReached) as raised:
        await model.complete(ask("a very long prompt"))
    await model.aclose()
    assert not isinstance(raised.value, ProviderError)
    assert failure_kind(raised.value) is FailureKind.MODEL
    assert (raised.value.prompt_tokens, raised.value.window) == (prompt, window)
    assert fake_llm_server.request_count == 1  # never retried


@pytest.mark.parametrize("make", [anthropic, openai_compatible], ids=["anthropic", "openai"])
async def test_other_errors_mentioning_length_stay_infrastructure(
    fake_llm_server: FakeLLMServer, make: Any
) -> None:
    model: Model = make(fake_llm_server, max_retries=0)
    # A server error that happens to quote the wording is the server's trouble, not the prompt's.
    fake_llm_server.fail_next(500, message="This model's maximum context length is 4096 tokens")
    with pytest.raises(ProviderError) as raised:
        await model.complete(ask("x"))
    fake_llm_server.fail_next(400, message="temperature: must be at most 2")
    with pytest.raises(ProviderError):
        await model.complete(ask("x"))
    await model.aclose()
    assert failure_kind(raised.value) is FailureKind.INFRA


async def test_timeouts_are_retried_then_reported(fake_llm_server: FakeLLMServer) -> None:
    model = openai_compatible(fake_llm_server, max_retries=1, timeout_s=0.3)
    fake_llm_server.stall_next(1.5)
    assert (await model.complete(ask("late"))).text == "late"
    fake_llm_server.stall_next(1.5, times=2)
    with pytest.raises(ProviderError, match="timed out") as raised:
        await model.complete(ask("later"))
    await model.aclose()
    assert raised.value.status_code is None


async def test_unreachable_server_is_a_provider_error() -> None:
    with FakeLLMServer() as server:
        model = anthropic(server, max_retries=0)
    with pytest.raises(ProviderError, match="cannot connect"):
        await model.complete(ask("anyone?"))
    await model.aclose()


# --- odd answers --------------------------------------------------------------------------


def _message(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test", "content": content,
        "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0},
    }  # fmt: skip


async def test_anthropic_no_content_blocks_is_an_error_but_empty_text_is_an_answer(
    fake_llm_server: FakeLLMServer,
) -> None:
    model = anthropic(fake_llm_server)
    fake_llm_server.set_responder(lambda body: _message([]))
    with pytest.raises(ProviderError, match="no content blocks"):
        await model.complete(ask("x"))
    fake_llm_server.set_responder(lambda body: _message([{"type": "text", "text": ""}]))
    response = await model.complete(ask("x"))
    await model.aclose()
    assert response.text == "" and response.usage == Usage(input_tokens=3)


def _completion(message: dict[str, Any] | None, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [] if message is None else [{"index": 0, "message": message, "finish_reason": "stop"}],
    }  # fmt: skip
    if usage:
        body["usage"] = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    return body


async def test_openai_odd_answers(fake_llm_server: FakeLLMServer) -> None:
    model = openai_compatible(fake_llm_server)
    fake_llm_server.set_responder(lambda body: _completion(None))
    with pytest.raises(ProviderError, match="no choices"):
        await model.complete(ask("x"))
    fake_llm_server.set_responder(lambda body: _completion({"role": "assistant", "content": None}))
    with pytest.raises(ProviderError, match="without content"):
        await model.complete(ask("x"))
    fake_llm_server.set_responder(
        lambda body: _completion({"role": "assistant", "content": None, "refusal": "no."})
    )
    refused = await model.complete(ask("x"))
    assert (refused.text, refused.stop_reason) == ("no.", "refusal")
    fake_llm_server.set_responder(
        lambda body: _completion({"role": "assistant", "content": "fine"}, usage=False)
    )
    request = ask("how many tokens is this?")
    estimated = await model.complete(request)
    await model.aclose()
    label = model.name
    assert estimated.usage == Usage(
        count_tokens(request.prompt_text(), label), count_tokens("fine", label), estimated=True
    )


async def test_openai_usage_is_the_servers_or_a_marked_estimate(fake_llm_server: FakeLLMServer) -> None:
    model = openai_compatible(fake_llm_server)
    request = ask("how many tokens is this?")
    label = model.name
    prompt = count_tokens(request.prompt_text(), label)
    answers = {
        "server": _completion({"role": "assistant", "content": "fine"}),
        "no prompt count": {**_completion({"role": "assistant", "content": "fine"}),
                            "usage": {"completion_tokens": 2, "total_tokens": 2}},
        "empty answer, no usage": _completion({"role": "assistant", "content": ""}, usage=False),
    }  # fmt: skip
    seen = {}
    for name, body in answers.items():
        fake_llm_server.set_responder(lambda _, body=body: body)
        seen[name] = (await model.complete(request)).usage
    await model.aclose()
    assert seen["server"] == Usage(10, 2)  # the server's own numbers, not ours
    assert seen["no prompt count"] == Usage(prompt, count_tokens("fine", label), estimated=True)
    # Never booked as free: the end-of-text token was generated even for an empty answer.
    assert seen["empty answer, no usage"] == Usage(prompt, 1, estimated=True)
    # The mark survives the response cache.
    from codemonkeys.llm.types import ChatResponse

    assert ChatResponse.from_json(ChatResponse("x", seen["no prompt count"]).to_json()).usage.estimated


async def test_estimated_usage_is_marked_in_the_ledger(fake_llm_server: FakeLLMServer, run_store: Any) -> None:
    from codemonkeys.llm.gateway import Gateway
    from codemonkeys.llm.pricing import PriceTable
    from codemonkeys.llm.types import CallTag

    model = openai_compatible(fake_llm_server)
    gateway = Gateway(model, run_store, PriceTable({}))
    tag = CallTag(stage="editing", instance_id="i")
    await gateway.complete(ask("from the server"), tag)
    fake_llm_server.set_responder(lambda body: _completion({"role": "assistant", "content": "fine"}, usage=False))
    await gateway.complete(ask("estimated"), tag)
    await gateway.complete(ask("estimated"), tag)  # a cache hit: no tokens, nothing estimated
    await model.aclose()
    server, estimated, cached = run_store.calls()
    assert not server.usage_estimated and server.input_tokens > 0
    assert estimated.usage_estimated and estimated.input_tokens > 0 and estimated.output_tokens > 0
    assert cached.cached and not cached.usage_estimated


def test_stores_without_the_estimated_column_are_migrated(tmp_path: Any) -> None:
    import sqlite3

    from codemonkeys.store import RunStore
    from codemonkeys.store.records import CallRecord

    with RunStore.open(tmp_path) as store:
        store.record_call(CallRecord("editing", "i", None, "h", "m", input_tokens=5))
    with sqlite3.connect(tmp_path / "run.sqlite") as conn:
        conn.execute("ALTER TABLE llm_calls DROP COLUMN usage_estimated")
    with RunStore.open_existing(tmp_path) as store:
        store.record_call(CallRecord("editing", "i", None, "h2", "m", input_tokens=7, usage_estimated=True))
        assert [c.usage_estimated for c in store.calls()] == [False, True]
