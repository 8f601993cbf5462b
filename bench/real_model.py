"""The bundled example with every stage on a real model: SmolLM2-135M behind llama-cpp-python's server.

Variant (a) of issue 10 item 5, the run tests/test_real_model.py checks: the
server (from ``.venv-llm``, made by ``scripts/setup_llm_server.sh``) serves
``n_ctx`` 8192 on a free loopback port behind a recording proxy, and
``codemonkeys run example --dataset example`` runs every stage on it. Prints
three tables: calls by stage (the ledger against what the server received),
failures by kind (instance, trajectories, relevance decisions, calls), and the
largest prompt of each stage against the window (the server's own token
counts). The server's exchanges are saved in the run directory
(``server_exchanges.jsonl``) so ``--report-only`` reprints the tables.

    python bench/real_model.py [--variant a|b] [--run-dir DIR] [--report-only] [--json]

``--variant b`` runs the test's second way instead: oracle context and
testing, editing and selection on the model with a window the turns outgrow.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codemonkeys.store import RunStore
from codemonkeys.testing.local_llm import (
    EVERY_STAGE_CTX,
    SMALL_SERVED_CTX,
    LlamaServer,
    RecordingProxy,
    every_stage_overrides,
    find_model,
    run_example,
    server_python,
    small_window_overrides,
)

ROOT = Path(__file__).resolve().parents[1]
EXCHANGES = "server_exchanges.jsonl"
# (served n_ctx, overrides) of each variant; (b) is oracle context and testing on a small window.
VARIANTS = {"a": (EVERY_STAGE_CTX, every_stage_overrides), "b": (SMALL_SERVED_CTX, small_window_overrides)}


def run(run_dir: Path, variant: str) -> int:
    python = server_python(ROOT)
    if python is None:
        sys.exit("no .venv-llm: run scripts/setup_llm_server.sh first")
    log = run_dir.parent / "llama-server.log"
    served, overrides = VARIANTS[variant]
    with LlamaServer(python, find_model(python), served, log_path=log) as server:
        with RecordingProxy(server.port) as proxy:
            done = run_example(Path(sys.executable).parent / "codemonkeys", run_dir, overrides(proxy.base_url))
            exchanges = proxy.completions()
    with (run_dir / EXCHANGES).open("w") as out:
        out.write(json.dumps({"served_ctx": served}) + "\n")
        for e in exchanges:
            record = {"status": e.status, "max_tokens": (e.request or {}).get("max_tokens"), "usage": e.usage}
            out.write(json.dumps(record) + "\n")
    return done.returncode


def tables(run_dir: Path, exit_code: int | None) -> dict[str, Any]:
    header, *served = [json.loads(line) for line in (run_dir / EXCHANGES).read_text().splitlines()]
    served_ctx = header["served_ctx"]
    with RunStore.open_existing(run_dir) as store:
        calls = store.calls()
        (state,) = store.instance_states()
        trajectories = store.trajectories()
        decisions = store.context_decisions(state["instance_id"])
        windows = json.loads(store.get_meta("context_windows") or "[]")
    # The ledger's calls are in the order the server answered them (one request at a time).
    real = [c for c in calls if c.model.startswith("openai-compatible:")]
    by_stage: collections.defaultdict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    largest: dict[str, dict[str, int]] = {}
    for call in real:
        row = by_stage[call.stage]
        row["calls"] += 1
        row["cached"] += call.cached
        row["failed"] += call.error_kind is not None
        row["prompt_tokens"] += call.input_tokens + call.cache_read_tokens
        row["completion_tokens"] += call.output_tokens
        prompt = call.input_tokens + call.cache_read_tokens
        if prompt > largest.get(call.stage, {}).get("prompt_tokens", -1):
            largest[call.stage] = {"prompt_tokens": prompt}
    configured = {w["stage"]: w["tokens"] for w in windows}
    for stage, entry in largest.items():
        entry["configured_window"] = configured.get(stage) or 0
        entry["served_window"] = served_ctx
    failures: collections.Counter[tuple[str, str, str]] = collections.Counter()
    if state["status"] == "failed":
        failures[("instance", state["stage"], state["failure_kind"] or "?")] += 1
    for t in trajectories:
        if t.status != "done":
            failures[(f"trajectory ({t.status})", t.kind, t.failure_kind or "?")] += 1
    for d in decisions:
        if d.status != "scored":
            failures[("relevance decision", "context", d.status)] += 1
    for c in real:
        if c.error_kind is not None:
            failures[("call", c.stage, c.error_kind)] += 1
    answered = [s for s in served if s["status"] == 200 and s["usage"]]
    return {
        "exit_code": exit_code,
        "served_ctx": served_ctx,
        "instance": {k: state[k] for k in ("stage", "status", "failure_kind", "failure")},
        "server_requests": len(served),
        "server_prompt_tokens": sum(s["usage"]["prompt_tokens"] for s in answered),
        "server_completion_tokens": sum(s["usage"]["completion_tokens"] for s in answered),
        "server_largest_prompt_plus_max_tokens": max(
            (s["usage"]["prompt_tokens"] + (s["max_tokens"] or 0) for s in answered), default=0
        ),
        "calls_by_stage": {stage: dict(row) for stage, row in by_stage.items()},
        "failures": [{"what": w, "stage": s, "kind": k, "count": n} for (w, s, k), n in sorted(failures.items())],
        "largest_prompt": largest,
    }


def show(report: dict[str, Any]) -> None:
    console = Console(width=80)
    calls = Table(title="Calls by stage (ledger; tokens are the server's usage)")
    for column in ("stage", "calls", "cached", "failed", "prompt tok", "completion tok"):
        calls.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in report["calls_by_stage"].items():
        calls.add_row(stage, *(str(row.get(k, 0)) for k in ("calls", "cached", "failed", "prompt_tokens", "completion_tokens")))
    total = {k: sum(r.get(k, 0) for r in report["calls_by_stage"].values()) for k in ("calls", "prompt_tokens", "completion_tokens")}
    calls.add_row("server saw", str(report["server_requests"]), "", "", str(report["server_prompt_tokens"]),
                  str(report["server_completion_tokens"]))  # fmt: skip
    console.print(calls)
    console.print(f"ledger total: {total['calls']} calls, {total['prompt_tokens']} prompt + {total['completion_tokens']} completion tokens")
    failures = Table(title="Failures by kind")
    for column in ("what", "stage", "kind", "count"):
        failures.add_column(column, justify="right" if column == "count" else "left")
    for row in report["failures"]:
        failures.add_row(row["what"], row["stage"], row["kind"], str(row["count"]))
    console.print(failures)
    largest = Table(title="Largest prompt against the window (server's token count)")
    for column in ("stage", "largest prompt", "configured window", "served n_ctx"):
        largest.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in report["largest_prompt"].items():
        largest.add_row(stage, str(row["prompt_tokens"]), str(row["configured_window"]), str(row["served_window"]))
    console.print(largest)
    console.print(f"largest prompt + max_tokens the server received: {report['server_largest_prompt_plus_max_tokens']}"
                  f" (served n_ctx {report['served_ctx']})")
    instance = report["instance"]
    console.print(
        f"exit code {report['exit_code'] if report['exit_code'] is not None else '(not run now)'}; instance {instance['status']} in {instance['stage']} "
        f"({instance['failure_kind']}): {instance['failure']}",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, help="where the run goes (default: a new temporary directory)")
    parser.add_argument("--report-only", action="store_true", help="reprint the tables of an earlier --run-dir")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="a",
                        help="a: every stage on the model (default); b: oracle context and testing, small window")
    args = parser.parse_args()
    if args.report_only and args.run_dir is None:
        parser.error("--report-only needs --run-dir")
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="real-model-")) / "run"
    exit_code = None if args.report_only else run(run_dir, args.variant)
    report = tables(run_dir, exit_code)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)
        print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
