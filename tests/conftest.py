"""Shared fixtures. Keep this file additive: one section per concern.

Every test runs offline by construction: provider credentials are removed from
the environment and sockets may only connect to loopback addresses (and Unix
sockets), so no test can reach a real LLM provider, whatever it configures.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer

# --- no real providers, no network ---------------------------------------------

_PROVIDER_ENV_PREFIXES = ("ANTHROPIC_", "OPENAI_")


class NetworkBlockedError(RuntimeError):
    """A test tried to connect somewhere other than this machine's loopback."""


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths (str/bytes) and abstract sockets
        return True
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving and connecting to it would leave the machine


def _guarded(original: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise NetworkBlockedError(
                f"tests may only connect to loopback addresses, not {address!r}"
            )
        return original(self, address)

    connect.__guarded__ = True  # type: ignore[attr-defined]
    return connect


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove provider credentials and block non-loopback connections for every test."""
    for name in list(os.environ):
        if name.startswith(_PROVIDER_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setattr(socket.socket, "connect", _guarded(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(socket.socket.connect_ex))


# --- model layer -----------------------------------------------------------------


@pytest.fixture
def fake_llm_server() -> Iterator[FakeLLMServer]:
    """A fresh loopback Anthropic/OpenAI server (echo responder, no latency) for one test."""
    with FakeLLMServer() as server:
        yield server


# --- store -----------------------------------------------------------------------


@pytest.fixture
def run_store(tmp_path: Path) -> Iterator[RunStore]:
    """An empty run store in a temporary run directory, closed after the test."""
    store = RunStore.open(tmp_path / "run")
    try:
        yield store
    finally:
        store.close()
