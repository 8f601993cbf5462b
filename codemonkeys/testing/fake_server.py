"""A loopback HTTP server that speaks the Anthropic Messages and OpenAI Chat Completions APIs.

Tests point the *real* SDK clients at it, so request building, retries,
``retry-after`` handling and response parsing are exercised end to end without
a provider. It listens on 127.0.0.1 only.

In a test::

    with FakeLLMServer(responder=lambda body: "hi") as server:
        server.fail_next(status=429, retry_after=0.05, times=2)
        ...  # AsyncAnthropic(base_url=server.anthropic_base_url) / AsyncOpenAI(base_url=server.openai_base_url)
        assert server.request_count == 3

As a process (the benchmark measures the client's CPU apart from the server's)::

    python -m codemonkeys.testing.fake_server --port 0 --latency 0.05

prints ``http://127.0.0.1:PORT`` on its first line and serves until SIGTERM.

Routes: ``POST /v1/messages`` and ``POST /v1/chat/completions``, with or
without the ``/v1`` prefix. A responder maps the request JSON to the reply text
(default: echo the last user message) or to a whole response body (a dict),
for shapes a test wants to force. The usage and prompt-cache simulation is in
:mod:`codemonkeys.testing.fake_wire`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self

from . import fake_wire as wire

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]

_ROUTES = {
    "/v1/messages": wire.ANTHROPIC,
    "/messages": wire.ANTHROPIC,
    "/v1/chat/completions": wire.OPENAI,
    "/chat/completions": wire.OPENAI,
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the server received, kept for assertions."""

    api: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class _Fault:
    status: int | None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    stall_s: float = 0.0
    message: str | None = None
    api: str | None = None
    body: dict[str, Any] | None = None


def echo_responder(body: dict[str, Any]) -> str:
    """The default reply: the last user message's text (either API)."""
    return wire.last_user_text(wire.anthropic_blocks(body)) or "ok"


@dataclass
class _State:
    responder: Responder
    latency_s: float
    record: bool
    anthropic_cache: wire.PrefixCache
    openai_cache: wire.PrefixCache
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: deque[_Fault] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {wire.ANTHROPIC: 0, wire.OPENAI: 0})
    connections: set[socket.socket] = field(default_factory=set)
    models: tuple[str, ...] | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test server that prints every request drowns the test output."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        models = self.server.state.models
        if path in ("/v1/models", "/models") and models is not None:
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in models]})
            return
        self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        api = _ROUTES.get(path)
        if api is None:
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, wire.error_body(api, 400, "body is not JSON"))
            return
        state = self.server.state
        with state.lock:
            state.counts[api] += 1
            number = state.counts[wire.ANTHROPIC] + state.counts[wire.OPENAI]
            if state.record:
                state.requests.append(
                    RecordedRequest(
                        api, path, body, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
            fault = (
                state.faults.popleft()
                if state.faults and state.faults[0].api in (None, api)
                else None
            )
        if state.latency_s:
            time.sleep(state.latency_s)
        if fault is not None:
            if fault.stall_s:
                time.sleep(fault.stall_s)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["retry-after"] = f"{fault.retry_after:g}"
                if fault.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(fault.retry_after_ms)
                payload = fault.body or wire.error_body(api, fault.status, fault.message)
                self._send(fault.status, payload, headers)
                return
        try:
            reply = state.responder(body)
        except Exception as exc:  # noqa: BLE001 - a broken responder is the test's bug: answer 500, say why
            self._send(
                500, wire.error_body(api, 500, f"responder failed: {type(exc).__name__}: {exc}")
            )
            return
        if isinstance(reply, dict):
            self._send(200, reply)
        elif api == wire.ANTHROPIC:
            prompt = state.anthropic_cache.explicit(wire.anthropic_blocks(body))
            self._send(200, wire.anthropic_message(body, reply, prompt, number))
        else:
            prompt = state.openai_cache.automatic(wire.openai_blocks(body))
            self._send(200, wire.openai_completion(body, reply, prompt, number))

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        lines = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
            "content-type: application/json",
        ]
        lines.append(f"content-length: {len(data)}")
        lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, shutdown) are normal here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    """The loopback server, run in a background thread (use it as a context manager)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        port: int = 0,
        record: bool = True,
        min_cache_tokens: int = 0,
        models: Sequence[str] | None = None,
    ) -> None:
        """``models``: the ids ``GET /v1/models`` lists (``None``: no such route, as some servers)."""
        caches = wire.PrefixCache(min_cache_tokens), wire.PrefixCache(min_cache_tokens)
        self._state = _State(responder or echo_responder, latency_s, record, *caches)
        self._state.models = None if models is None else tuple(models)
        self._httpd = _Server(("127.0.0.1", port), self._state)
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        with self._state.lock:
            connections = list(self._state.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread (the subprocess mode) until :meth:`shutdown`."""
        self._httpd.serve_forever(poll_interval=0.05)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addresses --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def anthropic_base_url(self) -> str:
        """What ``AsyncAnthropic(base_url=...)`` takes (the SDK adds ``/v1/messages``)."""
        return self.url

    @property
    def openai_base_url(self) -> str:
        """What ``AsyncOpenAI(base_url=...)`` takes (the SDK adds ``/chat/completions``)."""
        return self.url + "/v1"

    # --- scripting --------------------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        *,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        times: int = 1,
        message: str | None = None,
        api: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``api``, or any) with an error in the API's own shape.

        ``body`` replaces that shape by a given error body (another server's, e.g. llama.cpp's).
        """
        with self._state.lock:
            for _ in range(times):
                self._state.faults.append(
                    _Fault(status, retry_after, retry_after_ms, 0.0, message, api, body)
                )

    def stall_next(self, seconds: float, *, times: int = 1, api: str | None = None) -> None:
        """Hold the next ``times`` requests for ``seconds`` before answering normally (client timeouts)."""
        with self._state.lock:
            for _ in range(times):
                self._state.faults.append(_Fault(None, stall_s=seconds, api=api))

    def set_responder(self, responder: Responder) -> None:
        self._state.responder = responder

    # --- observations -------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._state.lock:
            return sum(self._state.counts.values())

    def count(self, api: str) -> int:
        """Requests received by one API (``"anthropic"`` or ``"openai"``), failed ones included."""
        with self._state.lock:
            return self._state.counts[api]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)


@contextlib.contextmanager
def fake_server_process(
    latency_s: float = 0.0, *, python: str = sys.executable, models: Sequence[str] | None = None
) -> Iterator[str]:
    """Run the server in a child process; yields its URL and terminates it on exit."""
    command = [
        python,
        "-m",
        "codemonkeys.testing.fake_server",
        "--port",
        "0",
        "--latency",
        str(latency_s),
        *([] if models is None else ["--models", ",".join(models)]),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(
                f"fake server did not start (said {line!r}, exit code {process.poll()})"
            )
        yield line
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--min-cache-tokens", type=int, default=0)
    parser.add_argument("--models", default=None, help="comma-separated ids GET /v1/models lists")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        latency_s=args.latency, port=args.port, record=False, min_cache_tokens=args.min_cache_tokens,
        models=None if args.models is None else [m for m in args.models.split(",") if m],
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
