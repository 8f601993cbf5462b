"""sandbox/env/wheelhouse.py: which build requirements an image keeps for offline re-installs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_support import load_script

from codemonkeys.resources import resource_dir


@pytest.fixture(scope="module")
def wheelhouse() -> ModuleType:
    return load_script(resource_dir("sandbox") / "env" / "wheelhouse.py")


def test_build_requirements_follow_pips_rules(wheelhouse: ModuleType, tmp_path: Path) -> None:
    assert wheelhouse.build_requires(str(tmp_path)) == ["setuptools>=40.8.0", "wheel"]  # no pyproject: legacy
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 99\n")
    assert wheelhouse.build_requires(str(tmp_path)) == ["setuptools>=40.8.0", "wheel"]  # no [build-system]
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61", "cython==0.29.30", "oldest-supported-numpy"]\n'
        'build-backend = "setuptools.build_meta"\n'
    )
    assert wheelhouse.build_requires(str(tmp_path)) == ["setuptools>=61", "cython==0.29.30", "oldest-supported-numpy"]
    (tmp_path / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    assert wheelhouse.build_requires(str(tmp_path)) == []
