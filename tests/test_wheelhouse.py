"""sandbox/env/wheelhouse.py: which build requirements an image keeps for offline re-installs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from codemonkeys.resources import resource_dir


@pytest.fixture(scope="module")
def wheelhouse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelhouse", resource_dir("sandbox") / "env" / "wheelhouse.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
