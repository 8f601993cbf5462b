"""The FreeType swap for matplotlib images: the shipped script's rules, without a real matplotlib.

The script runs inside an instance build (``post_install`` of matplotlib's
spec); here its probe and download are replaced, so each rule (keep a module
that already links 2.6.1, swap in the wheel's, put the built one back when the
wheel's does not give 2.6.1, read the series from the release tag) is tested
on its own. The real swap is exercised by ``bench/grading_fidelity.py`` on
matplotlib instances.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from script_support import load_script

from codemonkeys.env.images import INSTANCE_HELPERS
from codemonkeys.env.specs import SpecRegistry
from codemonkeys.resources import resource_dir

SCRIPT = resource_dir("sandbox") / "env" / "matplotlib_freetype.py"
SO = "ft2font.cpython-311-x86_64-linux-gnu.so"


@pytest.fixture
def script() -> ModuleType:
    return load_script(SCRIPT)


def _wheel(folder: Path, content: bytes) -> str:
    path = folder / "matplotlib-3.6.3-cp311-cp311-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"matplotlib/{SO}", content)
        archive.writestr("matplotlib/__init__.py", "")
    return str(path)


def _setup(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, versions: list[str], wheel: bytes) -> Path:
    target = tmp_path / "lib" / "matplotlib" / SO
    target.parent.mkdir(parents=True)
    target.write_bytes(b"built against Debian's FreeType")
    answers = iter(versions)
    monkeypatch.setattr(script, "probe", lambda cwd: (next(answers), str(target)))
    monkeypatch.setattr(script, "series", lambda testbed: (3, 6))
    asked: list[tuple[int, int]] = []

    def download(major: int, minor: int, dest: str) -> str:
        asked.append((major, minor))
        return _wheel(Path(dest), wheel)

    monkeypatch.setattr(script, "release_wheel", download)
    monkeypatch.setattr(script, "asked", asked, raising=False)
    return target


def test_a_module_that_links_2_6_1_is_kept(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _setup(script, tmp_path, monkeypatch, ["2.6.1"], b"wheel")
    assert script.main(str(tmp_path), str(tmp_path / "kept")) == {"freetype": "2.6.1", "source": "built"}
    assert target.read_bytes() == b"built against Debian's FreeType" and script.asked == []


def test_the_series_wheel_module_replaces_the_built_one(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _setup(script, tmp_path, monkeypatch, ["2.12.1", "2.6.1", "2.12.1", "2.6.1"], b"links 2.6.1")
    kept = tmp_path / "kept"
    result = script.main(str(tmp_path), str(kept))
    assert target.read_bytes() == b"links 2.6.1" and script.asked == [(3, 6)]
    assert result == {"freetype": "2.6.1", "source": "matplotlib-3.6.3-cp311-cp311-manylinux_2_17_x86_64.whl", "replaced": "2.12.1"}
    assert sorted(p.name for p in target.parent.iterdir()) == [SO]  # no backup left behind
    # Grading's re-install rebuilds the module; the swap is redone offline from the kept copy.
    target.write_bytes(b"rebuilt against Debian's FreeType")
    monkeypatch.setattr(script, "release_wheel", lambda *args: pytest.fail("downloaded again"))
    assert script.main(str(tmp_path), str(kept))["source"] == result["source"]
    assert target.read_bytes() == b"links 2.6.1"


def test_a_wheel_module_without_2_6_1_is_put_back(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _setup(script, tmp_path, monkeypatch, ["2.12.1", "2.10.0"], b"links 2.10.0")
    with pytest.raises(RuntimeError, match="2.10.0"):
        script.main(str(tmp_path), str(tmp_path / "kept"))
    assert target.read_bytes() == b"built against Debian's FreeType"
    assert sorted(p.name for p in target.parent.iterdir()) == [SO]
    assert not (tmp_path / "kept").exists()  # a module that failed is never kept


def test_a_wheel_module_that_cannot_draw_is_put_back(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _setup(script, tmp_path, monkeypatch, ["2.12.1"], b"wrong ABI")  # the second probe raises
    with pytest.raises(StopIteration):
        script.main(str(tmp_path), str(tmp_path / "kept"))
    assert target.read_bytes() == b"built against Debian's FreeType"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True, capture_output=True)


def test_the_series_is_the_latest_release_tag_before_the_commit(script: ModuleType, tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "one")
    with pytest.raises(RuntimeError, match="no release tag"):
        script.series(str(tmp_path))
    _git(tmp_path, "tag", "v3.5.2")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "two")
    _git(tmp_path, "tag", "v3.6.0rc1")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "three")
    assert script.series(str(tmp_path)) == (3, 6)


def test_matplotlib_specs_run_the_shipped_helper() -> None:
    assert SCRIPT.name in INSTANCE_HELPERS and SCRIPT.is_file()
    for version in ("3.0", "3.5", "3.6", "3.7"):
        spec = SpecRegistry.default().get("matplotlib/matplotlib", version)
        assert any(SCRIPT.name in command for command in spec.post_install)
        assert not any("qhull.org" in c for c in spec.setup_commands)  # downloads dropped...
        assert spec.setup_commands[-1] == "mkdir -p lib/matplotlib/backends/web_backend/jquery-ui-1.12.1"  # ...stood in for
    assert SpecRegistry.default().get("django/django", "3.0").post_install == []
