"""Every configured model endpoint checked once, before a run touches a repository, image or paid call.

A misnamed or stopped local server would otherwise be found file by file, after
repositories and images are ready. The checks: each stage's model string parses
(the same rule as the run), each provider's key is present, and each
OpenAI-compatible server answers ``GET /models`` and lists the model. The HTTP
side sits behind :class:`EndpointProbe`, so tests use the loopback fake server or
a double.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..config import Config
from ..errors import EndpointError, UnknownProviderError
from .registry import STAGES, provider_settings, resolve_secrets
from .spec import ModelSpec, parse_model_string

# Providers whose endpoint is a server the user runs (vLLM, SGLang, llama.cpp, Ollama).
_SERVER_PROVIDERS = ("openai-compatible",)


@dataclass(frozen=True, slots=True)
class ServerAnswer:
    """What a server said to ``GET /models``: ``problem`` when unusable, ``models`` when it lists any."""

    problem: str | None = None
    models: tuple[str, ...] | None = None


class EndpointProbe(Protocol):
    """Asks an OpenAI-compatible server which models it serves."""

    def models(self, base_url: str, api_key: str | None) -> ServerAnswer: ...


class HttpEndpointProbe:
    """:class:`EndpointProbe` over HTTP, with a short timeout (a check, not a call)."""

    def __init__(self, *, timeout_s: float = 5.0) -> None:
        self._timeout_s = timeout_s

    def models(self, base_url: str, api_key: str | None) -> ServerAnswer:
        import httpx2

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        url = base_url.rstrip("/") + "/models"
        try:
            with httpx2.Client(timeout=self._timeout_s, headers=headers) as client:
                response = client.get(url)
        except httpx2.HTTPError as exc:
            return ServerAnswer(problem=f"no answer from {url} ({type(exc).__name__}: {exc or 'no detail'})")
        if response.status_code in (401, 403):
            return ServerAnswer(problem=f"{url} rejected the API key (HTTP {response.status_code})")
        if response.status_code in (404, 405):
            return ServerAnswer()  # answering, but it lists no models: nothing more to check
        if response.status_code != 200:
            return ServerAnswer(problem=f"{url} answered HTTP {response.status_code}")
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            return ServerAnswer()
        if not isinstance(data, list):
            return ServerAnswer()
        return ServerAnswer(models=tuple(str(e["id"]) for e in data if isinstance(e, dict) and "id" in e))


def check_model_strings(config: Config, stages: tuple[str, ...] = STAGES) -> dict[str, ModelSpec]:
    """Each stage's parsed model string; a bad one is a user error naming its config key."""
    specs: dict[str, ModelSpec] = {}
    for stage in stages:
        try:
            specs[stage] = parse_model_string(getattr(config.models, stage).model)
        except UnknownProviderError as exc:
            raise UnknownProviderError(f"models.{stage}.model: {exc}") from None
    return specs


def preflight(
    config: Config,
    environ: Mapping[str, str],
    *,
    stages: tuple[str, ...] = STAGES,
    probe: EndpointProbe | None = None,
) -> list[str]:
    """Check every endpoint the ``stages`` use, each once; the lines say what was checked.

    Raises a :class:`~codemonkeys.errors.UserError` (one line) on the first problem.
    """
    specs = check_model_strings(config, stages)
    secrets = resolve_secrets(config, environ, stages)
    probe = probe or HttpEndpointProbe()
    answers: dict[str, ServerAnswer] = {}
    checked: list[str] = []
    for stage, spec in specs.items():
        if spec.provider not in _SERVER_PROVIDERS:
            if spec.provider in secrets:
                checked.append(f"{stage}: {spec.label} (key present)")
            continue
        base_url = spec.base_url or provider_settings(config, spec.provider).base_url
        if not base_url:
            raise EndpointError(f"models.{stage}.model: {spec.label} names no server (add @http://host:port/v1)")
        if base_url not in answers:
            answers[base_url] = probe.models(base_url, secrets.get(spec.provider))
        answer = answers[base_url]
        if answer.problem is not None:
            raise EndpointError(f"models.{stage}.model: {answer.problem}; start the server or fix the URL in {spec.label!r}")
        if answer.models is not None and spec.name not in answer.models:
            served = ", ".join(repr(m) for m in answer.models[:10]) or "none"
            raise EndpointError(f"models.{stage}.model: {base_url} does not serve {spec.name!r} (it serves {served})")
        checked.append(f"{stage}: {spec.label} (server answers)")
    return checked
