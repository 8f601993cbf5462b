"""Asking an OpenAI-compatible server which context window it serves.

What servers report (checked against their code):

- vLLM and SGLang: ``GET /v1/models`` lists each model with ``max_model_len``,
  the window the server was started with.
- llama.cpp's C++ server (``llama-server``): ``GET /props`` has
  ``default_generation_settings.n_ctx`` (older builds: top-level ``n_ctx``),
  the served window. Its ``/v1/models`` entries carry ``meta.n_ctx_train``, the
  length the model was trained for, which is NOT what it serves, so it is ignored.
- llama-cpp-python's server (``python -m llama_cpp.server``): ``/v1/models``
  lists only ids; there is no ``/props``. Its window must be set in the config
  (``models.<stage>.context_window``, the ``--n_ctx`` it was started with).

Every failure (server down, 404, odd JSON) means "not reported": the table or
the provider's own context-length error take over.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2

from .spec import ModelSpec

log = logging.getLogger(__name__)


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def window_from_models(listing: Any, name: str) -> int | None:
    """``max_model_len`` of ``name`` in a ``/v1/models`` answer (the only model when ids differ)."""
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        return None
    entries = [e for e in listing["data"] if isinstance(e, dict)]
    chosen = [e for e in entries if e.get("id") == name] or (entries if len(entries) == 1 else [])
    for entry in chosen:
        found = _positive_int(entry.get("max_model_len"))
        if found is not None:
            return found
    return None


def window_from_props(props: Any) -> int | None:
    """The served ``n_ctx`` in a llama.cpp ``/props`` answer."""
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    if isinstance(settings, dict) and _positive_int(settings.get("n_ctx")) is not None:
        return _positive_int(settings.get("n_ctx"))
    return _positive_int(props.get("n_ctx"))


def _server_root(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class HttpWindowProbe:
    """A :class:`~.windows.WindowProbe` over HTTP; each server is asked once per run."""

    def __init__(self, *, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._seen: dict[tuple[str, str], int | None] = {}

    def served_window(self, spec: ModelSpec) -> int | None:
        if not spec.base_url:
            return None
        key = (spec.base_url, spec.name)
        if key not in self._seen:
            self._seen[key] = self._ask(spec.base_url, spec.name)
        return self._seen[key]

    def _get(self, client: httpx2.Client, url: str) -> Any:
        try:
            response = client.get(url)
            if response.status_code != 200:
                return None
            return response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            log.info("context window: %s did not answer: %s", url, exc)
            return None

    def _ask(self, base_url: str, name: str) -> int | None:
        with httpx2.Client(timeout=self._timeout, headers=self._headers) as client:
            found = window_from_models(self._get(client, base_url.rstrip("/") + "/models"), name)
            if found is None:
                found = window_from_props(self._get(client, _server_root(base_url) + "/props"))
        if found is None:
            log.info("context window: %s reports none for %s", base_url, name)
        return found
