"""Pick the sandbox backend the config asks for, or the best one this machine has.

Backends are imported only when chosen, so code that never runs a sandbox
does not load the Docker SDK.
"""

from __future__ import annotations

import logging

from ..config import SandboxConfig
from ..errors import SandboxError
from .base import SandboxFactory

log = logging.getLogger(__name__)


def _docker(config: SandboxConfig, network: bool) -> SandboxFactory:
    from .docker_backend import DockerSandboxFactory

    return DockerSandboxFactory(config, network=network)


def _bubblewrap(config: SandboxConfig, network: bool) -> SandboxFactory:
    from .bwrap_backend import BubblewrapSandboxFactory

    return BubblewrapSandboxFactory(config, network=network)


def make_sandbox_factory(config: SandboxConfig, *, network: bool = False) -> SandboxFactory:
    """The factory for ``config.backend``; ``auto`` is Docker when a daemon answers, else bubblewrap.

    ``network`` is for grading only (``grading.network``, as the harness's
    containers have it); model-written code always runs without.

    Raises :class:`SandboxError` naming every reason when no backend works.
    """
    if config.backend == "docker":
        return _docker(config, network)
    if config.backend == "bubblewrap":
        return _bubblewrap(config, network)
    try:
        return _docker(config, network)
    except SandboxError as docker_error:
        log.info("Docker is not usable (%s); trying bubblewrap", docker_error)
        try:
            return _bubblewrap(config, network)
        except SandboxError as bwrap_error:
            raise SandboxError(
                f"no sandbox backend works here: Docker: {docker_error}; bubblewrap: {bwrap_error}. "
                "Start a Docker daemon or install bubblewrap (see scripts/setup_sandbox.sh)."
            ) from bwrap_error
