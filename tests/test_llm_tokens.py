"""Offline token counting: cl100k from the bundled file, never the network."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest

from codemonkeys.llm import tokens
from codemonkeys.llm.tokens import ANTHROPIC_FACTOR, count_tokens, token_counter


def test_known_cl100k_counts_for_openai_models() -> None:
    # Reference token ids from the published cl100k_base vocabulary.
    assert tokens.encoding().encode_ordinary("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert count_tokens("hello world", "openai:gpt-4.1") == 2
    assert (
        count_tokens(
            "def f(x):\n    return x + 1\n",
            "openai-compatible:Qwen/Qwen2.5-Coder-32B@http://h:8000/v1",
        )
        == 11
    )
    assert count_tokens("", "openai:gpt-4.1") == 0


def test_anthropic_and_unknown_providers_use_the_documented_factor() -> None:
    text = "class Foo:\n    def bar(self) -> int:\n        return 42\n" * 20
    base = count_tokens(text, "openai:gpt-4.1")
    assert count_tokens(text, "anthropic:claude-sonnet-4-5") == math.ceil(base * ANTHROPIC_FACTOR)
    assert count_tokens(text, "scripted:x") == math.ceil(base * ANTHROPIC_FACTOR)
    assert count_tokens(text, "anthropic:claude-sonnet-4-5") > base


def test_special_token_text_counts_as_ordinary_text() -> None:
    assert count_tokens("<|endoftext|>", "openai:gpt-4.1") == 7


def test_token_counter_binds_the_model() -> None:
    counter = token_counter("openai:gpt-4o")
    assert counter("hello world") == 2


def test_encoding_loads_with_every_socket_blocked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"token counting tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # no earlier download cache to lean on
    tokens.encoding.cache_clear()
    try:
        assert count_tokens("hello world", "openai:gpt-4.1") == 2
    finally:
        tokens.encoding.cache_clear()
