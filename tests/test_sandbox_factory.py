"""Backend choice: Docker when a daemon answers, else bubblewrap, else a clear error."""

from __future__ import annotations

import pytest
from sandbox_support import docker_client as _docker_client  # noqa: F401

from codemonkeys.config import SandboxConfig
from codemonkeys.errors import SandboxError
from codemonkeys.sandbox.bwrap_backend import BubblewrapSandboxFactory, bwrap_available
from codemonkeys.sandbox.factory import make_sandbox_factory

DEAD_DAEMON = "unix:///nonexistent/docker.sock"


@pytest.mark.docker
def test_auto_prefers_docker(docker_client) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

    factory = make_sandbox_factory(SandboxConfig(backend="auto"))
    assert isinstance(factory, DockerSandboxFactory)
    factory.close()


def test_docker_backend_without_a_daemon_is_a_sandbox_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DAEMON)
    with pytest.raises(SandboxError, match="no Docker daemon answers"):
        make_sandbox_factory(SandboxConfig(backend="docker"))


@pytest.mark.bwrap
def test_auto_falls_back_to_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    if bwrap_available() is not None:
        pytest.skip(f"bubblewrap does not run here: {bwrap_available()}")
    monkeypatch.setenv("DOCKER_HOST", DEAD_DAEMON)
    assert isinstance(make_sandbox_factory(SandboxConfig(backend="auto")), BubblewrapSandboxFactory)
    assert isinstance(
        make_sandbox_factory(SandboxConfig(backend="bubblewrap")), BubblewrapSandboxFactory
    )


def test_no_backend_names_both_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DAEMON)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxError) as caught:
        make_sandbox_factory(SandboxConfig(backend="auto"))
    message = str(caught.value)
    assert "Docker" in message and "bwrap is not installed" in message
