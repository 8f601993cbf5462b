"""Context windows: the user's value, then the server's report, then the shipped table."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from codemonkeys.config import load_config
from codemonkeys.llm.server_info import HttpWindowProbe, window_from_models, window_from_props
from codemonkeys.llm.spec import ModelSpec, parse_model_string
from codemonkeys.llm.windows import NoProbe, resolve_context_windows, resolve_window, table_window

TABLE = {"claude-": 200_000, "gpt-4.1": 1_047_576, "gpt-4o": 128_000, "gpt-4o-mini-x": 1}


def test_table_takes_the_exact_name_then_the_longest_prefix() -> None:
    assert table_window(TABLE, parse_model_string("anthropic:claude-sonnet-4-5-20250929")) == 200_000
    assert table_window(TABLE, parse_model_string("openai:gpt-4.1-mini")) == 1_047_576
    assert table_window(TABLE, parse_model_string("openai:gpt-4o-mini-x2")) == 1  # longest prefix wins
    assert table_window(TABLE, parse_model_string("openai:gpt-4o")) == 128_000
    assert table_window(TABLE, parse_model_string("openai:davinci")) is None
    assert table_window(TABLE, parse_model_string("oracle")) is None


def test_the_user_wins_then_the_server_then_the_table() -> None:
    spec = parse_model_string("openai-compatible:gpt-4o@http://h/v1")
    assert resolve_window(5000, spec, TABLE, 9000) == (5000, "config")
    assert resolve_window(None, spec, TABLE, 9000) == (9000, "server")
    assert resolve_window(None, spec, TABLE, None) == (128_000, "table")
    assert resolve_window(None, parse_model_string("scripted"), TABLE, None) == (None, "unknown")


def test_shipped_table_knows_the_paper_models_and_a_config_can_extend_it() -> None:
    config = load_config("verified", ["context_windows.my-model=4096", "models.selection.model=openai:my-model-1"])
    filled, windows = resolve_context_windows(config, NoProbe())
    by_stage = {w.stage: w for w in windows}
    assert by_stage["editing"].tokens == 200_000 and by_stage["editing"].source == "table"
    assert by_stage["relevance"].tokens == 32_768  # Qwen2.5-Coder-32B's declared length
    assert by_stage["selection"].tokens == 4096
    assert filled.models.editing.context_window == 200_000
    assert config.models.editing.context_window is None  # the input is not changed


class _Probe:
    def __init__(self, answer: int | None) -> None:
        self.answer = answer
        self.asked: list[ModelSpec] = []

    def served_window(self, spec: ModelSpec) -> int | None:
        self.asked.append(spec)
        return self.answer


def test_only_unset_openai_compatible_models_are_asked() -> None:
    config = load_config(None, [
        "models.relevance.model=openai-compatible:m@http://h:1/v1",
        "models.ranking.model=openai-compatible:m@http://h:1/v1",
        "models.ranking.context_window=1000",
    ])
    probe = _Probe(7777)
    filled, windows = resolve_context_windows(config, probe)
    assert [s.name for s in probe.asked] == ["m"]  # ranking's window is the user's: not asked
    assert filled.models.relevance.context_window == 7777
    assert filled.models.ranking.context_window == 1000
    assert {w.stage: w.source for w in windows}["relevance"] == "server"
    assert {w.stage: w.source for w in windows}["testing"] == "table"  # anthropic: never asked


def test_server_answers_are_read_as_vllm_and_llama_cpp_write_them() -> None:
    vllm = {"object": "list", "data": [{"id": "Qwen/Q", "object": "model", "max_model_len": 32768}]}
    assert window_from_models(vllm, "Qwen/Q") == 32768
    assert window_from_models(vllm, "other-alias") == 32768  # the only model served
    two = {"data": [{"id": "a", "max_model_len": 1}, {"id": "b", "max_model_len": 2}]}
    assert window_from_models(two, "b") == 2 and window_from_models(two, "c") is None
    # llama.cpp: n_ctx_train is what the model was trained for, not what is served.
    assert window_from_models({"data": [{"id": "x", "meta": {"n_ctx_train": 8192}}]}, "x") is None
    assert window_from_props({"default_generation_settings": {"n_ctx": 2048}}) == 2048
    assert window_from_props({"n_ctx": 4096}) == 4096
    assert window_from_props({"n_ctx": True}) is None and window_from_props([]) is None


@contextmanager
def _server(routes: dict[str, Any]) -> Iterator[str]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            if self.path not in routes:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(routes[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({"/v1/models": {"data": [{"id": "m", "max_model_len": 12345}]}}, 12345),  # vLLM, SGLang
        ({"/v1/models": {"data": [{"id": "m", "meta": {"n_ctx_train": 8192}}]},
          "/props": {"default_generation_settings": {"n_ctx": 2048}}}, 2048),  # llama-server
        ({"/v1/models": {"object": "list", "data": [{"id": "m", "owned_by": "me"}]}}, None),  # llama-cpp-python
    ],
)
def test_http_probe_asks_the_server_once(routes: dict[str, Any], expected: int | None) -> None:
    with _server(routes) as url:
        probe = HttpWindowProbe(timeout_s=5)
        spec = parse_model_string(f"openai-compatible:m@{url}")
        assert probe.served_window(spec) == expected
        assert probe.served_window(spec) == expected


def test_http_probe_treats_an_unreachable_server_as_not_reported() -> None:
    with _server({}) as url:
        pass  # closed: nothing listens any more
    assert HttpWindowProbe(timeout_s=2).served_window(parse_model_string(f"openai-compatible:m@{url}")) is None


def test_a_run_records_its_windows_and_stages_see_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.pipeline.build import open_services
    from codemonkeys.store import RunStore

    config = load_config(None, [
        "models.relevance.model=openai-compatible:m@http://h:1/v1", "models.ranking.model=oracle",
        "models.testing.model=oracle", "models.selection.model=oracle", "models.selection.context_window=999",
    ])
    with open_services(config, tmp_path, [], {"ANTHROPIC_API_KEY": "k"}, sandboxes=object(), environments=object(), window_probe=_Probe(4321)) as services:  # type: ignore[arg-type]
        assert services.config.models.relevance.context_window == 4321
        assert services.config.models.editing.context_window == 200_000
    with RunStore.open_existing(tmp_path) as store:
        recorded = {w["stage"]: (w["tokens"], w["source"]) for w in json.loads(store.get_meta("context_windows") or "[]")}
    assert recorded == {
        "relevance": (4321, "server"), "ranking": (None, "unknown"), "testing": (None, "unknown"),
        "editing": (200_000, "table"), "selection": (999, "config"),
    }
