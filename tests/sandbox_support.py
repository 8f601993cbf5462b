"""Fixtures shared by the sandbox tests: real Docker images, a real bwrap environment.

Import them under any alias (``from sandbox_support import docker_client as _``):
each fixture declares its name, so pytest registers it as that name.

Docker tests skip only when no daemon answers, bwrap tests only when bwrap
cannot run; a failing image build is a failure, not a skip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from codemonkeys.config import SandboxConfig
from codemonkeys.errors import SandboxError
from codemonkeys.sandbox.base import EnvironmentRef, SandboxFactory
from codemonkeys.sandbox.fixture_repo import make_repo


@pytest.fixture(scope="session", name="docker_client")
def docker_client():  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.docker_backend import connect

    try:
        return connect()
    except SandboxError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session", name="fixture_image")
def fixture_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    """codemonkeys/base + a pyenv CPython + the fixture repo at /testbed (built once)."""
    from codemonkeys.sandbox.baseimage import ensure_test_image
    from codemonkeys.sandbox.fixture_repo import ensure_fixture_image

    return ensure_fixture_image(docker_client, ensure_test_image(docker_client))


@pytest.fixture(scope="session", name="bwrap_root")
def bwrap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An environment directory for bubblewrap: ``<root>/testbed`` is the fixture repo."""
    from codemonkeys.sandbox.bwrap_backend import bwrap_available

    reason = bwrap_available()
    if reason is not None:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("bwrap-env")
    make_repo(root / "testbed")
    return root


def bwrap_env(root: Path) -> EnvironmentRef:
    return EnvironmentRef(
        key="fixture", root=str(root), python=str(Path(sys.base_prefix) / "bin" / "python3")
    )


@dataclass
class Backend:
    name: str
    env: EnvironmentRef
    make: Callable[[SandboxConfig], SandboxFactory]


@pytest.fixture(
    name="backend",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.bwrap),
    ],
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each shared behaviour test runs once on Docker and once on bubblewrap."""
    made: list[SandboxFactory] = []
    if request.param == "docker":
        from codemonkeys.sandbox.docker_backend import DockerSandboxFactory

        client = request.getfixturevalue("docker_client")
        image = request.getfixturevalue("fixture_image")

        def make_docker(config: SandboxConfig) -> SandboxFactory:
            factory = DockerSandboxFactory(config, client=client)
            made.append(factory)
            return factory

        yield Backend("docker", EnvironmentRef(key="fixture", image=image), make_docker)
    else:
        from codemonkeys.sandbox.bwrap_backend import BubblewrapSandboxFactory

        root = request.getfixturevalue("bwrap_root")
        yield Backend("bwrap", bwrap_env(root), BubblewrapSandboxFactory)
    for factory in made:
        factory.close()  # type: ignore[attr-defined]
