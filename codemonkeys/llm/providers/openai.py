"""OpenAI models, and any OpenAI-compatible server (vLLM, SGLang, Ollama), through the official SDK.

One class serves both: ``openai:gpt-4.1`` talks to the OpenAI API,
``openai-compatible:NAME@http://host:8000/v1`` to the server in the model
string (or ``providers.<name>.base_url``). Retries are the SDK's own
(408/409/429/5xx, connection errors and timeouts; ``retry-after`` and
``retry-after-ms`` honoured); what still fails becomes a :class:`ProviderError`
with the HTTP status, except a server's context-length refusal, which is the
model-side :class:`~codemonkeys.errors.ContextLimitReached` (wordings of OpenAI,
vLLM, SGLang and llama.cpp in :mod:`.context_errors`).

Caching is automatic on these servers (prefix caching), so ``Message.cache``
needs no markup here; ``prompt_tokens_details.cached_tokens`` is reported as
cache reads and taken out of ``input_tokens``.

Usage is the server's own ``usage`` object. A server that omits it (or its
prompt count) gets the offline token counter's estimate, marked
``Usage.estimated``: a call is never booked as free.

Request shape: ``max_completion_tokens`` for the OpenAI API (``max_tokens`` is
deprecated there and rejected by reasoning models), ``max_tokens`` for
compatible servers (which all accept it). Reasoning models (o1/o3/o4, gpt-5)
reject a temperature, so none is sent to them (nor to any model when
``providers.<name>.send_temperature`` is false).

A response without choices, or whose message has neither content nor a
refusal, is a :class:`ProviderError`; empty content (``""``) is the model's
answer. A refusal is returned as the text with ``stop_reason="refusal"``.
"""

from __future__ import annotations

import logging
from typing import Any

import openai

from ...config import ProviderSettings
from ...errors import ContextLimitReached, ProviderError
from ..spec import ModelSpec
from ..tokens import count_tokens
from ..types import ChatRequest, ChatResponse, Usage
from .context_errors import context_limit_error
from .sent import never_sent

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def build_params(
    request: ChatRequest, model: str, *, official: bool, send_temperature: bool = True
) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``request`` (pure)."""
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(
        {"role": message.role, "content": message.content} for message in request.messages
    )
    params: dict[str, Any] = {"model": model, "messages": messages}
    params["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
    if send_temperature and not (official and model.startswith(_REASONING_PREFIXES)):
        params["temperature"] = request.temperature
    if request.stop:
        params["stop"] = list(request.stop)
    return params


def completion_usage(usage: Any, request: ChatRequest, text: str, label: str) -> Usage:
    """Tokens from the server's own ``usage``; estimated offline (and marked so) where it has none.

    Some compatible servers omit ``usage``, or send it without a prompt count;
    the call is then booked at the token counter's estimate, never as free.
    """
    prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    if prompt and completion is not None:
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
        return Usage(input_tokens=max(0, prompt - cached), output_tokens=completion, cache_read_tokens=cached)
    log.warning("%s returned no usage; estimating tokens offline", label)
    return Usage(
        input_tokens=max(1, count_tokens(request.prompt_text(), label)),
        # At least the end-of-text token was generated, even for an empty answer.
        output_tokens=max(1, count_tokens(text, label)),
        estimated=True,
    )


def parse_completion(completion: Any, label: str, request: ChatRequest) -> ChatResponse:
    """A ``ChatCompletion`` from the SDK into our response (see the module docstring for errors)."""
    if not completion.choices:
        raise ProviderError(f"{label} returned no choices")
    choice = completion.choices[0]
    text = choice.message.content
    stop_reason = choice.finish_reason
    if text is None:
        refusal = getattr(choice.message, "refusal", None)
        if refusal is None:
            raise ProviderError(
                f"{label} returned a message without content (finish_reason={stop_reason!r})"
            )
        text, stop_reason = refusal, "refusal"
    return ChatResponse(
        text=text,
        usage=completion_usage(completion.usage, request, text, label),
        stop_reason=stop_reason,
        model=label,
    )


def provider_error(
    exc: openai.OpenAIError, label: str
) -> ProviderError | ContextLimitReached:
    """What the SDK raised after its retries, as our typed failure.

    A context-length refusal is the model-side :class:`ContextLimitReached`;
    everything else is the infrastructure failure :class:`ProviderError`.
    """
    if isinstance(exc, openai.APIStatusError):
        too_long = context_limit_error(exc.status_code, exc.message, exc.body, label)
        if too_long is not None:
            return too_long
        return ProviderError(
            f"{label}: HTTP {exc.status_code}: {exc.message}", status_code=exc.status_code
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"{label}: request timed out (after retries)", maybe_billed=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            f"{label}: cannot connect: {exc.__cause__ or exc}", maybe_billed=not never_sent(exc)
        )
    return ProviderError(f"{label}: {type(exc).__name__}: {exc}")


class OpenAIModel:
    """An OpenAI or OpenAI-compatible model behind :class:`~codemonkeys.llm.types.Model`.

    The key and base URL are always passed explicitly, so the SDK never reads
    ``OPENAI_*`` environment variables. Local servers usually need no key; a
    placeholder is sent then. The HTTP client is made on first use, inside the
    event loop that uses it.
    """

    def __init__(self, spec: ModelSpec, settings: ProviderSettings, api_key: str | None) -> None:
        self._spec = spec
        self._label = spec.label
        self._official = spec.provider == "openai"
        self._base_url = spec.base_url or settings.base_url or DEFAULT_BASE_URL
        self._settings = settings
        self._api_key = api_key or "no-key-configured"
        self._client: openai.AsyncOpenAI | None = None

    @property
    def name(self) -> str:
        return self._label

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                timeout=self._settings.timeout_s,
                max_retries=self._settings.max_retries,
            )
        return self._client

    async def complete(self, request: ChatRequest) -> ChatResponse:
        params = build_params(
            request,
            self._spec.name,
            official=self._official,
            send_temperature=self._settings.send_temperature,
        )
        try:
            completion = await self.client.chat.completions.create(**params)
        except openai.OpenAIError as exc:
            raise provider_error(exc, self._label) from exc
        return parse_completion(completion, self._label, request)

    async def aclose(self) -> None:
        """Close the HTTP connections (the model can be used again afterwards)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
