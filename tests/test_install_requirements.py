"""sandbox/env/install_requirements.py: the cut-off rules, with uv replaced by a script of answers."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from script_support import load_script

from codemonkeys.resources import resource_dir

NO_CODECOV = (
    "  x No solution found when resolving dependencies:\n"
    "  cause: Because there are no versions of codecov and you require codecov, we can conclude that your "
    "requirements are unsatisfiable.\n"
)


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[dict[str, Any]]]:
    module = load_script(resource_dir("sandbox") / "env" / "install_requirements.py")
    calls: list[dict[str, Any]] = []

    def fake_uv(args: list[str], python: str, cutoff: str | None, exempt: list[str], extra: list[str], reinstall: bool = False) -> tuple[int, str]:
        calls.append({"verb": args[0], "cutoff": cutoff, "exempt": list(exempt)})
        if cutoff and "codecov" not in exempt:
            return 1, NO_CODECOV  # every date: its old releases are gone
        if args[0] == "compile":
            Path(args[args.index("-o") + 1]).write_text("codecov==2.1.13\npytest==4.5.0\n")
        return 0, ""

    monkeypatch.setattr(module, "uv", fake_uv)
    return module, calls


def test_vanished_packages_are_read_from_uvs_words(script: tuple[ModuleType, list[dict[str, Any]]]) -> None:
    module, _ = script
    assert module.vanished(NO_CODECOV) == ["codecov"]
    assert module.vanished("Because there is no version of pytest==9") == []


def test_a_package_without_old_releases_is_exempt_and_the_rest_keep_the_date(
    script: tuple[ModuleType, list[dict[str, Any]]],
) -> None:
    module, calls = script
    dates = module.ladder("2019-05-17", [1, 2, 3])
    ok, _ = module.install_set(["codecov", "pytest", "numpy==1.16.3"], "python", dates, [])
    assert ok
    # The first cut-off, retried with codecov exempt (pins always are); no later date was needed.
    assert {c["cutoff"] for c in calls if c["cutoff"]} == {"2019-05-17T00:00:00Z"}
    assert calls[-2] == {"verb": "compile", "cutoff": "2019-05-17T00:00:00Z", "exempt": ["numpy", "atomicwrites", "codecov"]}
    assert calls[-1]["verb"] == "install" and calls[-1]["cutoff"] is None  # the resolved versions, later wheels allowed


def test_source_builds_and_failures_are_recorded_one_per_line(
    script: tuple[ModuleType, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = script
    monkeypatch.setattr(module, "SOURCE_BUILDS", str(tmp_path / "codemonkeys" / "source-builds.txt"))
    monkeypatch.setattr(module, "FAILED_LOG", str(tmp_path / "codemonkeys" / "failed.txt"))
    module.note_source_builds("Resolved 3 packages\n   Built numpy==1.16.3\n   Built pyyaml==5.1\n")
    module.note_source_builds("nothing built\n")
    module.record_failures(["cartopy", "scitools-iris"])
    module.record_failures([])
    assert (tmp_path / "codemonkeys" / "source-builds.txt").read_text() == "numpy==1.16.3\npyyaml==5.1\n"
    assert (tmp_path / "codemonkeys" / "failed.txt").read_text() == "cartopy\nscitools-iris\n"
