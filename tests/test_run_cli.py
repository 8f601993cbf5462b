"""Which instances a rerun works on, ``run --estimate``, and ``status``."""

from __future__ import annotations

from pathlib import Path

from codemonkeys.cli.main import main
from codemonkeys.examples import example_instance
from codemonkeys.pipeline.run import choose_instances
from codemonkeys.store import DB_NAME, RunStore
from codemonkeys.swebench.instances import Instance


def _instance(n: int) -> Instance:
    return example_instance().model_copy(update={"instance_id": f"x-{n}"})


def test_reruns_skip_done_and_model_failures_and_retry_infra_only_on_request(tmp_path: Path) -> None:
    instances = [_instance(n) for n in range(6)]
    with RunStore.open(tmp_path) as store:
        for instance in instances:
            store.add_instance(instance.instance_id, instance.repo, {})
        store.set_instance_state("x-0", "done", "done")
        store.put_selection("x-0", "x-0/generation/0", "top_vote", {})
        store.set_instance_state("x-1", "generation", "failed", "infra", "sandbox died")
        store.set_instance_state("x-2", "generation", "failed", "model", "no candidate")
        store.set_instance_state("x-3", "generation", "failed", "budget", "budget: $0.00 left")
        store.set_instance_state("x-4", "generation", "running")
        # x-5 never started

        plain = choose_instances(store, instances, retry_infra=False)
        assert [i.instance_id for i in plain.run] == ["x-3", "x-4", "x-5"]
        assert plain.done == ["x-0"]
        assert sorted(plain.failed) == ["x-1", "x-2"]

        retry = choose_instances(store, instances, retry_infra=True)
        assert [i.instance_id for i in retry.run] == ["x-1"]


def test_estimate_counts_files_without_calling_a_model(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    main(["run", "example", "--dataset", "example", "--run-dir", str(run_dir), "--estimate", f"environment.cache_dir={tmp_path / 'cache'}"])
    out = capsys.readouterr().out
    assert "relevance" in out and "generation" in out and "selection" in out
    assert "files (git)" in out and "tokens/inst" in out and "$/inst" in out
    assert not (run_dir / DB_NAME).exists() or not RunStore.open_existing(run_dir).calls()


def test_status_of_a_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with RunStore.open(tmp_path) as store:
        store.add_instance("x-1", "o/r", {})
        store.set_instance_state("x-1", "generation", "failed", "infra", "sandbox died")
        store.put_result("x-1", "plan", "generation", {"trajectories": 2, "max_iterations": 8, "degraded": True})
    main(["status", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    assert '"plan": "2x8 (cut)"' in out and "infra: sandbox died" in out


def test_status_shows_the_context_stage_its_fallback_and_the_windows(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    with RunStore.open(tmp_path) as store:
        store.add_instance("x-1", "o/r", {})
        store.set_instance_state("x-1", "context", "failed", "model", "relevance: no answer could be read")
        store.add_instance("x-2", "o/r", {})
        store.set_instance_state("x-2", "generation", "running")
        store.put_result("x-2", "context", "result", {"included": [], "packed_tokens": 5, "ranking_fallback": "lexical: ..."})
        store.set_meta("context_windows", json.dumps([{"stage": "editing", "model": "m", "tokens": 200000, "source": "table"}]))
    main(["status", str(tmp_path), "--json"])
    rows = {row["instance_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["x-1"]["stage"] == "context" and rows["x-1"]["failure"].startswith("model: relevance")
    assert rows["x-2"]["context"]["fallback"].startswith("lexical")
    main(["status", str(tmp_path)])
    out = capsys.readouterr().out
    assert "ranked lexically (every ranking run failed): x-2" in out
    assert "editing 200,000 (table)" in out
