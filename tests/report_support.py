"""A small finished run written through the real RunStore, for the report tests.

Five instances of eight trajectories: per instance ``CORRECT[i]`` trajectories
produce the resolving patch (all the same text), the rest a wrong one, some
trajectories fail (infra or model) and produce nothing, one instance's plan
was cut by the budget to four trajectories, and one failed in the context
stage before generation.
"""

from __future__ import annotations

from typing import Any

from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord, TrajectoryRecord

N = 8
# instance -> (trajectories run, indexes whose candidate resolves it, failed indexes -> kind)
RUN: dict[str, tuple[int, set[int], dict[int, str]]] = {
    "demo__proj-1": (8, {0, 3, 5}, {}),
    "demo__proj-2": (8, {7}, {2: "infra", 4: "model"}),
    "demo__proj-3": (8, set(), {1: "model"}),
    "demo__proj-4": (4, {1, 2, 3}, {0: "infra"}),  # the budget cut this one
    "demo__proj-5": (8, {0, 1, 2, 3, 4, 5, 6, 7}, {}),
}
CONTEXT_FAILED = "demo__proj-6"
# which candidate the selection picked: a resolving one where it exists, except proj-2 (a wrong one)
SELECTED = {"demo__proj-1": 3, "demo__proj-2": 0, "demo__proj-3": 0, "demo__proj-4": 1, "demo__proj-5": 4}

GOOD = make_diff({"src/mod.py": "def f():\n    return 1\n"}, {"src/mod.py": "def f():\n    return 2\n"})


def wrong_patch(iid: str, index: int) -> str:
    return make_diff({"src/mod.py": "def f():\n    return 1\n"}, {"src/mod.py": f"def f():\n    return {index + 10}  # {iid}\n"})


def call(stage: str, model: str, iid: str | None, trajectory: str | None, *, cost: float, inp: int, out: int,
         read: int = 0, write: int = 0, error_kind: str | None = None, cached: bool = False) -> CallRecord:
    return CallRecord(
        stage=stage, instance_id=iid, trajectory=trajectory, request_hash=f"{stage}-{iid}-{trajectory}-{inp}",
        model=model, input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_write_tokens=write,
        cost_usd=None if cached or error_kind else cost, latency_s=1.0, cached=cached, error_kind=error_kind,
        error=None if error_kind is None else "boom",
    )


def fill_run(store: RunStore, *, editing_model: str = "claude-sonnet-4") -> dict[str, Any]:
    """Write the run; returns the candidate labels {candidate_id: status} and the expected (n, c) per instance."""
    labels: dict[str, str] = {}
    expected: dict[str, tuple[int, int]] = {}
    for iid, (runs, correct, failed) in RUN.items():
        store.add_instance(iid, "demo/proj", {"instance_id": iid})
        store.record_call(call("relevance", "gpt-4o-mini", iid, None, cost=0.01, inp=20_000, out=500))
        store.record_call(call("ranking", "claude-sonnet-4", iid, "ranking-0", cost=0.05, inp=8_000, out=300, write=8_000))
        store.put_result(iid, "plan", "generation", {
            "trajectories": runs, "max_iterations": 8, "configured_trajectories": N, "configured_iterations": 8,
            "expected_trajectory_usd": 0.5, "available_usd": 2.0 if runs < N else None,
            "reason": "budget: $2.00 left affords 4 of 8 trajectories at about $0.50 each" if runs < N else "",
            "degraded": runs < N,
        })
        for index in range(runs):
            kind = failed.get(index)
            for stage in ("testing", "editing"):
                tid = f"{iid}/{stage}/{index}"
                model = editing_model if stage == "editing" else "claude-sonnet-4"
                status = "failed" if kind and stage == "editing" else "done"
                store.save_trajectory(TrajectoryRecord(tid, iid, stage, index, status, kind if status == "failed" else None,
                                                       "it broke" if status == "failed" else None))
                store.record_call(call(stage, model, iid, tid, cost=0.02, inp=3_000, out=800, read=30_000))
                if status == "failed" and kind == "infra":
                    store.record_call(call(stage, model, iid, tid, cost=0.0, inp=0, out=0, error_kind="infra"))
            if kind:
                continue
            patch = GOOD if index in correct else wrong_patch(iid, index)
            cid = f"{iid}/generation/{index}"
            store.add_candidate(cid, iid, "generation", patch, patch_hash(patch), {"trajectory": f"{iid}/editing/{index}"})
            labels[cid] = "resolved" if index in correct else "unresolved"
        store.record_call(call("selection", "claude-sonnet-4", iid, f"{iid}/selection/x", cost=0.03, inp=5_000, out=400, read=5_000))
        store.put_selection(iid, f"{iid}/generation/{SELECTED[iid]}", "test_voting", {})
        store.set_instance_state(iid, "done", "done")
        expected[iid] = (runs, len(correct))
    store.add_instance(CONTEXT_FAILED, "demo/proj", {"instance_id": CONTEXT_FAILED})
    store.record_call(call("relevance", "gpt-4o-mini", CONTEXT_FAILED, None, cost=0.0, inp=0, out=0, error_kind="infra"))
    store.set_instance_state(CONTEXT_FAILED, "context", "failed", "infra", "RepoError: clone failed")
    expected[CONTEXT_FAILED] = (0, 0)
    return {"labels": labels, "expected": expected}
