"""Preflight: every endpoint checked once, before anything is cloned, built or paid."""

from __future__ import annotations

import socket

import pytest

from codemonkeys.config import load_config
from codemonkeys.errors import EndpointError, MissingCredentialsError, UnknownProviderError
from codemonkeys.llm.preflight import HttpEndpointProbe, ServerAnswer, check_model_strings, preflight
from codemonkeys.testing.fake_server import FakeLLMServer

_ORACLES = [f"models.{stage}.model=oracle" for stage in ("relevance", "ranking", "testing", "editing", "selection")]


def _config(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*_ORACLES, *overrides])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _CountingProbe:
    def __init__(self, answer: ServerAnswer) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def models(self, base_url: str, api_key: str | None) -> ServerAnswer:
        self.asked.append(base_url)
        return self.answer


def test_a_served_model_passes_and_each_server_is_asked_once() -> None:
    with FakeLLMServer(models=["qwen", "other"]) as server:
        url = server.openai_base_url
        config = _config(f"models.relevance.model=openai-compatible:qwen@{url}", f"models.ranking.model=openai-compatible:other@{url}")
        lines = preflight(config, {})
        assert lines == [f"relevance: openai-compatible:qwen@{url} (server answers)", f"ranking: openai-compatible:other@{url} (server answers)"]
    probe = _CountingProbe(ServerAnswer(models=("qwen", "other")))
    preflight(config, {}, probe=probe)
    assert probe.asked == [url]


def test_a_model_the_server_does_not_list_names_what_it_serves() -> None:
    with FakeLLMServer(models=["served-one"]) as server:
        config = _config(f"models.relevance.model=openai-compatible:typo@{server.openai_base_url}")
        with pytest.raises(EndpointError, match=r"models\.relevance\.model: .* does not serve 'typo' \(it serves 'served-one'\)"):
            preflight(config, {})


def test_a_stopped_server_fails_fast() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    config = _config(f"models.ranking.model=openai-compatible:m@{url}")
    with pytest.raises(EndpointError, match=r"models\.ranking\.model: no answer from .*/v1/models"):
        preflight(config, {}, probe=HttpEndpointProbe(timeout_s=2))


def test_a_server_without_a_listing_is_taken_at_its_word() -> None:
    with FakeLLMServer() as server:  # GET /v1/models is 404 there
        preflight(_config(f"models.relevance.model=openai-compatible:anything@{server.openai_base_url}"), {})


def test_keys_are_checked_before_servers() -> None:
    probe = _CountingProbe(ServerAnswer(problem="down"))
    config = _config("models.editing.model=anthropic:claude-sonnet-4-5", "models.relevance.model=openai-compatible:m@http://h:1/v1")
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        preflight(config, {}, probe=probe)
    assert probe.asked == []
    with pytest.raises(EndpointError, match="down"):
        preflight(config, {"ANTHROPIC_API_KEY": "k"}, probe=probe)


def test_model_strings_are_checked_as_the_run_checks_them() -> None:
    with pytest.raises(UnknownProviderError, match=r"models\.relevance\.model: .*needs a server"):
        check_model_strings(_config("models.relevance.model=openai-compatible:no-url"))
    with pytest.raises(UnknownProviderError, match=r"models\.testing\.model: unknown provider"):
        check_model_strings(_config("models.testing.model=vertex:gemini"))
