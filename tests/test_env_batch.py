"""``env build --jobs``: shared layers built once before the workers, one repo version per worker."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from codemonkeys.config import EnvironmentConfig
from codemonkeys.env.batch import build_many, group_by_env


def inst(iid: str, repo: str, version: str) -> Any:
    return SimpleNamespace(instance_id=iid, repo=repo, version=version)


INSTANCES = [inst("d1", "d/d", "3.0"), inst("s1", "s/s", "1.1"), inst("d2", "d/d", "3.0"), inst("d3", "d/d", "4.0")]


def test_groups_by_repo_version_biggest_first() -> None:
    groups = group_by_env(INSTANCES)
    assert [[i.instance_id for i in g] for g in groups] == [["d1", "d2"], ["s1"], ["d3"]]


class FakeBuilder:
    python_calls: list[str] = []
    lock = threading.Lock()

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log
        self.registry = SimpleNamespace(get=lambda repo, version: SimpleNamespace(python="3.9" if repo == "d/d" else "3.11"))

    def _pyenv_root(self) -> Path:
        return Path("/nonexistent")

    def python_tag(self, version: str) -> str:
        with self.lock:
            FakeBuilder.python_calls.append(version)
        return version

    def ensure_instance(self, instance: Any) -> Any:
        if instance.instance_id == "s1":
            raise RuntimeError("boom")
        with self.lock:
            self.log.append((threading.current_thread().name, instance.instance_id))
        return SimpleNamespace(source="built", ref=SimpleNamespace(image=instance.instance_id), build_s=0.0)


def test_build_many_builds_shared_layers_once_and_reports_every_instance(monkeypatch: Any) -> None:
    import codemonkeys.env.batch as batch

    monkeypatch.setattr(batch, "available_pythons", lambda root: {"3.9.18": Path("/a"), "3.11.7": Path("/b")})
    log: list[tuple[str, str]] = []
    outcomes: dict[str, Any] = {}
    FakeBuilder.python_calls = []
    build_many(EnvironmentConfig(pull_official=False), INSTANCES, jobs=2, on_done=lambda i, o: outcomes.__setitem__(i.instance_id, o),
               make_builder=lambda: FakeBuilder(log))  # type: ignore[arg-type, return-value]
    assert sorted(FakeBuilder.python_calls) == ["3.11.7", "3.9.18"]  # once per CPython, before the workers
    assert set(outcomes) == {"d1", "d2", "d3", "s1"} and isinstance(outcomes["s1"], RuntimeError)
    # One repo version's instances stay on one worker, in order.
    d_thread = {name for name, iid in log if iid in ("d1", "d2")}
    assert len(d_thread) == 1 and [iid for _, iid in log if iid in ("d1", "d2")] == ["d1", "d2"]
