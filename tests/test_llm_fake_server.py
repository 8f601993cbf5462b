"""The loopback server's wire formats, cache simulation and scripted failures (plain HTTP, no SDK)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from codemonkeys.testing import fake_wire as wire
from codemonkeys.testing.fake_server import FakeLLMServer, fake_server_process


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return (
            error.code,
            {k.lower(): v for k, v in error.headers.items()},
            json.loads(error.read()),
        )


def anthropic_body(
    *blocks: tuple[str, bool], system: str | None = None, **extra: Any
) -> dict[str, Any]:
    content = [
        {"type": "text", "text": text, **({"cache_control": {"type": "ephemeral"}} if mark else {})}
        for text, mark in blocks
    ]
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": content}],
    }
    if system is not None:
        body["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    return {**body, **extra}


def test_anthropic_breakpoint_caching_writes_then_reads(fake_llm_server: FakeLLMServer) -> None:
    url = fake_llm_server.url + "/v1/messages"
    system = "You are careful. " * 50
    shared = ("shared context " * 40, True)
    _, _, first = post(url, anthropic_body(shared, ("question one", False), system=system))
    _, _, second = post(url, anthropic_body(shared, ("question two", False), system=system))
    sys_tokens, shared_tokens = wire.block_tokens(system), wire.block_tokens(shared[0])
    assert first["usage"] == {
        "input_tokens": wire.block_tokens("question one"),
        "output_tokens": wire.block_tokens("question one"),
        "cache_creation_input_tokens": sys_tokens + shared_tokens,
        "cache_read_input_tokens": 0,
    }
    assert second["usage"]["cache_read_input_tokens"] == sys_tokens + shared_tokens
    assert second["usage"]["cache_creation_input_tokens"] == 0
    assert second["content"] == [{"type": "text", "text": "question two"}]
    # Same system prompt, different document: reads the system prefix, writes the rest.
    _, _, third = post(url, anthropic_body(("other document " * 30, True), system=system))
    assert third["usage"]["cache_read_input_tokens"] == sys_tokens
    assert third["usage"]["cache_creation_input_tokens"] == wire.block_tokens(
        "other document " * 30
    )


def test_anthropic_without_breakpoints_caches_nothing(fake_llm_server: FakeLLMServer) -> None:
    body = anthropic_body(("hello there " * 30, False))
    for _ in range(2):
        _, _, reply = post(fake_llm_server.url + "/messages", body)  # no /v1 prefix works too
    assert reply["usage"]["cache_read_input_tokens"] == 0
    assert reply["usage"]["cache_creation_input_tokens"] == 0
    assert reply["usage"]["input_tokens"] == wire.block_tokens("hello there " * 30)


def test_min_cache_tokens_like_the_real_minimum() -> None:
    with FakeLLMServer(min_cache_tokens=1024) as server:
        body = anthropic_body(("short " * 10, True))
        post(server.url + "/v1/messages", body)
        _, _, reply = post(server.url + "/v1/messages", body)
    assert reply["usage"]["cache_read_input_tokens"] == 0


def test_openai_automatic_prefix_caching(fake_llm_server: FakeLLMServer) -> None:
    url = fake_llm_server.openai_base_url + "/chat/completions"
    system = {"role": "system", "content": "Rules. " * 100}
    _, _, first = post(
        url, {"model": "gpt-test", "messages": [system, {"role": "user", "content": "one"}]}
    )
    _, _, second = post(
        url, {"model": "gpt-test", "messages": [system, {"role": "user", "content": "two"}]}
    )
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == wire.block_tokens(
        "Rules. " * 100
    )
    assert second["usage"]["prompt_tokens"] == wire.block_tokens("Rules. " * 100) + 1
    assert second["choices"][0]["message"] == {"role": "assistant", "content": "two"}
    assert fake_llm_server.count(wire.OPENAI) == 2 and fake_llm_server.count(wire.ANTHROPIC) == 0


def test_stop_sequences_and_max_tokens(fake_llm_server: FakeLLMServer) -> None:
    fake_llm_server.set_responder(lambda body: "alpha beta STOP gamma " * 20)
    _, _, stopped = post(
        fake_llm_server.url + "/v1/messages", anthropic_body(("q", False), stop_sequences=["STOP"])
    )
    assert stopped["content"][0]["text"] == "alpha beta "
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "STOP")
    url = fake_llm_server.openai_base_url + "/chat/completions"
    _, _, cut = post(
        url, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "q"}]}
    )
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    assert cut["choices"][0]["message"]["content"] == wire.truncate_tokens(
        "alpha beta STOP gamma " * 20, 5
    )


@pytest.mark.parametrize(
    ("status", "api_path", "expected_type"),
    [
        (529, "/v1/messages", "overloaded_error"),
        (429, "/v1/messages", "rate_limit_error"),
        (500, "/v1/messages", "api_error"),
        (429, "/v1/chat/completions", "requests"),
        (503, "/v1/chat/completions", "server_error"),
    ],
)
def test_scripted_failures_use_each_apis_error_shape(
    fake_llm_server: FakeLLMServer, status: int, api_path: str, expected_type: str
) -> None:
    fake_llm_server.fail_next(status, retry_after=0.25, retry_after_ms=250, times=2)
    body = anthropic_body(("q", False))
    replies = [post(fake_llm_server.url + api_path, body) for _ in range(3)]
    for code, headers, payload in replies[:2]:
        assert code == status
        assert headers["retry-after"] == "0.25" and headers["retry-after-ms"] == "250"
        assert payload["error"]["type"] == expected_type
        if api_path == "/v1/messages":
            assert payload["type"] == "error"
    assert replies[2][0] == 200
    assert fake_llm_server.request_count == 3


def test_failures_can_target_one_api(fake_llm_server: FakeLLMServer) -> None:
    fake_llm_server.fail_next(529, api=wire.ANTHROPIC)
    code, _, _ = post(
        fake_llm_server.openai_base_url + "/chat/completions", {"model": "m", "messages": []}
    )
    assert code == 200
    code, _, _ = post(fake_llm_server.url + "/v1/messages", anthropic_body(("q", False)))
    assert code == 529


def test_unknown_route_and_bad_json(fake_llm_server: FakeLLMServer) -> None:
    assert post(fake_llm_server.url + "/v1/embeddings", {})[0] == 404
    request = urllib.request.Request(fake_llm_server.url + "/v1/messages", data=b"{not json")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 400


def test_responder_dict_is_sent_verbatim_and_errors_become_500(
    fake_llm_server: FakeLLMServer,
) -> None:
    fake_llm_server.set_responder(lambda body: {"custom": True})
    assert post(fake_llm_server.url + "/v1/messages", anthropic_body(("q", False)))[2] == {
        "custom": True
    }

    def broken(body: dict[str, Any]) -> str:
        raise KeyError("boom")

    fake_llm_server.set_responder(broken)
    code, _, payload = post(fake_llm_server.url + "/v1/messages", anthropic_body(("q", False)))
    assert code == 500 and "KeyError" in payload["error"]["message"]


def test_runs_as_a_subprocess() -> None:
    with fake_server_process(latency_s=0.0) as url:
        assert url.startswith("http://127.0.0.1:")
        code, _, reply = post(
            url + "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "ping"}]},
        )
    assert code == 200 and reply["choices"][0]["message"]["content"] == "ping"
